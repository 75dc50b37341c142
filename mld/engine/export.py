"""`mld export-backbone`: a finished end-to-end run's backbone as a weights file for other runs.

The embedded default pretrains each backbone once with a GAP head; its exported backbone is then
the `model.backbone_weights` of the feature extraction and of every run on that backbone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mld.atomic import write_torch
from mld.engine.checkpoint import CheckpointError, load_checkpoint
from mld.engine.outputs import CHECKPOINT

BACKBONE_PREFIX = "backbone."
WEIGHT_CHOICES = ("selected", "model", "ema")


def export_backbone(run_dir: str | Path, out_file: str | Path, weights: str = "selected") -> dict[str, Any]:
    """Write the backbone state dict of `run_dir/checkpoint.pt` to `out_file` (as {"state_dict": ...}).

    weights: "selected" (the weights the run reported: model or EMA), "model" or "ema".
    Returns a summary (source, which weights, number of tensors).
    """
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights = {weights!r}; choose one of {', '.join(WEIGHT_CHOICES)}")
    source = Path(run_dir) / CHECKPOINT
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: {run_dir} holds no finished run; "
                                "train it first with `mld train --run-config RUN.yaml --out DIR`")
    checkpoint = load_checkpoint(source)
    chosen = checkpoint["selected"] if weights == "selected" else weights
    state = checkpoint.get(chosen)
    if state is None:
        raise CheckpointError(f"{source} has no {chosen!r} weights (the run trained without EMA?); "
                              "use --weights model")
    backbone = {key[len(BACKBONE_PREFIX):]: value for key, value in state.items() if key.startswith(BACKBONE_PREFIX)}
    if not backbone:
        raise CheckpointError(f"{source} holds no backbone weights: the run trained a head on cached "
                              "features; export from an end-to-end run")
    write_torch(out_file, {"state_dict": backbone, "source": str(source), "weights": chosen,
                           "backbone": checkpoint["config"]["model"]["backbone"]})
    return {"source": str(source), "weights": chosen, "tensors": len(backbone)}
