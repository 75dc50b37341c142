"""Datasets in the prepared format, and (embedded default) pretrained backbones and feature caches."""


rule prepare_dataset:
    """Render a synthetic dataset, or convert a real dataset's release, into the prepared format."""
    input:
        raw_dataset_input,
    output:
        directory(paths.DATASET),
    log:
        paths.LOG.format(rule="prepare_dataset", name="{dataset}"),
    benchmark:
        paths.BENCHMARK.format(rule="prepare_dataset", name="{dataset}")
    conda:
        "../envs/mld.yaml"
    threads: resource("prepare_dataset", "threads")
    resources:
        **rule_resources("prepare_dataset"),
    params:
        arguments=prepare_arguments,
    shell:
        launched("prepare {params.arguments} --out {output} > {log} 2>&1")


rule prepare_store:
    """Decode a real dataset's images once at one input resolution, for its end-to-end runs."""
    input:
        dataset=lambda wildcards: dataset_path(wildcards.dataset),
    output:
        directory(paths.STORE),
    log:
        paths.LOG.format(rule="prepare_store", name="{dataset}-{resolution}px"),
    benchmark:
        paths.BENCHMARK.format(rule="prepare_store", name="{dataset}-{resolution}px")
    wildcard_constraints:
        resolution=r"\d+",
    conda:
        "../envs/mld.yaml"
    threads: resource("prepare_store", "threads")
    resources:
        **rule_resources("prepare_store"),
    shell:
        launched(
            "prepare store --dataset {input.dataset} --resolution {wildcards.resolution}"
            " --workers {threads} --out {output} > {log} 2>&1"
        )


rule pretrain_backbone:
    """Train a backbone once with a GAP head on the pretraining set and keep its weights."""
    input:
        unpack(pretraining_inputs),
    output:
        weights=paths.BACKBONE_WEIGHTS,
    log:
        paths.LOG.format(rule="pretrain_backbone", name="{backbone}"),
    benchmark:
        paths.BENCHMARK.format(rule="pretrain_backbone", name="{backbone}")
    conda:
        "../envs/mld.yaml"
    threads: resource("pretrain_backbone", "threads")
    resources:
        **rule_resources("pretrain_backbone", execution("backbones", lambda w: w.backbone)),
    params:
        run_dir=paths.BACKBONE_RUN,
    shell:
        launched(
            "train --run-config {input.config} --out {params.run_dir} > {log} 2>&1"
            " && python -m mld export-backbone --run {params.run_dir} --out {output.weights} >> {log} 2>&1"
        )


rule pretrained_backbones:
    """Every backbone the runs start from, pretrained here when `pretraining.weights` is null
    (`make backbones` then ships them with `mld ship-backbones`)."""
    input:
        [backbone["weights"] for backbone in REGISTRY.backbones.values()],
    localrule: True


rule extract_features:
    """Cache a dataset's feature maps under a pretrained backbone (one map, or every stage)."""
    input:
        unpack(feature_inputs),
    output:
        directory(paths.FEATURES),
    log:
        paths.LOG.format(rule="extract_features", name="{features}"),
    benchmark:
        paths.BENCHMARK.format(rule="extract_features", name="{features}")
    conda:
        "../envs/mld.yaml"
    threads: resource("extract_features", "threads")
    resources:
        **rule_resources("extract_features", execution("features", lambda w: w.features)),
    shell:
        launched("extract-features --run-config {input.config} --out {output} > {log} 2>&1")
