"""Lazy package attributes (PEP 562): light tools do not pay for importing torch or timm."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Collection, Mapping


def lazy_attributes(package: str, sources: Mapping[str, str],
                    submodules: Collection[str] = ()) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`, importing on first use.

    `sources` maps an attribute to the module that defines it (`mld.create_model` from
    `mld.models`); a name in `submodules` is the sub-module `package.name` itself, so that
    `import mld; mld.cost.count_flops(...)` works without `import mld.cost`.
    """

    def __getattr__(name: str) -> Any:
        if name in sources:
            return getattr(importlib.import_module(sources[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
