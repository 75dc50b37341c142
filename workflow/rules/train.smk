"""One job per (run id, seed): the engine trains and evaluates the run and writes its outputs."""


rule job_config:
    """Write a job's config file: only what defines its result (mld.paths.JOB_CONFIG), so a job
    reruns exactly when its result would change, and never for GPUs, workers or logging."""
    output:
        paths.JOB_CONFIG,
    log:
        paths.LOG.format(rule="job_config", name="{kind}/{name}"),
    wildcard_constraints:
        kind="|".join(paths.JOB_KINDS),
    localrule: True
    params:
        content=job_config_content,
    run:
        Path(output[0]).write_text(params.content)
        Path(log[0]).write_text(f"wrote {output[0]}\n")


rule train:
    """Train and evaluate one run with one seed; a rerun resumes from the run's last checkpoint."""
    input:
        unpack(train_inputs),
    output:
        paths.RUN_METRICS,
    log:
        paths.LOG.format(rule="train", name="{run_id}/seed{seed}"),
    benchmark:
        paths.BENCHMARK.format(rule="train", name="{run_id}/seed{seed}")
    conda:
        "../envs/mld.yaml"
    threads: resource("train", "threads")
    resources:
        **rule_resources("train", execution("runs", lambda w: paths.run_job_name(w.run_id, w.seed))),
    params:
        out_dir=paths.RUN_DIR,
    shell:
        launched("""train --config {input.config} --out {params.out_dir} \
            > {log} 2>&1 || {{
            status=$?
            reason="exit status $status"
            if [ $status -gt 128 ]; then
                reason="stopped by signal $((status - 128)): a time limit, a preemption, out of memory or a cancellation; the checkpoint in {params.out_dir} is kept"
            fi
            echo "run {wildcards.run_id} seed {wildcards.seed} failed ($reason); the end of its log ({log}):" >&2
            tail -n 15 {log} >&2
            echo "Fix the cause named above, then run the same snakemake command again: finished runs are" \
                 "kept and this run resumes from its last checkpoint in {params.out_dir}." >&2
            exit 1
        }}
        """)
