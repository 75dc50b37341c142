"""`mld train`, `mld evaluate`, `mld extract-features`, `mld export-backbone` (the engine's commands)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train and evaluate one run config (resumes an interrupted run in --out)",
        description="Train one run config and write metrics.json, predictions.npz, cost.json, train.log and "
                    "checkpoint.pt to --out. Rerunning the same command resumes from --out/last.pt; a "
                    "finished run is not retrained. Under torchrun it trains with DistributedDataParallel.")
    train.add_argument("--run-config", required=True, type=Path, help="run config YAML")
    train.add_argument("--out", required=True, type=Path,
                       help="output directory of the run (with --seeds: of its seeds, one seed<N>/ each)")
    train.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                       help="train these seeds one after the other in this process, each into "
                            "--out/seed<N> with the seeding and outputs of a run of its own (the "
                            "config's seed is replaced); finished seeds are skipped")
    _execution_argument(train)
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="evaluate saved weights on a run config's evaluation split",
        description="Score a run's checkpoint.pt (model and EMA) or a bare model state dict on the "
                    "evaluation split of --run-config; writes metrics.json and predictions.npz to --out.")
    evaluate.add_argument("--run-config", required=True, type=Path, help="run config YAML")
    evaluate.add_argument("--checkpoint", required=True, type=Path, help="checkpoint.pt or state dict file")
    evaluate.add_argument("--out", required=True, type=Path, help="output directory (not a training run's)")
    evaluate.set_defaults(func=_evaluate)

    extract = subparsers.add_parser(
        "extract-features", help="cache a dataset's backbone feature maps (for cached_features runs)",
        description="Write the feature maps of the train and val splits under a backbone, at a resolution, "
                    "as float16 arrays in --out. Give a run config (its dataset, model and "
                    "train.resolution), or --backbone, --weights, --dataset and --resolution.")
    extract.add_argument("--run-config", type=Path, help="run config YAML (features: null)")
    extract.add_argument("--backbone", help="timm backbone name (without --run-config)")
    extract.add_argument("--weights", help="backbone weights file, e.g. from export-backbone")
    extract.add_argument("--dataset", help="prepared dataset directory")
    extract.add_argument("--resolution", type=int, help="input resolution in pixels")
    extract.add_argument("--head", default="gap",
                         help="head whose feature kind decides what is cached: gap (one map, default) "
                              "or hsvlt (every stage)")
    extract.add_argument("--out", required=True, type=Path, help="feature cache directory")
    _execution_argument(extract)
    extract.set_defaults(func=_extract)

    export = subparsers.add_parser(
        "export-backbone", help="write a finished run's backbone weights to a file",
        description="Take the backbone of --run/checkpoint.pt (the selected weights: model or EMA) and "
                    "write it as a state dict usable as model.backbone_weights.")
    export.add_argument("--run", required=True, type=Path, help="directory of a finished end-to-end run")
    export.add_argument("--out", required=True, type=Path, help="weights file to write")
    export.add_argument("--weights", default="selected", choices=("selected", "model", "ema"))
    export.set_defaults(func=_export)


def _execution_argument(parser: argparse.ArgumentParser) -> None:
    from mld.engine.config import EXECUTION_KEYS

    parser.add_argument("--set", action="append", default=[], type=_execution_setting, metavar="KEY=VALUE",
                        dest="execution", help="an execution setting in place of the config's (how the job runs, "
                                               f"never what it computes: {', '.join(EXECUTION_KEYS)})")


def _execution_setting(text: str) -> tuple[str, Any]:
    from mld.engine.config import parse_execution_setting

    try:
        return parse_execution_setting(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _train(args: argparse.Namespace) -> int:
    from mld.engine import NonFiniteLossError, RunInterrupted, train, train_seeds

    execution = dict(args.execution)
    try:
        if args.seeds is None:
            train(args.run_config, args.out, execution=execution)
        else:
            train_seeds(args.run_config, args.out, args.seeds, execution=execution)
    except RunInterrupted as stop:
        print(f"mld train: {stop}", file=sys.stderr)
        return 128 + stop.signal_number
    except (NonFiniteLossError, OSError) as error:  # messages name the step or the file
        print(f"mld train: error: {error}", file=sys.stderr)
        return 1
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mld.engine import evaluate

    metrics = evaluate(args.run_config, args.checkpoint, args.out)
    final = metrics["final"]
    print(f"{final['selected_by']} {final[final['selected_by']]:.2f} ({final['selected']} weights); "
          f"written to {args.out}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from mld.engine import extract_features

    if args.run_config is not None:
        flags = [name for name in ("backbone", "weights", "dataset", "resolution") if getattr(args, name)]
        if flags:
            raise ValueError(f"give either --run-config or --backbone/--weights/--dataset/--resolution, "
                             f"not both (also given: {', '.join('--' + f for f in flags)})")
        extract_features(args.run_config, args.out, execution=dict(args.execution))
        return 0
    missing = [name for name in ("backbone", "dataset", "resolution") if not getattr(args, name)]
    if missing:
        raise ValueError(f"without --run-config, give {', '.join('--' + name for name in missing)}")
    from mld.data.prepared import open_prepared
    from mld.engine.data import task_of

    config = {"run_id": f"features/{args.out.name}", "dataset": {"path": args.dataset},
              "task": task_of(open_prepared(args.dataset)),
              "model": {"backbone": args.backbone, "backbone_weights": args.weights, "head": args.head},
              "train": {"resolution": args.resolution, "augment": {"cutout": 0.0, "randaugment": False}}}
    extract_features(config, args.out, execution=dict(args.execution))
    return 0


def _export(args: argparse.Namespace) -> int:
    from mld.engine import export_backbone

    summary = export_backbone(args.run, args.out, args.weights)
    print(f"wrote {summary['tensors']} backbone tensors ({summary['weights']} weights of "
          f"{summary['source']}) to {args.out}")
    return 0
