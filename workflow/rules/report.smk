"""The tables, the mAP-vs-FLOPs figure, the HTML report's contents and the named targets."""


report: "../report/workflow.rst"


rule tables:
    """Reproduced values beside the paper's, claim checks, CSVs and the figure (`mld tables`)."""
    input:
        table_outputs(REGISTRY.tables),
    output:
        markdown=report("results/tables.md", caption="../report/tables.rst", category="Tables"),
        csv=report(
            directory("results/tables"),
            patterns=["{table}.csv"],
            caption="../report/table_csv.rst",
            category="Tables",
        ),
        png=report("results/figures/map_vs_flops.png", caption="../report/map_vs_flops.rst", category="Figures"),
        svg="results/figures/map_vs_flops.svg",
    params:
        config=shell_yaml(dict(config)),
        config_file="results/config.yaml",
    log:
        "results/logs/tables.log",
    threads: resource("tables", "threads")
    resources:
        **rule_resources("tables"),
    conda:
        "../envs/mld.yaml"
    shell:
        "(printf '%s\\n' {params.config} > {params.config_file}"
        " && python -m mld tables --config {params.config_file} --results results --out-md {output.markdown}"
        " --out-csv {output.csv} --out-fig results/figures) > {log} 2>&1"


# `snakemake <name>`: the runs and measurements of one ablation (mld.experiments.TARGETS).
for target_name, target_tables in REGISTRY.targets.items():

    rule:
        name:
            target_name
        input:
            table_outputs(target_tables),
        localrule: True
