"""Training jobs. End to end: one job per (run id, seed). On cached features (the embedded
default): one job per run that trains its seeds one after the other in one process (`mld train
--seeds`), paying start-up and imports once; each seed's outputs equal a job of its own."""


rule job_config:
    """Write a job's config file: only what defines its result (mld.paths.JOB_CONFIG), so a job
    reruns exactly when its result would change, and never for GPUs, workers or logging. A shell
    command, not `run:`: Snakemake runs a `run:` job in a new Snakemake process that parses the
    whole workflow again (seconds per file, minutes over the embedded default's files)."""
    output:
        paths.JOB_CONFIG,
    log:
        paths.LOG.format(rule="job_config", name="{kind}/{name}"),
    wildcard_constraints:
        kind="|".join(paths.JOB_KINDS),
    localrule: True
    conda:
        "../envs/mld.yaml"
    params:
        content=job_config_content,
    shell:
        "printf %s {params.content:q} > {output} && echo 'wrote {output}' > {log}"


TRAIN_COMMAND = launched("""train --run-config {input.config} --out {params.out_dir} {params.seeds} \
    > {log} 2>&1 || {{
    status=$?
    reason="exit status $status"
    if [ $status -gt 128 ]; then
        reason="stopped by signal $((status - 128)): a time limit, a preemption, out of memory or a cancellation; the checkpoints in {params.out_dir} are kept"
    fi
    echo "run {wildcards.run_id} {params.which} failed ($reason); the end of its log ({log}):" >&2
    tail -n 15 {log} >&2
    echo "Fix the cause named above, then run the same snakemake command again: finished runs are" \
         "kept and this run resumes from its last checkpoint in {params.out_dir}." >&2
    exit 1
}}
""")


if config["mode"] == "cached_features":

    rule train:
        """Train and evaluate every seed of one run on cached features, in one process; a rerun
        skips the finished seeds and resumes the others from their last checkpoints."""
        input:
            unpack(train_inputs),
        output:
            expand(paths.RUN_METRICS, seed=config["seeds"], allow_missing=True),
        log:
            paths.LOG.format(rule="train", name="{run_id}/seeds"),
        benchmark:
            paths.BENCHMARK.format(rule="train", name="{run_id}/seeds")
        conda:
            "../envs/mld.yaml"
        threads: lambda w: train_job(w).threads
        resources:
            **rule_resources(
                "train",
                execution("runs", lambda w: paths.run_job_name(w.run_id, config["seeds"][0]), train_job),
                train_job,
            ),
        params:
            out_dir=lambda w: paths.RUN_ROOT.format(run_id=w.run_id),
            seeds="--seeds " + " ".join(map(str, config["seeds"])),
            which=("seeds " if len(config["seeds"]) > 1 else "seed ") + ", ".join(map(str, config["seeds"])),
        shell:
            TRAIN_COMMAND

else:

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
        threads: lambda w: train_job(w).threads
        resources:
            **rule_resources(
                "train", execution("runs", lambda w: paths.run_job_name(w.run_id, w.seed), train_job), train_job
            ),
        params:
            out_dir=paths.RUN_DIR,
            seeds="",
            which="seed {seed}",
        shell:
            TRAIN_COMMAND
