"""How a run uses a CUDA device: cuDNN's autotuner, TF32 arithmetic and channels_last images.

None of these applies on the CPU, where runs are bit-reproducible; on a GPU, results agree to
float tolerance only (cuDNN's autotuner already picks kernels by timing).

- cuDNN benchmark mode times the convolution algorithms once for the run's fixed input size.
- TF32: float32 matmuls and convolutions round their inputs to a 10-bit mantissa on tensor cores
  (Ampere and later), several times faster. Under `train.amp` most arithmetic is bf16 or fp16
  anyway; TF32 speeds up what stays float32 (and runs with `train.amp: off`). PyTorch already
  allows it for convolutions by default, not for matmuls.
- channels_last: convolutions on tensor cores work in NHWC. The weights are converted once, and a
  forward pre-hook converts each batch of images entering the model (and the EMA's copy, which
  keeps the hook), as timm's training script converts its inputs. (A convolution given NCHW
  images and NHWC weights converts the images itself at the same cost, which is what zero-shot
  evaluation's class-set passes, calling `forward_features`, rely on.)
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def configure_cuda() -> None:
    """Set this process's cuDNN autotuning and TF32 (once, before a run trains on a GPU)."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"


def use_channels_last(model: nn.Module) -> nn.Module:
    """`model` with channels_last weights, converting its image inputs to channels_last too."""
    model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(channels_last_inputs)
    return model


def channels_last_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook: a batch of images (a 4-D first argument) in channels_last memory format."""
    if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None
