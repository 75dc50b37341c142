"""One GPU, a few minutes: what the paper's runs cost on it, through mld's own code.

    .venv/bin/python benchmarks/gpu_bench.py [--out gpu_bench.json] [--sections train table9 ddp loader]
    .venv/bin/python benchmarks/gpu_bench.py --device cpu --quick   # tiny sizes: checks that it runs

Sections (each prints its rows; --out writes every figure as JSON):
  train   TResNet-M + ML-Decoder (the paper's COCO run config: 80 classes, 448 px, batch 56, ASL,
          Adam, 1-cycle, EMA), random init, trained end to end with the engine's Trainer for
          --steps steps on random batches, with AMP bf16 and fp16 (GradScaler), each with the
          default memory layout and channels_last: images/s, peak GPU memory, last loss.
  table9  Table 9's protocol at 224 px (mld.cost.throughput_report: 80% of the maximal training
          batch, mixed precision): every row of the paper's table (GAP, transformer-decoder and
          ML-Decoder with 100 groups, at 100 / 1,000 / 5,000 classes), beside the V100 figures.
  ddp     the train step (bf16, channels_last) under DistributedDataParallel with synchronised
          BatchNorm, one process (nccl; gloo on CPU), as `torchrun --nproc-per-node 1` runs it.
  loader  mld's training loader over photo-like JPEGs (--jpeg-side x 3/4 px) decoded every epoch,
          and over their image store (`mld prepare store`: decoded once), with Cutout +
          RandAugment at the train section's resolution, per worker count; then the training step
          (bf16, channels_last) fed by the store's loader with the most workers, beside the same
          step on a batch already on the GPU: their ratio is how busy the loader keeps the GPU.
          Also checks that the uint8 -> float scaling on the device (model_input) gives the CPU's
          floats bit for bit.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader_speed import loader_rate, photo_folder  # noqa: E402  (the loader measurements)

import mld  # noqa: E402
from mld import cost  # noqa: E402
from mld.report import paper  # noqa: E402
from mld.atomic import write_json  # noqa: E402
from mld.data import create_loader  # noqa: E402
from mld.data.loading import PreparedLoader, make_loader, workers_stopped  # noqa: E402
from mld.data.store import write_store  # noqa: E402
from mld.data.transforms import model_input  # noqa: E402
from mld.engine.config import validate_run_config  # noqa: E402
from mld.engine.cuda_settings import configure_cuda, use_channels_last  # noqa: E402
from mld.engine.distributed import synchronise_batchnorm  # noqa: E402
from mld.engine.ema import ModelEma  # noqa: E402
from mld.engine.loop import Trainer  # noqa: E402
from mld.engine.optim import build_optimizer, build_schedule  # noqa: E402
from mld.engine.outputs import software_versions  # noqa: E402
from mld.engine.precision import Precision, choose_precision  # noqa: E402
from mld.engine.targets import LabelPolicy  # noqa: E402
from mld.losses import create_loss  # noqa: E402

BACKBONE = "tresnet_m"
COCO_CLASSES = 80
TABLE9 = "table9_throughput"
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
SECTIONS = ("train", "table9", "ddp", "loader")


def paper_run_config() -> dict[str, Any]:
    """The engine's defaults: the paper's COCO recipe for TResNet-M + ML-Decoder."""
    return validate_run_config({"run_id": "benchmark/gpu", "dataset": {"path": "unused"},
                                "model": {"backbone": BACKBONE, "head": "ml_decoder"}})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def make_trainer(device: torch.device, dtype: torch.dtype, channels_last: bool, total_steps: int,
                 distributed: bool = False) -> Trainer:
    """The engine's training step for the paper's COCO run, built as mld.engine.run builds it."""
    config = paper_run_config()
    train = config["train"]
    torch.manual_seed(0)
    model = mld.create_model(BACKBONE, "ml_decoder", COCO_CLASSES)
    if distributed:
        model = synchronise_batchnorm(model, device)
    model.to(device)
    if channels_last:
        use_channels_last(model)
    wrapped = model
    if distributed:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, train)
    return Trainer(model=wrapped, optimizer=optimizer, schedule=build_schedule(optimizer, train, total_steps),
                   loss=create_loss(**train["loss"]), labels=LabelPolicy(), precision=Precision(device, dtype),
                   ema=ModelEma(model, train["ema_decay"]))


def time_steps(trainer: Trainer, device: torch.device, resolution: int, batch_size: int, warmup: int,
               steps: int) -> dict[str, Any]:
    """Images/s over `steps` training steps after `warmup` untimed ones, on random batches."""
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.rand(batch_size, 3, resolution, resolution, device=device, generator=generator)
    labels = (torch.rand(batch_size, COCO_CLASSES, device=device, generator=generator) < 0.05).to(torch.int8)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for index in range(warmup + steps):
        if index == warmup:
            synchronize(device)
            started = time.perf_counter()
        trainer.step(images, labels, where=f"benchmark step {index + 1}")
    synchronize(device)
    seconds = time.perf_counter() - started
    loss = trainer.read_losses()[-1]
    return {"images_per_s": steps * batch_size / seconds, "seconds": seconds, "steps": steps,
            "batch_size": batch_size, "resolution": resolution, "last_loss": loss,
            "peak_memory_gb": peak_memory_gb(device), "loss_scale": trainer.precision.scaler.get_scale()
            if trainer.precision.scaler.is_enabled() else None}


def train_section(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for precision in PRECISIONS:
        for channels_last in (False, True):
            trainer = make_trainer(device, PRECISIONS[precision], channels_last, args.warmup + args.steps)
            figures = time_steps(trainer, device, args.resolution, args.batch_size, args.warmup, args.steps)
            rows.append({"precision": precision, "channels_last": channels_last, **figures})
            print_row("train", f"{BACKBONE} + ML-Decoder, {precision}{', channels_last' if channels_last else ''}",
                      figures["images_per_s"], f"{args.resolution} px, batch {args.batch_size}, "
                      f"loss {figures['last_loss']:.3g}{memory_note(figures['peak_memory_gb'])}")
            del trainer
            release(device)
    return rows


def table9_section(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    reported = paper.paper_table(TABLE9).to_dict("records")
    if args.quick:
        reported = [row for row in reported if row["classes"] == min(r["classes"] for r in reported)]
    for row in reported:
        queries = row["queries"]
        groups = int(queries) if row["head"] == "ml_decoder" else None
        torch.manual_seed(0)
        model = mld.create_model(row["backbone"], row["head"], int(row["classes"]), num_groups=groups)
        measured = cost.throughput_report(
            model, args.table9_resolution, device=device,
            batch_size=None if device.type == "cuda" else args.batch_size,
            warmup=args.warmup, repeats=args.repeats, min_seconds=args.min_seconds)
        measured["flops_g"] = cost.count_flops(model, args.table9_resolution)
        result = {"head": row["head"], "classes": int(row["classes"]), "num_groups": groups, **measured,
                  "paper": {key: float(row[key]) for key in ("train_images_per_s", "inference_images_per_s",
                                                             "max_train_batch", "flops_g")}}
        rows.append(result)
        paper_figures = result["paper"]
        print_row("table9", f"{row['head']}, {int(row['classes'])} classes",
                  measured["train_images_per_s"],
                  f"inference {measured['inference_images_per_s']:.0f}/s, max batch {measured['max_train_batch']}, "
                  f"batch {measured['batch_size']}, {measured['flops_g']:.1f} G (paper V100: "
                  f"{paper_figures['train_images_per_s']:.0f} / {paper_figures['inference_images_per_s']:.0f}"
                  f" img/s, max batch {paper_figures['max_train_batch']:.0f})")
        del model
        release(device)
    return rows


@contextlib.contextmanager
def one_process_group(device: torch.device):
    """A process group of one process, as torchrun --nproc-per-node 1 makes it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def ddp_section(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    with one_process_group(device):
        trainer = make_trainer(device, PRECISIONS["bf16"], True, args.warmup + args.ddp_steps, distributed=True)
        figures = time_steps(trainer, device, args.resolution, args.batch_size, args.warmup, args.ddp_steps)
        del trainer
    release(device)
    print_row("ddp", f"{BACKBONE} + ML-Decoder, bf16, channels_last, DDP x 1", figures["images_per_s"],
              f"{'nccl' if device.type == 'cuda' else 'gloo'}, synchronised BatchNorm"
              f"{memory_note(figures['peak_memory_gb'])}")
    return [{"precision": "bf16", "channels_last": True, "world_size": 1, **figures}]


def engine_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run takes on `device` (train.amp: auto): bf16 on GPUs, float32 on CPU."""
    return choose_precision("auto", device).dtype


def scaling_is_exact(device: torch.device) -> bool:
    """model_input on `device` gives every pixel value the float it gives on the CPU, bit for bit."""
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    return torch.equal(model_input(values, device).cpu(), model_input(values, torch.device("cpu")))


def fed_steps(args: argparse.Namespace, device: torch.device, dataset: Path, store: Path, workers: int
              ) -> dict[str, Any]:
    """Images/s of the training step on batches from the store's loader (pinned on a GPU), over epochs."""
    trainer = make_trainer(device, engine_dtype(device), True, args.warmup + args.steps)
    plain = create_loader(dataset, "train", args.batch_size, args.resolution, train=True, num_workers=workers,
                          seed=0, store=store)
    loader = make_loader(plain.dataset, plain.batch_sampler, None, workers, device, loader_class=PreparedLoader)
    done, epoch, loss = 0, 0, float("nan")
    with workers_stopped():
        while done < args.warmup + args.steps:
            loader.set_epoch(epoch)
            for images, labels in loader:
                if done == args.warmup:
                    synchronize(device)
                    started = time.perf_counter()
                loss = trainer.step(images, labels, where=f"benchmark step {done + 1}")
                done += 1
                if done == args.warmup + args.steps:
                    break
            epoch += 1
    synchronize(device)
    seconds = time.perf_counter() - started
    return {"images_per_s": args.steps * args.batch_size / seconds, "steps": args.steps, "workers": workers,
            "last_loss": loss}


def loader_section(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    exact = scaling_is_exact(device)
    print_row("loader", "uint8 -> float on the device equals the CPU's", None, "exact" if exact else "NOT EXACT")
    with tempfile.TemporaryDirectory() as scratch:
        size = (args.jpeg_side, args.jpeg_side * 3 // 4)
        dataset = photo_folder(Path(scratch), args.jpegs, size, num_classes=COCO_CLASSES)
        store = Path(scratch) / "store"
        started = time.perf_counter()
        write_store(dataset, args.resolution, store, num_workers=max(args.workers))
        store_s = time.perf_counter() - started
        common = {"jpegs": args.jpegs, "jpeg_size": list(size), "resolution": args.resolution,
                  "batch_size": args.batch_size, "store_write_s": store_s, "scaling_exact": exact}
        for workers in args.workers:
            for source, path in (("raw JPEGs", None), ("store", store)):
                rate = loader_rate(dataset, args.resolution, args.batch_size, workers, path)
                rows.append({"source": source, "workers": workers, "images_per_s": rate, **common})
                print_row("loader", f"{size[0]}x{size[1]} {source}, train augmentation, {workers} workers", rate,
                          f"to {args.resolution} px, {args.jpegs} files")
        workers = max(args.workers)
        fed = fed_steps(args, device, dataset, store, workers)
        release(device)
        resident = time_steps(make_trainer(device, engine_dtype(device), True, args.warmup + args.steps), device,
                              args.resolution, args.batch_size, args.warmup, args.steps)
        busy = fed["images_per_s"] / resident["images_per_s"]
        rows.append({"source": "store, training step", **fed, "resident_images_per_s": resident["images_per_s"],
                     "gpu_busy": busy, **common})
        print_row("loader", f"train step fed by the store, {workers} workers, "
                  f"{choose_precision('auto', device).name}", fed["images_per_s"],
                  f"{busy:.0%} of the step on a resident batch ({resident['images_per_s']:.1f} images/s)")
        release(device)
    return rows


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def memory_note(gigabytes: float | None) -> str:
    return "" if gigabytes is None else f", peak {gigabytes:.1f} GB"


def print_row(section: str, what: str, images_per_s: float | None, note: str) -> None:
    rate = "-" if images_per_s is None else f"{images_per_s:10.1f}"
    print(f"{section:7s} {what:55s} {rate:>10s}  {note}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda[:i] or cpu (default cuda)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (64 px, batch 2, a few steps): checks that every section runs")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--steps", type=int, help="timed training steps per setting (default 200)")
    parser.add_argument("--ddp-steps", type=int, help="timed DDP steps (default 100)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10)")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the paper's, 56)")
    parser.add_argument("--resolution", type=int, help="training resolution (default: the paper's, 448)")
    parser.add_argument("--table9-resolution", type=int, help="Table 9's resolution (default 224)")
    parser.add_argument("--repeats", type=int, help="Table 9: timed steps, at least (default 5)")
    parser.add_argument("--min-seconds", type=float, default=0.0, help="Table 9: time at least this long")
    parser.add_argument("--jpegs", type=int, help="JPEG files the loader reads (default 400)")
    parser.add_argument("--jpeg-side", type=int, help="width of the JPEG files, px; height 3/4 of it (default 640: COCO-like)")
    parser.add_argument("--workers", type=int, nargs="+", help="loader workers to try (default 8 16)")
    parser.add_argument("--out", type=Path, help="JSON file for every figure")
    args = parser.parse_args(argv)
    recipe = paper_run_config()["train"]
    defaults = dict(steps=200, ddp_steps=100, warmup=10, batch_size=recipe["batch_size"],
                    resolution=recipe["resolution"], table9_resolution=224, repeats=5, jpegs=400, jpeg_side=640,
                    workers=[8, 16])
    if args.quick:
        defaults.update(steps=2, ddp_steps=2, warmup=1, batch_size=2, resolution=64, table9_resolution=64,
                        repeats=1, jpegs=16, jpeg_side=96, workers=[2])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device is visible; use --device cpu --quick to check the script")
        torch.cuda.set_device(device)
        configure_cuda()  # as mld.engine.run sets it for a run: cuDNN autotuning, TF32
    print(f"device {device}{f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'section':7s} {'what':55s} {'images/s':>10s}  notes")
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "train": lambda: train_section(args, device), "table9": lambda: table9_section(args, device),
        "ddp": lambda: ddp_section(args, device), "loader": lambda: loader_section(args, device)}
    results: dict[str, Any] = {"device": str(device), "quick": args.quick, "versions": software_versions()}
    started = time.perf_counter()
    for name in args.sections:
        section_started = time.perf_counter()
        results[name] = sections[name]()
        results[f"{name}_s"] = time.perf_counter() - section_started
    results["total_s"] = time.perf_counter() - started
    print(f"total {results['total_s']:.0f} s")
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
