"""Measurements (Table 9's throughput, the per-module timing) on the machine that runs the job."""


rule measure:
    """Throughput (train/inference images/s, max batch) or per-module timing of one model."""
    input:
        config=paths.job_config("measurements", "{measurement}"),
    output:
        paths.MEASUREMENT,
    log:
        paths.LOG.format(rule="measure", name="{measurement}"),
    benchmark:
        paths.BENCHMARK.format(rule="measure", name="{measurement}")
    conda:
        "../envs/mld.yaml"
    threads: resource("measure", "threads")
    resources:
        **rule_resources("measure"),
    params:
        kind=lambda wildcards: lookup(REGISTRY.measurements, wildcards.measurement, "measurement")["kind"],
        arguments=measure_arguments,
    shell:
        launched("measure {params.kind} --run-config {input.config} {params.arguments} --out {output} > {log} 2>&1")
