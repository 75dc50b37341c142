"""The engine: one run from one config (training, evaluation, feature caches, backbone export).

`train(config, out_dir)` trains or resumes a run and writes its outputs (`train_seeds(config,
out_dir, seeds)`: several seeds in one process, each as its own run would be); `evaluate(config,
checkpoint, out_dir)` scores saved weights; `extract_features(config, out_dir)` caches backbone
feature maps for cached_features runs; `export_backbone(run_dir, out_file)` turns a finished
end-to-end run into a backbone weights file. Contracts: docs/architecture.md.

Names are imported on first use, so that reading or validating a config does not import torch.
"""
from __future__ import annotations

from mld.lazy import lazy_attributes

_LAZY = {
    "train": "mld.engine.run",
    "train_seeds": "mld.engine.seeds",
    "evaluate": "mld.engine.evaluate_checkpoint",
    "extract_features": "mld.engine.extract",
    "export_backbone": "mld.engine.export",
    "load_run_config": "mld.engine.config",
    "validate_run_config": "mld.engine.config",
    "ConfigError": "mld.engine.config",
    "CheckpointError": "mld.engine.checkpoint",
    "NonFiniteLossError": "mld.engine.loop",
    "RunInterrupted": "mld.signals",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
