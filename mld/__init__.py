"""mld: the ML-Decoder reproducibility suite.

`from mld import create_model` builds any timm backbone with any classification head of the
paper (GAP, transformer-decoder, ML-Decoder, HSVLT). Sub-modules are imported lazily so that
light tools (metrics, tables) do not pay for importing timm.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "mld.models",
    "load_official_checkpoint": "mld.models",
    "list_heads": "mld.heads",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mld' has no attribute {name!r}")


__all__ = ["create_model", "load_official_checkpoint", "list_heads", "__version__"]
