"""Pinned CPU numerics: the same run config gives the same digits on x86-64 machines of one kind of
CPU, and close digits on any other x86-64 machine.

PyTorch, MKL and oneDNN pick their CPU kernels by the instruction sets of the machine (AVX-512 on
one host, AVX2 on another), and kernels of different widths sum in different orders: the same
run config and software then train to different floats, and a chaotic run (zero-shot training
with query noise) to visibly different mAP (a fresh clone's ZSL mAP 7.80 / 7.82 / 5.05 per seed
against the committed reference's). Capping every library at AVX2, which every x86-64 machine of
the last decade has, makes PyTorch's and oneDNN's kernels the same everywhere; measured on the
embedded default's head runs it costs no time. MKL still picks its own code paths by CPU vendor and
generation (mAP 2e-4 apart in one of 44 tiny runs between two such machines), which is why results
record the CPU (`cpu_model`). Random numbers must not depend on the CPU either: torch's CPU
dropout takes MKL's random stream on Intel and its own elsewhere, so the heads use
mld.heads.dropout. Set any of these variables yourself to override the cap (e.g.
`ATEN_CPU_CAPABILITY=avx512` for the fastest kernels of your machine, at the price of digits that
differ from the committed reference). Python's hash seed does not change a run's results (runs
draw every random number from seeded generators, tests/test_reproducibility.py checks it); the
thread count does (a 1-thread and a 2-thread run differ in the 5th digit), which is why the
workflow runs each job on the fixed `resources.<rule>.threads` of its config.

`import mld` pins (mld/__init__.py), so the command line, the library and the tests (their
conftest imports mld first) all compute with the same kernels. Only x86-64 CPUs with AVX2 and FMA
are pinned: PyTorch takes `avx2` there without checking the CPU (an older x86 would stop on an
illegal instruction), and on ARM, POWER or s390x it knows no such value (it warns in every process
and picks its own kernels), so those machines keep their defaults and reproduce only among their kind.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",   # PyTorch's own vectorised kernels
    "MKL_CBWR": "AVX2",              # MKL's conditional numerical reproducibility branch
    "ONEDNN_MAX_CPU_ISA": "AVX2",    # oneDNN (convolutions, matmuls)
}
X86_64_MACHINES = frozenset({"x86_64", "amd64"})
AVX2_FLAGS = frozenset({"avx2", "fma"})   # what PyTorch's avx2 kernels need
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    """The first `name : value` of Linux's /proc/cpuinfo; None where the file or the field is absent."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    fields = (line.split(":", 1) for line in lines if ":" in line)
    return next((value.strip() for key, value in fields if key.strip() == name), None)


def has_avx2(machine: str | None = None, cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU runs PyTorch's avx2 kernels: x86-64 with AVX2 and FMA (read from Linux's
    /proc/cpuinfo; an x86-64 machine without it, macOS or Windows, is taken to have them)."""
    if (machine if machine is not None else platform.machine()).lower() not in X86_64_MACHINES:
        return False
    flags = _cpuinfo_field("flags", cpuinfo)
    return flags is None or AVX2_FLAGS <= set(flags.split())


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The processor's name (Linux's /proc/cpuinfo "model name", else what Python reports) and, where
    Linux gives them, its x86 family, model and stepping. Even pinned, MKL promises equal sums only
    among CPUs of one kind, and virtual machines often name different generations alike (two hosts
    both reporting "AMD EPYC" trained one tiny run to mAPs 2e-4 apart), so results record both."""
    name = _cpuinfo_field("model name", cpuinfo)
    name = " ".join(name.split()) if name else platform.processor() or platform.machine() or "unknown"
    identity = [(field, _cpuinfo_field(field, cpuinfo)) for field in ("cpu family", "model", "stepping")]
    if all(value for _, value in identity):
        name += " [" + " ".join(f"{field.split()[-1]} {value}" for field, value in identity) + "]"
    return name


def pin_cpu_numerics() -> None:
    """Set the variables above unless already set (a user's own setting wins), on CPUs that have
    AVX2; must run before torch computes anything, so mld/__init__.py calls it."""
    if not has_avx2():
        return
    for name, value in PINNED_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
