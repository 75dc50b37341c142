"""Processes, devices and collectives for single-process and torchrun (DistributedDataParallel) runs.

`torchrun --nproc-per-node P -m mld train ...` starts P processes with RANK / WORLD_SIZE /
LOCAL_RANK in their environment; `World.from_environment` joins them into one process group
(NCCL on GPUs, gloo on CPU). A plain `mld train` is a world of one, and every helper here is then
a no-op. BatchNorm statistics are synchronised across processes; torch's SyncBatchNorm is
GPU-only, so on CPU the engine uses `DistributedBatchNorm`, which computes the same statistics
with differentiable all-reduces.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mld.data.sampling import shard_bounds


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device_choice: str = "auto") -> "World":
        """Join the torchrun process group if there is one, and pick this process's device."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise ValueError("train.device = cuda, but no CUDA device is visible; use auto or cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        if world_size == 1:
            return cls(0, 1, device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def any(self, flag: bool) -> bool:
        """True on every process if `flag` is true on any (e.g. a stop signal reached one of them)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def largest(self, value: int) -> int:
        """The largest of every process's `value` (e.g. micro-batches each GPU's memory needs)."""
        if not self.distributed:
            return value
        found = torch.tensor([value], device=self.device)
        dist.all_reduce(found, op=dist.ReduceOp.MAX)
        return int(found.item())

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            values = values.to(self.device).clone()
            dist.all_reduce(values)
        return values

    def gather_shards(self, shard: torch.Tensor, total: int) -> torch.Tensor:
        """Concatenate every process's block of an evaluation split (see `shard_bounds`) in order."""
        if not self.distributed:
            return shard
        size = math.ceil(total / self.world_size)
        padded = torch.zeros((size, *shard.shape[1:]), dtype=shard.dtype, device=self.device)
        padded[: len(shard)] = shard.to(self.device)
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(pieces, padded)
        return torch.cat([piece[: len(shard_bounds(total, rank, self.world_size))].cpu()
                          for rank, piece in enumerate(pieces)])


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum of every process's copy is again that sum."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class DistributedBatchNorm(_BatchNorm):
    """BatchNorm whose batch statistics cover the samples of every process (CPU-capable SyncBatchNorm).

    Mean and variance are all-reduced with autograd-aware collectives, so gradients flow through
    the global statistics as they do in torch.nn.SyncBatchNorm. Same parameters and buffers as
    BatchNorm, so checkpoints load into plain models. `drop` and `act` keep the dropout and
    activation of timm's fused BatchNormAct layers.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 drop: nn.Module | None = None, act: nn.Module | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(self._normalise(input)))

    def _normalise(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        reduce_dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local_count = torch.tensor([input.numel() / input.size(1)], dtype=input.dtype, device=input.device)
        totals = _AllReduceSum.apply(torch.cat([input.sum(reduce_dims), local_count]))
        count = totals[-1]
        mean = totals[:-1] / count
        centered = input - mean.view(shape)
        variance = _AllReduceSum.apply(centered.square().sum(reduce_dims)) / count
        output = centered * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), variance.detach() * count / (count - 1))
        return output

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_variance: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased_variance, factor)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer by one that synchronises its statistics across processes."""
    if device.type == "cuda":
        import timm.layers  # here, not at the top: head-only runs never import timm

        return timm.layers.convert_sync_batchnorm(model)
    return _convert_to_distributed_batchnorm(model)


def _convert_to_distributed_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, DistributedBatchNorm):
        replacement = DistributedBatchNorm(module.num_features, module.eps, module.momentum,
                                           module.affine, module.track_running_stats,
                                           getattr(module, "drop", None), getattr(module, "act", None))
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        replacement.requires_grad_(any(p.requires_grad for p in module.parameters()))
        return replacement
    for name, child in module.named_children():
        module.add_module(name, _convert_to_distributed_batchnorm(child))
    return module
