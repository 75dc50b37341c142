"""What a model costs: FLOPs, parameters, throughput, maximal batch size and per-module time.

FLOPs are multiply-accumulates (MACs) in G for one image, the papers' unit (TResNet-M with a GAP
head at 224 px: 5.7 G). They come from torch's FlopCounterMode, which counts 2 FLOPs per MAC of
matmuls and convolutions; we halve that, and add the attention kernels its table lacks (CPU
scaled_dot_product_attention, nn.MultiheadAttention's fused inference path). Counting needs only
shapes, so it runs on a meta-device copy of the model (no arithmetic, no memory: a 9600-query
transformer-decoder is counted in a second); a model that needs real values is counted on its
own device instead.

Speed follows Table 9's protocol: 80% of the maximal training batch (searched on CUDA), mixed
precision on GPU, warm-up steps before timed repeats (the median repeat counts, so a burst of
other load on a shared machine does not). A measurement is taken in `rounds` (each its own median
of repeats): the rounds' spread is the noise a speed ratio is judged against (mld.report.claims), and
their median is the headline number. Every measurement returns a plain dict that a workflow rule
writes to JSON, the rounds under "rounds".
"""
from __future__ import annotations

import contextlib
import copy
import gc
import statistics
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from mld.losses import AsymmetricLoss

aten = torch.ops.aten
InputSize = int | Sequence[int]
Features = torch.Tensor | Sequence[torch.Tensor]
# Per-module timing: table name -> attribute of a decoder layer (None when the layer lacks it).
DECODER_MODULES = {"self_attention": "self_attn", "cross_attention": "cross_attn", "mlp": "mlp"}


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _native_attention_flop(query_shape, key_shape, value_shape, _embed_dim, num_heads, *args,
                           out_shape=None, **kwargs) -> int:
    """Q, K, V and output projections plus attention, in FLOPs (2 per MAC) like torch's table."""
    batch, query_len, dim = query_shape
    key_len, head_dim = key_shape[1], dim // num_heads
    projections = 2 * batch * (2 * query_len + 2 * key_len) * dim * dim
    heads = [(batch, num_heads, length, head_dim) for length in (query_len, key_len, key_len)]
    return projections + sdpa_flop_count(*heads)


EXTRA_FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._native_multi_head_attention: _native_attention_flop,
}


