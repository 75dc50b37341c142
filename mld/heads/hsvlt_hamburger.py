"""The "Hamburger" refinement of HSVLT's Cross-Scale Aggregation (Geng et al., ICLR 2021).

A Hamburger models global context as a low-rank matrix: a linear "lower bread", a non-negative
matrix factorisation "ham" solved by a few multiplicative updates, and a linear "upper bread" added
back to the input. Here the matrix is one image's concatenated multi-modal features: D channels by
N label tokens, so the decomposition shares information across the label set.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

# Keeps the multiplicative updates away from 0 / 0.
_EPS = 1e-6


def _update_coefficients(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """One multiplicative NMF update of `coef` [B, N, R] for x [B, D, N] ~ bases [B, D, R] @ coef^T."""
    numerator = x.transpose(1, 2) @ bases
    denominator = coef @ (bases.transpose(1, 2) @ bases)
    return coef * numerator / (denominator + _EPS)


def _update_bases(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """One multiplicative NMF update of `bases` [B, D, R]."""
    numerator = x @ coef
    denominator = bases @ (coef.transpose(1, 2) @ coef)
    return bases * numerator / (denominator + _EPS)


class NMFHamburger(nn.Module):
    """Low-rank refinement of token features [B, N, D] -> [B, N, D] (residual).

    The factorisation starts from fixed bases drawn at construction (a buffer, so the seed and the
    checkpoint decide it and evaluation is deterministic; the original draws fresh random bases on
    every call). Its iterations run without autograd and only the last coefficient update is
    differentiated: the Hamburger paper's one-step gradient, which keeps training stable.
    """

    def __init__(self, dim: int, rank: int = 16, steps: int = 6) -> None:
        super().__init__()
        if rank < 1 or steps < 1:
            raise ValueError(f"NMFHamburger: rank={rank} and steps={steps} must both be >= 1")
        self.steps = steps
        self.lower_bread = nn.Linear(dim, dim)
        self.upper_bread = nn.Linear(dim, dim)
        self.register_buffer("initial_bases", F.normalize(torch.rand(dim, rank), dim=0))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        matrix = F.relu(self.lower_bread(tokens)).transpose(1, 2)  # non-negative [B, D, N]
        reconstruction = self._low_rank(matrix).transpose(1, 2).to(tokens.dtype)
        return tokens + self.upper_bread(reconstruction)

    def _low_rank(self, matrix: torch.Tensor) -> torch.Tensor:
        # Multiplicative updates divide by small numbers: run them in float32 even under autocast.
        with _without_autocast(matrix.device):
            matrix = matrix.float()
            bases = self.initial_bases.float().expand(matrix.shape[0], -1, -1)
            with torch.no_grad():
                coef = torch.softmax(matrix.transpose(1, 2) @ bases, dim=-1)
                for _ in range(self.steps):
                    coef = _update_coefficients(matrix, bases, coef)
                    bases = _update_bases(matrix, bases, coef)
            coef = _update_coefficients(matrix, bases, coef)
            return bases @ coef.transpose(1, 2)


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on `device`; nothing to switch off where autocast does not exist (meta)."""
    if not torch.amp.is_autocast_available(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)
