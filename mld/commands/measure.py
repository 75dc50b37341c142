"""`mld measure flops | throughput | modules`: the cost of one model, written as JSON.

The model comes from a run config's `model:` block (the class count from --num-classes or the
config's prepared dataset) or from --backbone/--head/--num-classes/--num-groups. Weights never
change a cost, so measuring builds the model without loading any.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RESOLUTION = 224
CPU_BATCH_SIZE = 16  # Table 9 searches the GPU's maximal batch; a CPU has no such limit


def register(subparsers: argparse._SubParsersAction) -> None:
    measure = subparsers.add_parser(
        "measure", help="measure a model's FLOPs, throughput or per-module time (JSON)",
        description="Measure one model, built from a run config's model block or from "
                    "--backbone/--head/--num-classes, and write the result as JSON to --out.")
    kinds = measure.add_subparsers(dest="kind", required=True, metavar="KIND")

    flops = kinds.add_parser("flops", help="G multiply-accumulates and parameters, model and head")
    _model_arguments(flops)
    flops.set_defaults(func=_flops)

    throughput = kinds.add_parser(
        "throughput", help="train/inference images/s and maximal batch (Table 9's protocol)",
        description="Inference and training images/s at 80% of the maximal training batch with "
                    "mixed precision on CUDA; on CPU at --batch-size (default "
                    f"{CPU_BATCH_SIZE}) without the maximal batch.")
    _model_arguments(throughput)
    _timing_arguments(throughput, batch_help="batch size (default: 80%% of the maximal batch on "
                                             f"CUDA, {CPU_BATCH_SIZE} on CPU)")
    throughput.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                            help="mixed precision (default: on for CUDA, off for CPU)")
    throughput.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                            help="also measure training speed (default: yes)")
    throughput.set_defaults(func=_throughput)

    modules = kinds.add_parser(
        "modules", aliases=["module_timing"],
        help="inference time of the decoder's self-attention, cross-attention and MLP")
    _model_arguments(modules)
    _timing_arguments(modules, batch_help="batch size (default 1)")
    modules.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                         help="mixed precision (default: off)")
    modules.set_defaults(func=_modules)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-config", type=Path, help="run config YAML (its model: block)")
    parser.add_argument("--backbone", help="timm backbone (without --run-config)")
    parser.add_argument("--head", help="head name (without --run-config), e.g. ml_decoder")
    parser.add_argument("--num-classes", type=int, help="number of classes (default: the "
                                                        "config's dataset meta.json)")
    parser.add_argument("--num-groups", type=int, help="ML-Decoder group queries K")
    parser.add_argument("--head-option", action="append", default=[], metavar="KEY=VALUE",
                        help="head option (YAML value), repeatable, e.g. num_layers=2")
    parser.add_argument("--resolution", type=int, help="input resolution in pixels (default: "
                        f"the config's train.resolution, else {DEFAULT_RESOLUTION})")
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")


def _timing_arguments(parser: argparse.ArgumentParser, batch_help: str) -> None:
    parser.add_argument("--device", help="cpu or cuda[:i] (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, help=batch_help)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps, at least (default 5)")
    parser.add_argument("--min-seconds", type=float, default=0.0,
                        help="time more steps until they add up to this (default 0)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="take the whole timing this many times; their spread is the noise (default 1)")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="on CUDA, let this process use at most this much GPU memory (e.g. 16: the "
                             "paper's V100 16 GB column, whatever the GPU); default: the whole GPU")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"run config not found: {path}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{path}: a run config needs a 'model:' block (backbone, head, ...)")
    return config


def _head_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--head-option {pair!r}: write KEY=VALUE, e.g. num_layers=2")
        options[key] = yaml.safe_load(value)
    return options


def _model_block(args: argparse.Namespace, config: dict[str, Any] | None) -> dict[str, Any]:
    """The run config's model block (or one made from the flags), without any weights."""
    if config is not None:
        given = [flag for flag in ("backbone", "head") if getattr(args, flag)]
        if given:
            raise ValueError(f"--{given[0]} conflicts with --run-config: the config's model block "
                             "names the model")
        block = dict(config["model"])
        for key in ("backbone", "head"):
            if not block.get(key):
                raise ValueError(f"{args.run_config}: model.{key} is missing")
    else:
        if not (args.backbone and args.head):
            raise ValueError("give --run-config RUN.yaml, or --backbone and --head (and --num-classes)")
        block = {"backbone": args.backbone, "head": args.head}
    block["head_options"] = {**(block.get("head_options") or {}), **_head_options(args.head_option)}
    if args.num_groups is not None:
        block["num_groups"] = args.num_groups
    block.setdefault("num_groups", None)
    block.setdefault("backbone_options", {})
    block.setdefault("normalize", "timm")
    block.update(pretrained=False, backbone_weights=None)
    return block


