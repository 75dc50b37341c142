"""Benchmark: what each head costs as the class count grows (Table 9's comparison).

GAP, transformer-decoder (one query per class) and ML-Decoder (--num-groups group queries) on
TResNet-M at 224 px, for 100, 1000 and 5000 classes: FLOPs and inference images/s, with each
head's speed relative to GAP at the same class count. The paper (V100, mixed precision) loses
12-14% with ML-Decoder at every class count while the transformer-decoder collapses.

The heads of one class count are measured in turn, --rounds times, and each keeps its best
round (median step time within a round): on a shared machine other jobs' load comes and goes,
and interleaving gives every head the same chances. On CPU the default is a small batch, a few
minutes on two cores; on CUDA the batch is 80% of the maximal training batch, with mixed
precision, as in the paper. --train adds training images/s.

    python benchmarks/head_cost.py [--classes 100 1000 5000 --batch-size 2 --rounds 3]
"""
from __future__ import annotations

import argparse

import torch

import mld
from mld import cost

HEADS = ("gap", "ml_decoder", "transformer_decoder")


def build(head: str, classes: int, args: argparse.Namespace) -> torch.nn.Module:
    options = {"num_groups": min(args.num_groups, classes)} if head == "ml_decoder" else {}
    return mld.create_model(args.backbone, head, classes, **options)


def batch_size(model: torch.nn.Module, args: argparse.Namespace) -> tuple[int, int | None]:
    """(batch to time, maximal training batch): Table 9's 80% of the maximum on CUDA."""
    if not args.device.startswith("cuda"):
        return args.batch_size, None
    largest = cost.max_batch_size(model, args.resolution, device=args.device, amp=True)
    return max(1, int(0.8 * largest)), largest


def speeds(model: torch.nn.Module, batch: int, args: argparse.Namespace) -> dict[str, float]:
    timing = {"device": args.device, "amp": args.device.startswith("cuda"),
              "warmup": args.warmup, "repeats": args.repeats}
    result = {"inference": cost.inference_throughput(model, args.resolution, batch, **timing)}
    if args.train:
        result["train"] = cost.train_throughput(model, args.resolution, batch, **timing)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument("--backbone", default="tresnet_m")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--num-groups", type=int, default=100, help="ML-Decoder's K (group queries)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=2, help="CPU batch (CUDA: 80%% of max)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best is kept")
    parser.add_argument("--train", action="store_true", help="also measure training speed")
    args = parser.parse_args()

    print(f"{args.backbone} at {args.resolution} px on {args.device} "
          f"(torch threads: {torch.get_num_threads()}), best of {args.rounds} rounds")
    metrics = ["inference"] + (["train"] if args.train else [])
    header = f"{'head':20} {'classes':>7} {'FLOPs G':>8} {'batch':>5} {'max':>5}" + "".join(
        f" {metric + ' img/s':>15} {'vs GAP':>7}" for metric in metrics)
    print(header)
    print("-" * len(header))
    for classes in args.classes:
        models = {head: build(head, classes, args) for head in args.heads}
        batches = {head: batch_size(model, args) for head, model in models.items()}
        best = {head: dict.fromkeys(metrics, 0.0) for head in args.heads}
        for _ in range(args.rounds):
            for head, model in models.items():
                for metric, value in speeds(model, batches[head][0], args).items():
                    best[head][metric] = max(best[head][metric], value)
        for head, model in models.items():
            line = (f"{head:20} {classes:7d} {cost.count_flops(model, args.resolution):8.2f} "
                    f"{batches[head][0]:5d} {str(batches[head][1] or '-'):>5}")
            for metric in metrics:
                relative = (f"{best[head][metric] / best['gap'][metric] - 1:+.1%}"
                            if "gap" in best and head != "gap" else "-")
                line += f" {best[head][metric]:15.2f} {relative:>7}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
