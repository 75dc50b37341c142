"""The embedded synthetic benchmark: seeded multi-label image datasets rendered in seconds.

See `presets` for what each preset mimics and `docs/data.md` for the design.
"""
from mld.data.synthetic.generate import prepare_synthetic, render_split
from mld.data.synthetic.presets import PRESETS, Preset, get_preset, preset_classes, preset_num_classes

__all__ = ["PRESETS", "Preset", "get_preset", "preset_classes", "preset_num_classes",
           "prepare_synthetic", "render_split"]