def as_input_shape(input_size: InputSize) -> tuple[int, int, int]:
    """224 -> (3, 224, 224); (H, W) -> (3, H, W); (C, H, W) stays."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                 for s in size):
        raise ValueError(f"input_size must be a resolution, (H, W) or (C, H, W) of positive ints, "
                         f"got {input_size!r}")
    return size


def _resolution(input_size: InputSize) -> int | list[int]:
    _, height, width = as_input_shape(input_size)
    return height if height == width else [height, width]


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(item, device) for item in value)
    return value


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Inference behaviour (no dropout, no training-only query columns), restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _counted_macs(model: nn.Module, args: tuple, measure: Callable[..., Any]) -> int:
    # Grad mode stays on because torch's module tracker fails on modules that return
    # parameters under no_grad; nothing is kept, the graph dies with the outputs.
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter, \
            torch.enable_grad():
        measure(model, *args)
    return counter.get_total_flops() // 2


def _count_macs(model: nn.Module, prepare: Callable[[nn.Module, torch.device], tuple],
                measure: Callable[..., Any]) -> int:
    """MACs of `measure(model, *prepare(model, device))`; `prepare` itself is not counted."""
    with _eval_mode(model):
        try:
            meta_model = copy.deepcopy(model).to("meta")
            meta = torch.device("meta")
            with torch.no_grad():
                args = prepare(meta_model, meta)
            return _counted_macs(meta_model, args, measure)
        except Exception:  # noqa: BLE001  data-dependent code needs real values
            device = _device_of(model)
            with torch.no_grad():
                args = prepare(model, device)
            return _counted_macs(model, args, measure)


def _call(function: Callable[..., Any], inputs: Any, class_embeddings: Any) -> Any:
    return function(inputs) if class_embeddings is None else function(inputs, class_embeddings)


def count_flops(model: nn.Module, input_size: InputSize, class_embeddings: Any = None) -> float:
    """G multiply-accumulates of the whole model for one image of `input_size`."""
    shape = as_input_shape(input_size)

    def prepare(net: nn.Module, device: torch.device) -> tuple:
        return torch.zeros((1, *shape), device=device), _to(class_embeddings, device)

    return _count_macs(model, prepare, lambda net, images, embeddings:
                       _call(net, images, embeddings)) / 1e9


def count_head_flops(model: nn.Module, input_size: InputSize | None = None, *,
                     features: Features | None = None, class_embeddings: Any = None) -> float:
    """G multiply-accumulates of `model.forward_head` for one image.

    The head's input comes from `model.forward_features` on an image of `input_size`, or is
    given as `features` (one image's features, e.g. for a model trained on cached features).
    """
    if (input_size is None) == (features is None):
        raise ValueError("give exactly one of input_size (images) or features (head input)")
    shape = None if input_size is None else as_input_shape(input_size)

    def prepare(net: nn.Module, device: torch.device) -> tuple:
        head_input = (_to(features, device) if features is not None
                      else net.forward_features(torch.zeros((1, *shape), device=device)))
        return head_input, _to(class_embeddings, device)

    return _count_macs(model, prepare, lambda net, head_input, embeddings:
                       _call(net.forward_head, head_input, embeddings)) / 1e9


def count_params(module: nn.Module, trainable_only: bool = False) -> float:
    """Parameters in millions (all of them, or only those that train)."""
    return sum(p.numel() for p in module.parameters()
               if p.requires_grad or not trainable_only) / 1e6


def model_cost(model: nn.Module, input_size: InputSize, class_embeddings: Any = None
               ) -> dict[str, Any]:
    """A run's cost.json: FLOPs and parameters of the model and of its head."""
    return {"flops_g": count_flops(model, input_size, class_embeddings),
            "params_m": count_params(model),
            "head_flops_g": count_head_flops(model, input_size, class_embeddings=class_embeddings),
            "head_params_m": count_params(model.head),
            "resolution": _resolution(input_size)}


def backbone_cost(model: nn.Module, input_size: InputSize) -> dict[str, float]:
    """FLOPs (G) and parameters (M) of the backbone alone: what a feature cache records, so that a
    head trained on it reports the whole network's cost without building the backbone."""
    whole = model_cost(model, input_size)
    return {"flops_g": whole["flops_g"] - whole["head_flops_g"],
            "params_m": whole["params_m"] - whole["head_params_m"]}


def cost_on_backbone(head_model: nn.Module, features: Features, backbone: Mapping[str, float],
                     input_size: InputSize, class_embeddings: Any = None) -> dict[str, Any]:
    """`model_cost` of the network a head trained on cached features stands for: the backbone's
    recorded cost (`backbone_cost`) plus the head's, counted on one image's `features`."""
    head_flops = count_head_flops(head_model, features=features, class_embeddings=class_embeddings)
    head_params = count_params(head_model.head)
    return {"flops_g": backbone["flops_g"] + head_flops, "params_m": backbone["params_m"] + head_params,
            "head_flops_g": head_flops, "head_params_m": head_params, "resolution": _resolution(input_size)}


# ---- speed ---------------------------------------------------------------------------------

def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda"
                          else torch.bfloat16)


def _check_timing(warmup: int, repeats: int, min_seconds: float = 0.0, rounds: int = 1) -> None:
    if warmup < 0 or repeats < 1 or min_seconds < 0:
        raise ValueError(f"need warmup >= 0, repeats >= 1 and min_seconds >= 0, got {warmup}, {repeats} "
                         f"and {min_seconds}")
    if rounds < 1:
        raise ValueError(f"need rounds >= 1, got {rounds}")


def _round_warmup(warmup: int, index: int) -> int:
    """All the warm-up before the first round; one step before each later one (its own optimizer
    or caches), where a slow model's steps take seconds."""
    return warmup if index == 0 else min(warmup, 1)


