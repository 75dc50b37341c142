"""Classification heads and their registry.

`create_head(name, in_channels, num_classes, **options)` builds any head by name; head classes are
imported on first use, so listing heads or building a GAP head never imports the others.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from mld.heads.augment import extend_targets
from mld.heads.base import Head

# name -> "module:class"; the module is imported only when the head is first used.
_REGISTRY = {
    "gap": "mld.heads.gap:GAPHead",
    "transformer_decoder": "mld.heads.transformer_decoder:TransformerDecoderHead",
    "ml_decoder": "mld.heads.ml_decoder:MLDecoderHead",
    "hsvlt": "mld.heads.hsvlt:HSVLTHead",
}


def list_heads() -> list[str]:
    """The names `create_head` and `mld.create_model` accept."""
    return sorted(_REGISTRY)


def head_class(name: str) -> type[Head]:
    """The class registered under `name` (imported now if it was not yet)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(list_heads())}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def head_options(name: str) -> list[str]:
    """The keyword options the head `name` accepts (besides in_channels and num_classes)."""
    parameters = inspect.signature(head_class(name).__init__).parameters
    return [p for p in parameters if p not in ("self", "in_channels", "num_classes")]


def check_head_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise if head `name` does not know one of `options`, listing the options it does know."""
    valid = head_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"head {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )


def create_head(name: str, in_channels: int | Sequence[int], num_classes: int, **options: Any) -> Head:
    """Build head `name`; unknown options are reported together with the valid ones."""
    check_head_options(name, options)
    return head_class(name)(in_channels, num_classes, **options)


__all__ = ["Head", "check_head_options", "create_head", "extend_targets", "head_class", "head_options", "list_heads"]
