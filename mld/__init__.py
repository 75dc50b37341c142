"""mld: the ML-Decoder reproducibility suite.

`from mld import create_model` builds any timm backbone with any classification head of the
paper (GAP, transformer-decoder, ML-Decoder, HSVLT). Sub-modules are imported lazily so that
light tools (metrics, report) do not pay for importing timm.
"""
from __future__ import annotations

from mld.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before anything imports torch: the same CPU kernels for the CLI, the library and the tests

from mld.lazy import lazy_attributes  # noqa: E402

__version__ = "0.1.0"

_LAZY = {
    "create_model": "mld.models",
    "load_official_checkpoint": "mld.models",
    "list_heads": "mld.heads",
}

# The library's sub-modules, reachable as attributes (`mld.cost`, `mld.metrics`) after `import mld`.
_SUBMODULES = ("cost", "data", "engine", "experiments", "heads", "losses", "metrics", "models", "report")

__getattr__ = lazy_attributes(__name__, _LAZY, _SUBMODULES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = ["create_model", "load_official_checkpoint", "list_heads", "__version__"]
