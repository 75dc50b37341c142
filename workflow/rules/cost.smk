"""Cost measurements (Table 9's throughput, the per-module timing) on the machine that runs the job."""


rule measure:
    """Throughput (train/inference images/s, max batch) or per-module timing of one model."""
    output:
        "results/cost/{measurement}.json",
    params:
        kind=lambda wildcards: lookup(REGISTRY.measurements, wildcards.measurement, "measurement")["kind"],
        config=measurement_config,
        config_file="results/configs/cost/{measurement}.yaml",
        arguments=profile_arguments,
    log:
        "results/logs/measure/{measurement}.log",
    threads: resource("measure", "threads")
    resources:
        **rule_resources("measure"),
    conda:
        "../envs/mld.yaml"
    shell:
        "(mkdir -p $(dirname {params.config_file}) && printf '%s\\n' {params.config} > {params.config_file}"
        " && OMP_NUM_THREADS={threads} python -m mld profile {params.kind} --config {params.config_file}"
        " {params.arguments} --out {output}) > {log} 2>&1"
