"""The tables, the figures (mAP vs FLOPs, claims, training curves), the HTML report's contents
(`snakemake --report report.html`) and the named targets."""


report: "../report/workflow.rst"


rule report:
    """The long-form runs.csv (with its bootstrap and history companions), then from it the tables,
    claim checks, CSVs, the software and hardware of the runs and the figures (`mld report`)."""
    input:
        target_inputs(REGISTRY.tables),
    output:
        markdown=report(paths.TABLES_MD, caption="../report/tables.rst", category="All tables"),
        csv=report(
            directory(paths.TABLES_CSV),
            patterns=["{table}.csv"],
            caption="../report/table_csv.rst",
            category="{table}",
        ),
        png=report(
            paths.FIGURE.format(ext="png"),
            caption="../report/map_vs_flops.rst",
            category="figure5",
        ),
        svg=paths.FIGURE.format(ext="svg"),
        claims_png=report(
            paths.CLAIMS_FIGURE.format(ext="png"),
            caption="../report/claims.rst",
            category="claims",
        ),
        claims_svg=paths.CLAIMS_FIGURE.format(ext="svg"),
        curves=report(
            directory(paths.CURVES),
            patterns=["{table}.png"],
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{table}",
        ),
        environments=report(
            paths.ENVIRONMENTS,
            caption="../report/environments.rst",
            category="Config and environment",
        ),
        config=report(
            paths.WORKFLOW_CONFIG,
            caption="../report/config.rst",
            category="Config and environment",
        ),
        speed_png=report(
            paths.SPEED_FIGURE.format(ext="png"),
            caption="../report/top1_vs_speed.rst",
            category="figure6",
        ),
        speed_svg=paths.SPEED_FIGURE.format(ext="svg"),
        runs=paths.RUNS_CSV,
        bootstrap=paths.RUNS_BOOTSTRAP,
        history=paths.RUNS_HISTORY,
    log:
        paths.LOG.format(rule="report", name="report"),
    conda:
        "../envs/mld.yaml"
    threads: resource("report", "threads")
    resources:
        **rule_resources("report"),
    params:
        config=shlex.quote(yaml.safe_dump(dict(config), sort_keys=False)),
        figures=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "(printf '%s\\n' {params.config} > {output.config}"
        " && python -m mld report --configfile {output.config} --results results --out-md {output.markdown}"
        " --out-csv {output.csv} --out-fig {params.figures} --out-runs {output.runs}"
        " --out-environments {output.environments}) > {log} 2>&1"


# `snakemake <name>`: the runs and measurements of one ablation (mld.experiments.TARGETS).
for target_name, target_tables in REGISTRY.targets.items():

    rule:
        name:
            target_name
        input:
            target_inputs(target_tables),
        localrule: True
