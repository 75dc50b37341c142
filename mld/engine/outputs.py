"""The files a run leaves behind (names and fields: "Run outputs" in docs/architecture.md)."""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mld.atomic import remove_stale_temporaries, write_bytes, write_json, write_npz
from mld.numerics import cpu_model

METRICS = "metrics.json"
PREDICTIONS = "predictions.npz"
COST = "cost.json"
LOG = "train.log"
PARTIAL_LOG = "train.log.partial"  # the log while the run is unfinished; renamed to LOG at the end
CHECKPOINT = "checkpoint.pt"
RESUME = "last.pt"


def software_versions() -> dict[str, str]:
    """What produced a result: enough to tell two runs' environments apart."""
    import mld

    # timm's version from its metadata: importing it costs seconds that head-only runs never need.
    versions = {"mld": mld.__version__, "python": platform.python_version(), "torch": torch.__version__,
                "timm": importlib.metadata.version("timm"), "numpy": np.__version__, "platform": platform.platform(),
                "cpu": cpu_model()}
    if torch.cuda.is_available():
        versions["cuda"] = str(torch.version.cuda)
        versions["gpu"] = torch.cuda.get_device_name()
    return versions


def json_safe(value: Any) -> Any:
    """Plain JSON types, with NaN and infinities as null (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    return value


def write_metrics(out_dir: Path, metrics: Mapping[str, Any]) -> None:
    write_json(out_dir / METRICS, json_safe(metrics))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_cost(out_dir: Path, cost: Mapping[str, Any]) -> None:
    write_json(out_dir / COST, json_safe(cost))


def write_predictions(out_dir: Path, scores: torch.Tensor, targets: torch.Tensor,
                      class_names: Sequence[str], zsl: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Scores of the selected weights on the evaluation split, enough to recompute every metric.

    Zero-shot runs also keep `zsl` (scores, targets) of the pass over the unseen classes alone, as
    `zsl_scores` / `zsl_targets`: the ZSL metrics come from that pass.
    """
    extra = {} if zsl is None else {"zsl_scores": zsl[0].float().numpy(), "zsl_targets": zsl[1].to(torch.int8).numpy()}
    write_npz(out_dir / PREDICTIONS, scores=scores.float().numpy(), targets=targets.to(torch.int8).numpy(),
              class_names=np.asarray(class_names, dtype=str), **extra)


def reopen_run_dir(out_dir: Path) -> None:
    """Make an unfinished run's directory ready to continue (main process, before its log opens).

    Removes the temporary files of writes a kill interrupted, and takes a log that was already
    published (a kill between `finish_log` and metrics.json) back as the partial log, so that
    the continuing run appends to it instead of replacing it.
    """
    if not out_dir.is_dir():
        return
    remove_stale_temporaries(out_dir)
    published, partial = out_dir / LOG, out_dir / PARTIAL_LOG
    if not published.exists():
        return
    if partial.exists():  # a published log and a newer partial one: keep both, in order
        earlier, later = published.read_bytes(), partial.read_bytes()
        write_bytes(partial, lambda handle: handle.write(earlier + later))
        published.unlink()
    else:
        os.replace(published, partial)


def finish_log(out_dir: Path) -> None:
    """Publish the log under its final name (a rename: atomic)."""
    partial = out_dir / PARTIAL_LOG
    if partial.exists():
        os.replace(partial, out_dir / LOG)
