"""Mixed precision: bf16 or fp16 autocast on GPUs (fp16 with a gradient scaler), float32 on CPU."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import ContextManager

import torch


@dataclass
class Precision:
    device: torch.device
    dtype: torch.dtype | None  # None: full float32
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def choose_precision(setting: str, device: torch.device) -> Precision:
    """`train.amp`: auto = bf16 where the GPU supports it, else fp16; always off on CPU."""
    if device.type != "cuda":
        if setting in ("bf16", "fp16"):
            raise ValueError(f"train.amp = {setting} needs a CUDA device, but this run is on {device}; "
                             "use auto or off")
        return Precision(device, None)
    if setting == "off":
        return Precision(device, None)
    if setting == "auto":
        setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Precision(device, {"bf16": torch.bfloat16, "fp16": torch.float16}[setting])
