"""mld.data: the synthetic benchmark, the real datasets' adapters and the prepared format.

Every experiment reads a *prepared dataset* (see `mld.data.prepared` and docs/data.md),
whether it was rendered by the synthetic generator or converted from COCO, VOC, NUS-WIDE or
Open Images. Names that need torch (datasets, loaders, transforms) are imported on first use,
so that reading metadata or preset tables stays light.
"""
from __future__ import annotations

from mld.lazy import lazy_attributes

from mld.data.prepared import PreparedDatasetError, PreparedMeta, open_prepared, validate_prepared
from mld.data.synthetic import PRESETS, prepare_synthetic, preset_num_classes

_LAZY = {
    "PreparedDataset": "mld.data.loading",
    "ImageDataset": "mld.data.loading",
    "create_loader": "mld.data.loading",
    "build_transform": "mld.data.transforms",
    "load_word_vectors": "mld.data.word_vectors",
    "convert_pickle": "mld.data.pickle_conversion",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["PRESETS", "PreparedDatasetError", "PreparedMeta", "open_prepared", "validate_prepared",
           "prepare_synthetic", "preset_num_classes", *_LAZY]