def _median_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key median over rounds (nested dicts key by key; None stays None)."""
    first = rounds[0]
    if isinstance(first, Mapping):
        return {key: _median_rounds([r[key] for r in rounds]) for key in first}
    if first is None:
        return None
    return statistics.median(rounds)


def _more_steps(times: list[float], repeats: int, min_seconds: float) -> bool:
    """At least `repeats` timed steps, and more until they add up to `min_seconds`: a few
    millisecond-steps of a small model are at the mercy of one scheduler hiccup."""
    return len(times) < repeats or sum(times) < min_seconds


def _seconds_per_step(step: Callable[[], Any], device: torch.device, warmup: int,
                      repeats: int, min_seconds: float = 0.0) -> float:
    """Median wall time of the timed steps after `warmup` untimed ones (robust to other load)."""
    _check_timing(warmup, repeats, min_seconds)
    for _ in range(warmup):
        step()
    times: list[float] = []
    while _more_steps(times, repeats, min_seconds):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _random_images(input_size: InputSize, batch_size: int, device: torch.device) -> torch.Tensor:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return torch.rand((batch_size, *as_input_shape(input_size)), device=device)


class _TrainStep:
    """One optimisation step as the paper trains: ASL, Adam, mixed precision with loss scaling."""

    def __init__(self, model: nn.Module, device: torch.device, amp: bool) -> None:
        self.model, self.device, self.amp = model, device, amp
        self.loss = AsymmetricLoss()
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                          lr=1e-6)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")

    def __call__(self, images: torch.Tensor) -> None:
        with _autocast(self.device, self.amp):
            logits = self.model(images)
        targets = (torch.rand(logits.shape, device=self.device) < 0.05).float()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(self.loss(logits, targets)).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def inference_throughput(model: nn.Module, input_size: InputSize, batch_size: int, *,
                         device: str | torch.device = "cpu", amp: bool = False, warmup: int = 2,
                         repeats: int = 5, min_seconds: float = 0.0) -> float:
    """Inference images/s at `batch_size` (eval mode, no autograd), over at least `repeats` steps
    and `min_seconds` of timed steps.

    no_grad rather than inference_mode: a head may cache tensors made during a forward pass
    (ML-Decoder's class layout), and inference-mode tensors would break a later training step.
    """
    device = torch.device(device)
    model.to(device)
    images = _random_images(input_size, batch_size, device)

    def step() -> None:
        with torch.no_grad(), _autocast(device, amp):
            model(images)

    with _eval_mode(model):
        return batch_size / _seconds_per_step(step, device, warmup, repeats, min_seconds)


def train_throughput(model: nn.Module, input_size: InputSize, batch_size: int, *,
                     device: str | torch.device = "cpu", amp: bool = False, warmup: int = 2,
                     repeats: int = 5, min_seconds: float = 0.0) -> float:
    """Training images/s at `batch_size` (forward, ASL, backward, Adam step), timed like
    `inference_throughput`.

    It trains `model` for every warm-up and timed step with a tiny learning rate: pass a model
    whose weights do not matter.
    """
    device = torch.device(device)
    model.to(device).train()
    images = _random_images(input_size, batch_size, device)
    train_step = _TrainStep(model, device, amp)
    return batch_size / _seconds_per_step(lambda: train_step(images), device, warmup, repeats, min_seconds)


def _fits(model: nn.Module, input_size: InputSize, batch_size: int, device: torch.device,
          amp: bool) -> bool:
    """Whether one training step at `batch_size` fits in the GPU's memory."""
    try:
        _TrainStep(model, device, amp)(_random_images(input_size, batch_size, device))
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        model.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()


def max_batch_size(model: nn.Module, input_size: InputSize, *, device: str | torch.device = "cuda",
                   amp: bool = True, limit: int = 4096) -> int:
    """The largest training batch that fits in GPU memory (doubling, then bisection).

    Returns `limit` if that still fits. CPU memory is not what limits training on a CPU, so the
    search runs on CUDA only.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"the maximal batch size is searched on CUDA only, not on {device}; "
                         "give the batch size explicitly")
    model.to(device).train()
    fits, fails = 0, 1
    while fails <= limit and _fits(model, input_size, fails, device, amp):
        fits, fails = fails, fails * 2
    if fails > limit:
        return limit if _fits(model, input_size, limit, device, amp) else fits
    if fits == 0:
        raise RuntimeError(f"even a batch of 1 does not fit on {device}")
    while fails - fits > 1:
        middle = (fits + fails) // 2
        fits, fails = (middle, fails) if _fits(model, input_size, middle, device, amp) \
            else (fits, middle)
    return fits


def cap_gpu_memory(device: str | torch.device, cap_gb: float | None) -> float | None:
    """Let this process use at most `cap_gb` of a CUDA device's memory (Table 9's V100 16 GB column
    on a larger GPU); returns the cap applied, None on CPU or without a cap."""
    device = torch.device(device)
    if cap_gb is None or device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * 1e9 / total), device)
    return min(cap_gb, total / 1e9)


def throughput_report(model: nn.Module, input_size: InputSize, *,
                      device: str | torch.device = "cpu", batch_size: int | None = None,
                      batch_fraction: float = 0.8, amp: bool | None = None, warmup: int = 2,
                      repeats: int = 5, min_seconds: float = 0.0, train: bool = True,
                      memory_cap_gb: float | None = None, rounds: int = 1) -> dict[str, Any]:
    """Table 9's measurements: training and inference images/s and the maximal training batch.

    On CUDA the batch defaults to `batch_fraction` (80%) of the maximal batch and amp (fp16, as
    the paper) to on, within `memory_cap_gb` of the GPU's memory when given; on CPU the batch must
    be given and the maximal batch is not measured (null). `train=False` skips the training speed.
    Both speeds are taken `rounds` times, alternating; the top-level values are the rounds' medians.
    """
    _check_timing(warmup, repeats, min_seconds, rounds)
    device = torch.device(device)
    capped = cap_gpu_memory(device, memory_cap_gb)
    amp = device.type == "cuda" if amp is None else amp
    max_batch = max_batch_size(model, input_size, device=device, amp=amp) \
        if device.type == "cuda" else None
    if batch_size is None:
        if max_batch is None:
            raise ValueError(f"give batch_size: on {device} the maximal batch is not searched")
        batch_size = max(1, int(batch_fraction * max_batch))
    speeds = []
    for index in range(rounds):
        timing = {"device": device, "amp": amp, "warmup": _round_warmup(warmup, index), "repeats": repeats,
                  "min_seconds": min_seconds}
        speeds.append({"inference_images_per_s": inference_throughput(model, input_size, batch_size, **timing),
                       "train_images_per_s": train_throughput(model, input_size, batch_size, **timing)
                       if train else None})
    return {"resolution": _resolution(input_size), "device": str(device), "amp": amp,
            "batch_size": batch_size, "max_train_batch": max_batch, "warmup": warmup,
            "repeats": repeats, "min_seconds": min_seconds, **_median_rounds(speeds), "rounds": speeds,
            "memory_cap_gb": capped,
            "amp_dtype": "fp16" if amp and device.type == "cuda" else ("bf16" if amp else None)}


# ---- per-module timing --------------------------------------------------------------------

def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of a model: modules with `cross_attn` and `mlp` attributes."""
    return [module for module in model.modules()
            if hasattr(module, "cross_attn") and hasattr(module, "mlp")]


