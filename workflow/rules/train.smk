"""One job per (run id, seed): the engine trains and evaluates the run and writes its outputs."""


rule train:
    """Train and evaluate one run with one seed; a rerun resumes from the run's last checkpoint."""
    input:
        unpack(train_inputs),
    output:
        "results/runs/{run_id}/seed{seed}/metrics.json",
    params:
        config=run_config,
        config_file="results/configs/runs/{run_id}/seed{seed}.yaml",
        out_dir="results/runs/{run_id}/seed{seed}",
        launcher=train_launcher("train"),
    log:
        "results/logs/train/{run_id}/seed{seed}.log",
    threads: resource("train", "threads")
    resources:
        **rule_resources("train"),
    conda:
        "../envs/mld.yaml"
    shell:
        """
        mkdir -p $(dirname {params.config_file}) && printf '%s\\n' {params.config} > {params.config_file}
        OMP_NUM_THREADS={threads} {params.launcher} train --config {params.config_file} --out {params.out_dir} \
            > {log} 2>&1 || {{
            status=$?
            reason="exit status $status"
            if [ $status -gt 128 ]; then
                reason="killed by signal $((status - 128)): out of memory, a time limit or a cancellation"
            fi
            echo "run {wildcards.run_id} seed {wildcards.seed} failed ($reason); the end of its log ({log}):" >&2
            tail -n 15 {log} >&2
            echo "Fix the cause named above, then run the same snakemake command again: finished runs are" \
                 "kept and this run resumes from its last checkpoint in {params.out_dir}." >&2
            exit 1
        }}
        """
