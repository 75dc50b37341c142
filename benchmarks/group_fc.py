"""Benchmark: the vectorized group fully-connected layer against the paper's loop (appendix L).

Forward + backward on CPU at the paper's Open Images scale by default (K = 100 groups,
N = 9600 classes, so g = 96; D = 768; batch 32). Prints the median time of each, their ratio,
and each one's peak memory.

Peak memory is the high-water mark of live tensor bytes during one forward + backward: every
tensor allocation and free that torch.profiler records (profile_memory=True), replayed in time
order through the profiler's memory timeline (the one behind its memory-timeline export; a
private torch API). tracemalloc would not see these allocations (torch does not allocate through
Python's allocator), and /proc's resident-set peak would also count malloc caching and the rest
of the process. Inputs, weights and the output gradient exist before the measured region and are
not counted.

    python benchmarks/group_fc.py [--num-groups 100 --classes 9600 --dim 768 --batch 32 --repeats 5]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action

from mld.heads.group_fc import group_fc, group_fc_loop

GroupFC = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forward_backward(layer: GroupFC, queries: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> None:
    queries.grad = weight.grad = None
    layer(queries, weight).backward(grad)


def median_seconds(layer: GroupFC, inputs: tuple[torch.Tensor, ...], repeats: int) -> float:
    forward_backward(layer, *inputs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_backward(layer, *inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bytes(layer: GroupFC, inputs: tuple[torch.Tensor, ...]) -> int:
    """Highest sum of live bytes allocated (minus freed) during one forward + backward."""
    inputs[0].grad = inputs[1].grad = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        forward_backward(layer, *inputs)
    live = peak = 0
    for _, action, _, size in sorted(prof._memory_profile().timeline, key=lambda record: record[0]):
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-groups", type=int, default=100, help="ML-Decoder's K")
    parser.add_argument("--classes", type=int, default=9600)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    group_size = math.ceil(args.classes / args.num_groups)
    queries = torch.randn(args.batch, args.num_groups, args.dim, requires_grad=True)
    weight = torch.nn.init.xavier_normal_(torch.empty(args.num_groups, args.dim, group_size)).requires_grad_()
    grad = torch.randn(args.batch, args.num_groups * group_size)
    inputs = (queries, weight, grad)

    forward_backward(group_fc, *inputs)
    reference = group_fc(queries, weight).detach(), queries.grad.clone(), weight.grad.clone()
    forward_backward(group_fc_loop, *inputs)
    looped = group_fc_loop(queries, weight).detach(), queries.grad.clone(), weight.grad.clone()
    largest_difference = max((a - b).abs().max().item() for a, b in zip(reference, looped))

    print(
        f"group FC forward+backward, K={args.num_groups}, N={args.classes} (g={group_size}), D={args.dim}, "
        f"batch {args.batch}, CPU, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"outputs and gradients agree to {largest_difference:.2g}")
    results = {}
    for name, layer in (("vectorized", group_fc), ("loop", group_fc_loop)):
        results[name] = median_seconds(layer, inputs, args.repeats), peak_bytes(layer, inputs)
        seconds, peak = results[name]
        print(f"{name:>10}: {seconds * 1e3:8.2f} ms   peak {peak / 2**20:8.2f} MiB")
    (fast, fast_peak), (slow, slow_peak) = results["vectorized"], results["loop"]
    print(f"loop / vectorized: time x{slow / fast:.2f}, peak memory x{slow_peak / fast_peak:.2f}")


if __name__ == "__main__":
    main()
