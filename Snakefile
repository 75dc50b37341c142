"""Every experiment of the ML-Decoder paper (and HSVLT beside it), from data to tables.

    snakemake --cores 2                    # the embedded default: synthetic data, CPU
    snakemake --cores 8 --profile slurm    # the paper's settings (config/paper.yaml) on Slurm
    snakemake --cores 2 query_types        # one ablation by name (docs/workflow.md lists them)

Which runs exist is decided by mld.experiments from the config; the rules only say how each
thing is made: workflow/rules/data.smk (datasets, pretrained backbones, feature caches),
train.smk (one job per run and seed), measure.smk (throughput and module timing) and report.smk
(tables, figure, named targets).
"""

import os

from snakemake.utils import min_version

min_version("9.0")

# The embedded default, unless config files are given (`--configfile`, or the slurm profile's
# config/paper.yaml); `--config key=value` overrides either.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


wildcard_constraints:
    seed=r"\d+",
    dataset=r"[^/]+",
    backbone=r"[^/]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/report.smk"


rule all:
    """The default target: every table and the figure, from every run and measurement."""
    default_target: True
    input:
        rules.report.output,
    localrule: True