class _ModuleTimer:
    """Forward hooks that add up, per forward pass, the wall time of the decoder sub-modules."""

    def __init__(self, layers: list[nn.Module], device: torch.device) -> None:
        self.device = device
        self.present = [name for name, attribute in DECODER_MODULES.items()
                        if any(getattr(layer, attribute, None) is not None for layer in layers)]
        self.seconds = dict.fromkeys(self.present, 0.0)
        self._handles = []
        for layer in layers:
            for name in self.present:
                module = getattr(layer, DECODER_MODULES[name])
                if module is not None:
                    self._watch(name, module)

    def _watch(self, name: str, module: nn.Module) -> None:
        started = {}

        def before(*_: Any) -> None:
            _synchronize(self.device)
            started["at"] = time.perf_counter()

        def after(*_: Any) -> None:
            _synchronize(self.device)
            self.seconds[name] += time.perf_counter() - started["at"]

        self._handles += [module.register_forward_pre_hook(before),
                          module.register_forward_hook(after)]

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.present, 0.0)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def time_decoder_modules(model: nn.Module, input_size: InputSize, batch_size: int, *,
                         device: str | torch.device = "cpu", amp: bool = False, warmup: int = 2,
                         repeats: int = 5, min_seconds: float = 0.0, rounds: int = 1) -> dict[str, Any]:
    """Inference time of self-attention, cross-attention and MLP (the per-module table).

    `time_ms` holds each module's median time per forward pass of the batch, summed over the
    decoder layers; a module the layers lack (ML-Decoder's self-attention) is null. Taken
    `rounds` times; the top-level values are the rounds' medians.
    """
    _check_timing(warmup, repeats, min_seconds, rounds)
    device = torch.device(device)
    layers = decoder_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no decoder layers (modules with `cross_attn` "
                         "and `mlp`); per-module timing applies to decoder heads")
    model.to(device)
    images = _random_images(input_size, batch_size, device)
    timer = _ModuleTimer(layers, device)

    def forward() -> None:
        with torch.no_grad(), _autocast(device, amp):
            model(images)

    times = []
    try:
        with _eval_mode(model):
            for index in range(rounds):
                for _ in range(_round_warmup(warmup, index)):
                    forward()
                totals, samples = [], []
                while _more_steps(totals, repeats, min_seconds):
                    timer.reset()
                    totals.append(_seconds_per_step(forward, device, 0, 1))
                    samples.append(timer.seconds)
                times.append({"total_ms": 1e3 * statistics.median(totals),
                              "time_ms": {name: 1e3 * statistics.median(sample[name] for sample in samples)
                                          if name in timer.present else None for name in DECODER_MODULES}})
    finally:
        timer.remove()
    return {"resolution": _resolution(input_size), "device": str(device), "amp": amp,
            "batch_size": batch_size, "warmup": warmup, "repeats": repeats, "min_seconds": min_seconds,
            "layers": len(layers), **_median_rounds(times), "rounds": times}
