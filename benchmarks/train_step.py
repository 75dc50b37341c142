"""Training-step time of the embedded default's two kinds of run, and the share spent loading data.

    .venv/bin/python benchmarks/train_step.py [--num-train 1024] [--epochs 2] [--threads 2]
        [--paper-augment] [--num-workers N]

Takes the run configs the workflow would run (config/config.yaml through mld.experiments): the
end-to-end backbone pretraining (test_resnet + GAP on the `pretrain` preset) and a cached-features
head run (ML-Decoder, K = 20, on `coco-like`), renders smaller copies of their datasets in a
temporary directory, trains each for a few epochs with the engine, and reads the per-epoch timing
the engine records (time waiting for batches vs. time in training steps). The first epoch is
reported separately: it includes warm-up. --paper-augment gives the end-to-end run the paper's
Cutout + RandAugment (the pretraining itself uses none); --num-workers sets its loader workers.
"""
from __future__ import annotations

import argparse
import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import torch

from mld.data.synthetic.generate import prepare_synthetic
from mld.engine import export_backbone, extract_features, train
from mld.experiments import build_registry, load_config

HEAD_RUN = "coco-like/ml_decoder-k20/fixed_random"
BACKBONE = "medium"


def run_configs(workflow_config: str, work: Path, num_train: int, num_val: int, epochs: int,
                paper_augment: bool, num_workers: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pretraining and head-run configs of the embedded default, pointed at small datasets."""
    registry = build_registry(load_config(workflow_config))
    pretrain = copy.deepcopy(registry.backbones[BACKBONE]["config"])
    head_run = {"run_id": HEAD_RUN, "seed": 0, **copy.deepcopy(registry.runs[HEAD_RUN].config)}
    for config in (pretrain, head_run):
        dataset_id = next(name for name, entry in registry.datasets.items()
                          if entry["path"] == config["dataset"]["path"])
        entry = registry.datasets[dataset_id]
        path = work / "data" / dataset_id
        if not path.exists():
            prepare_synthetic(entry["preset"], path, image_size=entry["image_size"], num_train=num_train,
                              num_val=num_val)
        config["dataset"]["path"] = str(path)
        config["train"].update(epochs=epochs, eval_every=0, log_every_s=1e9)
    pretrain["train"]["num_workers"] = num_workers
    if paper_augment:
        pretrain["train"]["augment"] = {"cutout": 0.5, "randaugment": True}
    head_run["model"]["backbone_weights"] = str(work / "backbone.pt")
    head_run["features"] = str(work / "features")
    return pretrain, head_run


def step_timing(metrics: dict[str, Any], steps_per_epoch: int, batch_size: int) -> list[str]:
    lines = []
    for entry in metrics["history"]:
        total = entry["data_s"] + entry["compute_s"]
        lines.append(f"  epoch {entry['epoch']}: {1000 * total / steps_per_epoch:7.1f} ms/step "
                     f"({batch_size * steps_per_epoch / total:6.0f} images/s), data loading "
                     f"{100 * entry['data_s'] / total:4.1f}% of the step time")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml", help="workflow config (embedded default)")
    parser.add_argument("--num-train", type=int, default=1024, help="training images per dataset")
    parser.add_argument("--num-val", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--paper-augment", action="store_true", help="Cutout + RandAugment end to end")
    parser.add_argument("--num-workers", type=int, default=0, help="loader workers of the end-to-end run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="mld-bench-") as directory:
        work = Path(directory)
        pretrain, head_run = run_configs(args.configfile, work, args.num_train, args.num_val, args.epochs,
                                         args.paper_augment, args.num_workers)
        end_to_end = train(pretrain, work / "pretrain", log_stream=quiet)
        export_backbone(work / "pretrain", work / "backbone.pt")
        extract_features({**head_run, "features": None}, work / "features", log_stream=quiet)
        cached = train(head_run, work / "head", log_stream=quiet)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {args.num_train} training images per run")
    augment = ", Cutout + RandAugment" if args.paper_augment else ""
    for name, config, metrics in ((f"end to end (pretraining: test_resnet + GAP{augment}, "
                                   f"{args.num_workers} loader workers)", pretrain, end_to_end),
                                  (f"cached features ({HEAD_RUN})", head_run, cached)):
        train_config = config["train"]
        steps = args.num_train // train_config["batch_size"]
        print(f"{name}: batch {train_config['batch_size']}, {train_config['resolution']} px")
        print("\n".join(step_timing(metrics, steps, train_config["batch_size"])))


if __name__ == "__main__":
    main()
