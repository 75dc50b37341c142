"""Datasets in the prepared format, and (embedded default) pretrained backbones and feature caches."""


rule prepare_dataset:
    """Render a synthetic dataset, or convert a real dataset's release, into the prepared format."""
    input:
        raw_dataset_input,
    output:
        directory("results/data/{dataset}"),
    params:
        arguments=prepare_arguments,
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    threads: resource("prepare_dataset", "threads")
    resources:
        **rule_resources("prepare_dataset"),
    conda:
        "../envs/mld.yaml"
    shell:
        "python -m mld prepare {params.arguments} --out {output} > {log} 2>&1"


rule pretrain_backbone:
    """Train a backbone once with a GAP head on the pretraining set and keep its weights."""
    input:
        unpack(pretraining_inputs),
    output:
        weights="results/backbones/{backbone}.pt",
    params:
        config=pretraining_config,
        config_file="results/configs/backbones/{backbone}.yaml",
        run_dir="results/backbones/{backbone}",
    log:
        "results/logs/pretrain_backbone/{backbone}.log",
    threads: resource("pretrain_backbone", "threads")
    resources:
        **rule_resources("pretrain_backbone"),
    conda:
        "../envs/mld.yaml"
    shell:
        "(mkdir -p $(dirname {params.config_file}) && printf '%s\\n' {params.config} > {params.config_file}"
        " && OMP_NUM_THREADS={threads} python -m mld train --config {params.config_file} --out {params.run_dir}"
        " && python -m mld export-backbone --run {params.run_dir} --out {output.weights}) > {log} 2>&1"


rule extract_features:
    """Cache a dataset's feature maps under a pretrained backbone (one map, or every stage)."""
    input:
        unpack(feature_inputs),
    output:
        directory("results/features/{features}"),
    params:
        config=features_config,
        config_file="results/configs/features/{features}.yaml",
    log:
        "results/logs/extract_features/{features}.log",
    threads: resource("extract_features", "threads")
    resources:
        **rule_resources("extract_features"),
    conda:
        "../envs/mld.yaml"
    shell:
        "(mkdir -p $(dirname {params.config_file}) && printf '%s\\n' {params.config} > {params.config_file}"
        " && OMP_NUM_THREADS={threads} python -m mld extract-features --config {params.config_file} --out {output})"
        " > {log} 2>&1"
