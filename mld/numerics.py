"""Pinned CPU numerics: the same run config gives the same digits on every x86-64 machine.

PyTorch, MKL and oneDNN pick their CPU kernels by the instruction sets of the machine (AVX-512 on
one host, AVX2 on another), and kernels of different widths sum in different orders: the same
run config and software then train to different floats, and a chaotic run (zero-shot training
with query noise) to visibly different mAP (a fresh clone's ZSL mAP 7.80 / 7.82 / 5.05 per seed
against the committed reference's). Capping every library at AVX2, which every x86-64 machine of
the last decade has, makes the kernels the same everywhere; measured on the embedded default's
head runs it costs no time. Set any of these variables yourself to override the cap (e.g.
`ATEN_CPU_CAPABILITY=avx512` for the fastest kernels of your machine, at the price of digits that
differ from the committed reference). Python's hash seed does not change a run's results (runs
draw every random number from seeded generators, tests/test_reproducibility.py checks it); the
thread count does (a 1-thread and a 2-thread run differ in the 5th digit), which is why the
workflow runs each job on the fixed `resources.<rule>.threads` of its config.
"""
from __future__ import annotations

import os

PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",   # PyTorch's own vectorised kernels
    "MKL_CBWR": "AVX2",              # MKL's conditional numerical reproducibility branch
    "ONEDNN_MAX_CPU_ISA": "AVX2",    # oneDNN (convolutions, matmuls)
}


def pin_cpu_numerics() -> None:
    """Set the variables above unless already set; must run before torch is imported."""
    for name, value in PINNED_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