def _dataset_dir(config: dict[str, Any] | None) -> Path | None:
    dataset = (config or {}).get("dataset")
    return Path(dataset["path"]) if isinstance(dataset, dict) and dataset.get("path") else None


def _num_classes(args: argparse.Namespace, config: dict[str, Any] | None) -> int:
    if args.num_classes is not None:
        if args.num_classes < 1:
            raise ValueError(f"--num-classes must be >= 1, got {args.num_classes}")
        return args.num_classes
    dataset = _dataset_dir(config)
    if dataset is None:
        raise ValueError("give --num-classes (or a run config whose dataset.path is prepared)")
    meta_file = dataset / "meta.json"
    try:
        return int(json.loads(meta_file.read_text(encoding="utf-8"))["num_classes"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{meta_file} not found: prepare the dataset or give "
                                "--num-classes") from None


def _word_vectors(config: dict[str, Any] | None) -> Any:
    """The dataset's class word vectors, for heads built on them (None when there is none)."""
    import numpy as np
    import torch

    dataset = _dataset_dir(config)
    if dataset is None or not (dataset / "word_vectors.npy").exists():
        return None
    return torch.from_numpy(np.load(dataset / "word_vectors.npy"))


def _resolution(args: argparse.Namespace, config: dict[str, Any] | None) -> int:
    resolution = args.resolution or ((config or {}).get("train") or {}).get("resolution")
    resolution = resolution or DEFAULT_RESOLUTION
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution!r}")
    return resolution


def _build(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The model and the identity of what was measured (written into the JSON)."""
    from mld.engine.modeling import build_model

    config = _read_config(args.run_config) if args.run_config else None
    block = _model_block(args, config)
    num_classes = _num_classes(args, config)
    model = build_model(block, num_classes, _word_vectors(config))
    identity = {"run_id": (config or {}).get("run_id"),
                "model": {key: block[key] for key in
                          ("backbone", "backbone_options", "head", "num_groups", "head_options")},
                "num_classes": num_classes, "resolution": _resolution(args, config)}
    return model, identity


def _device(args: argparse.Namespace) -> str:
    import torch

    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _write(path: Path, kind: str, identity: dict[str, Any], measured: dict[str, Any]) -> None:
    from mld.atomic import write_json
    from mld.engine.outputs import software_versions

    # Timings depend on the machine and the software: both travel with the figures.
    write_json(path, {"kind": kind, **identity, **measured, "versions": software_versions()})
    print(f"wrote {path}")


def _flops(args: argparse.Namespace) -> int:
    from mld import cost

    model, identity = _build(args)
    _write(args.out, "flops", identity, cost.model_cost(model, identity["resolution"]))
    return 0


def _throughput(args: argparse.Namespace) -> int:
    from mld import cost

    model, identity = _build(args)
    resolution, device = identity["resolution"], _device(args)
    batch_size = args.batch_size or (None if device.startswith("cuda") else CPU_BATCH_SIZE)
    measured = {"flops_g": cost.count_flops(model, resolution),
                "params_m": cost.count_params(model)}
    measured.update(cost.throughput_report(
        model, resolution, device=device, batch_size=batch_size, amp=args.amp,
        warmup=args.warmup, repeats=args.repeats, min_seconds=args.min_seconds, train=args.train,
        memory_cap_gb=args.memory_cap_gb, rounds=args.rounds))
    _write(args.out, "throughput", identity, measured)
    return 0


def _modules(args: argparse.Namespace) -> int:
    from mld import cost

    model, identity = _build(args)
    cost.cap_gpu_memory(_device(args), args.memory_cap_gb)
    measured = cost.time_decoder_modules(
        model, identity["resolution"], args.batch_size or 1, device=_device(args), amp=args.amp,
        warmup=args.warmup, repeats=args.repeats, min_seconds=args.min_seconds, rounds=args.rounds)
    _write(args.out, "module_timing", identity, measured)
    return 0
