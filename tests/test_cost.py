"""mld.cost and `mld measure`: MAC counts, attention included, the paper's cheap FLOPs cells,
throughput and per-module timing on tiny models."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import mld
from mld import cost
from mld.report import paper
from mld.cli import main

TINY_DECODER = {"decoder_dim": 32, "num_heads": 2, "ff_dim": 64}


def tiny_model(head: str = "ml_decoder", num_classes: int = 6, **options) -> nn.Module:
    options = {**TINY_DECODER, **options} if head != "gap" else options
    return mld.create_model("test_resnet", head, num_classes, **options)


class Attention(nn.Module):
    """F.scaled_dot_product_attention over [1, heads, tokens, head_dim]; optionally data-dependent,
    which the meta device cannot run (the count then falls back to real tensors)."""

    def __init__(self, data_dependent: bool = False) -> None:
        super().__init__()
        self.data_dependent = data_dependent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.view(1, 4, 10, 8)
        if self.data_dependent and bool(q.sum() > -1e9):
            q = q + 0
        return F.scaled_dot_product_attention(q, q, q)


@pytest.mark.parametrize("data_dependent", [False, True])
def test_scaled_dot_product_attention_is_counted(data_dependent):
    macs = cost.count_flops(Attention(data_dependent), (4, 10, 8)) * 1e9
    assert macs == pytest.approx(2 * 4 * 10 * 10 * 8)  # Q K^T and A V: heads x L x S x E each


@pytest.mark.parametrize("data_dependent", [False, True])
def test_fused_multihead_attention_is_counted(data_dependent):
    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Frozen and batch-first in eval mode: nn.MultiheadAttention's fused fast path.
            self.attention = nn.MultiheadAttention(16, 4, batch_first=True).requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = x.view(1, 12, 16)
            if data_dependent and bool(tokens.sum() > -1e9):
                tokens = tokens + 0
            return self.attention(tokens, tokens, tokens, need_weights=False)[0]

    macs = cost.count_flops(SelfAttention(), (1, 12, 16)) * 1e9
    assert macs == pytest.approx(4 * 12 * 16 * 16 + 2 * 12 * 12 * 16)


def test_convolution_and_linear_macs_and_params():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    expected = 16 * 16 * 8 * 3 * 9 + 8 * 16 * 16 * 10
    assert cost.count_flops(model, 16) * 1e9 == pytest.approx(expected)
    assert cost.count_params(model) * 1e6 == 8 * 3 * 9 + 8 + 8 * 16 * 16 * 10 + 10
    model[0].requires_grad_(False)
    assert cost.count_params(model, trainable_only=True) * 1e6 == 8 * 16 * 16 * 10 + 10


def test_model_cost_splits_model_and_head_and_leaves_the_model_untouched():
    model = tiny_model("transformer_decoder").train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = cost.model_cost(model, 32)
    assert set(result) == {"flops_g", "params_m", "head_flops_g", "head_params_m", "resolution"}
    backbone = cost.count_flops(model.backbone, 32)
    assert result["flops_g"] == pytest.approx(backbone + result["head_flops_g"])
    assert result["head_params_m"] == pytest.approx(cost.count_params(model.head))
    assert result["resolution"] == 32
    assert model.training
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name])


def test_head_flops_from_given_features_match_those_from_images():
    model = tiny_model().eval()
    features = model.forward_features(torch.zeros(1, 3, 32, 32))
    assert cost.count_head_flops(model, features=features) == \
        pytest.approx(cost.count_head_flops(model, 32))
    with pytest.raises(ValueError, match="exactly one"):
        cost.count_head_flops(model)


def test_decoder_flops_grow_as_the_paper_says():
    """Self-attention is quadratic in the queries; ML-Decoder's groups make it flat."""
    def head_macs(head: str, classes: int, **options) -> float:
        return cost.count_head_flops(tiny_model(head, classes, **options), 32)

    growth = head_macs("transformer_decoder", 400) - 2 * head_macs("transformer_decoder", 200)
    assert growth > 0  # more than linear
    flat = head_macs("ml_decoder", 400, num_groups=10) - head_macs("ml_decoder", 200, num_groups=10)
    assert flat == pytest.approx(200 * TINY_DECODER["decoder_dim"] / 1e9)  # group FC only


@pytest.mark.parametrize("head, classes, options", [
    ("gap", 100, {}),
    ("ml_decoder", 1000, {"num_groups": 100}),
])
def test_paper_flops_cells_within_3_percent(head, classes, options):
    rows = paper.paper_table("table9_throughput")
    row = rows[(rows["head"] == head) & (rows["classes"] == classes)].iloc[0]
    with torch.device("meta"):  # shapes are all a count needs: skip initialising the weights
        model = mld.create_model(row["backbone"], head, classes, **options)
    assert cost.count_flops(model, int(row["resolution"])) == pytest.approx(row["flops_g"],
                                                                            rel=0.03)


@pytest.mark.parametrize("size, shape", [(32, (3, 32, 32)), ((24, 40), (3, 24, 40)),
                                         ((1, 8, 8), (1, 8, 8))])
def test_input_sizes(size, shape):
    assert cost.as_input_shape(size) == shape


@pytest.mark.parametrize("size", [0, (3, 4, 5, 6), (32.0, 32), True])
def test_bad_input_sizes(size):
    with pytest.raises(ValueError, match="input_size"):
        cost.as_input_shape(size)


def test_throughput_report_on_cpu():
    model = tiny_model("ml_decoder")  # caches its class layout: inference, then training
    with pytest.raises(ValueError, match="give batch_size"):
        cost.throughput_report(model, 32)
    result = cost.throughput_report(model, 32, batch_size=2, warmup=0, repeats=1)
    assert result["max_train_batch"] is None and result["batch_size"] == 2
    assert result["inference_images_per_s"] > 0 and result["train_images_per_s"] > 0
    with pytest.raises(ValueError, match="CUDA only"):
        cost.max_batch_size(model, 32, device="cpu")


class FakeClock:
    """Stands in for mld.cost's `time`: a clock that only the model below moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class CountingModel(nn.Module):
    """Each forward takes 1/16 s on the fake clock and is counted: how many steps a timing took."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.clock = clock
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.clock.now += 0.0625  # exact in binary: the sums below are exact too
        return images.mean(dim=(1, 2, 3)) * self.scale


def test_timings_run_until_repeats_and_min_seconds_are_both_reached(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(cost, "time", clock)
    model = CountingModel(clock)
    assert cost.inference_throughput(model, 8, 1, warmup=1, repeats=3) == 16.0  # 1 image per 1/16 s
    assert model.calls == 1 + 3
    model.calls = 0
    cost.inference_throughput(model, 8, 1, warmup=0, repeats=1, min_seconds=0.25)
    assert model.calls == 4  # steps of 1/16 s until 0.25 s is timed: more than the one repeat
    model.calls = 0
    cost.inference_throughput(model, 8, 1, warmup=2, repeats=6, min_seconds=0.25)
    assert model.calls == 2 + 6  # the repeats already add up to more than min_seconds
    with pytest.raises(ValueError, match="min_seconds >= 0, got 2, 5 and -1"):
        cost.inference_throughput(model, 8, 1, min_seconds=-1)


def test_module_timing_finds_the_decoder_modules():
    with_self = cost.time_decoder_modules(tiny_model("transformer_decoder"), 32, 2, warmup=0,
                                          repeats=2)
    assert with_self["layers"] == 1
    assert all(with_self["time_ms"][name] > 0 for name in cost.DECODER_MODULES)
    assert all(with_self["time_ms"][name] <= with_self["total_ms"] for name in cost.DECODER_MODULES)
    stacked = cost.time_decoder_modules(tiny_model("ml_decoder", num_layers=2), 32, 1, warmup=0,
                                        repeats=1)
    assert stacked["layers"] == 2 and stacked["time_ms"]["self_attention"] is None
    with pytest.raises(ValueError, match="no decoder layers"):
        cost.time_decoder_modules(tiny_model("gap"), 32, 1)


def write_config(tmp_path, dataset=None) -> str:
    config = {"run_id": "tiny/ml_decoder", "train": {"resolution": 32},
              "model": {"backbone": "test_resnet", "head": "ml_decoder", "num_groups": 2,
                        "head_options": TINY_DECODER, "backbone_weights": "absent.pt"}}
    if dataset is not None:
        config["dataset"] = {"path": str(dataset)}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def test_profile_flops_from_a_run_config(tmp_path):
    out = tmp_path / "cost" / "flops.json"
    assert main(["measure", "flops", "--run-config", write_config(tmp_path), "--num-classes", "6",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "flops" and result["run_id"] == "tiny/ml_decoder"
    assert result["resolution"] == 32 and result["num_classes"] == 6
    expected = cost.count_flops(tiny_model(num_groups=2), 32)
    assert result["flops_g"] == pytest.approx(expected)


def test_profile_reads_the_class_count_from_the_dataset(tmp_path):
    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "meta.json").write_text(json.dumps({"num_classes": 9}))
    out = tmp_path / "modules.json"
    assert main(["measure", "module_timing", "--run-config", write_config(tmp_path, dataset),
                 "--warmup", "0", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_classes"] == 9 and result["time_ms"]["self_attention"] is None


def test_profile_throughput_from_flags(tmp_path):
    out = tmp_path / "throughput.json"
    assert main(["measure", "throughput", "--backbone", "test_resnet", "--head", "gap",
                 "--num-classes", "4", "--resolution", "32", "--device", "cpu",
                 "--batch-size", "2", "--warmup", "0", "--repeats", "1", "--no-train",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "throughput" and result["train_images_per_s"] is None
    assert result["inference_images_per_s"] > 0
    assert result["flops_g"] == pytest.approx(cost.count_flops(tiny_model("gap", num_classes=4), 32))
    assert result["versions"]["torch"] == torch.__version__  # timings travel with their software


@pytest.mark.parametrize("arguments, message", [
    (["--head", "gap", "--num-classes", "4"], "--backbone and --head"),
    (["--backbone", "test_resnet", "--head", "gap"], "--num-classes"),
    (["--backbone", "test_resnet", "--head", "gap", "--num-classes", "4",
      "--head-option", "oops"], "KEY=VALUE"),
])
def test_profile_errors_are_readable(tmp_path, capsys, arguments, message):
    assert main(["measure", "flops", *arguments, "--out", str(tmp_path / "x.json")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_import_mld_reaches_cost_and_metrics_as_attributes():
    """The README's `import mld; mld.cost.count_flops(...)`, from a fresh interpreter."""
    import subprocess
    import sys

    script = ("import sys, mld\n"
              "assert 'mld.cost' not in sys.modules and 'torch' not in sys.modules\n"
              "model = mld.create_model('test_resnet', 'gap', 5)\n"
              "print(mld.cost.count_flops(model, 32) > 0, mld.metrics.mean_average_precision([[0.9], [0.1]], [[1], [0]]))\n"
              "print(sorted({'cost', 'metrics', 'losses'} & set(dir(mld))))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["True 100.0", "['cost', 'losses', 'metrics']"]
    import mld

    for name in mld._SUBMODULES:  # every attribute it lists is a module of the package
        assert getattr(mld, name).__name__ == f"mld.{name}"


def test_a_memory_cap_limits_the_process_to_the_papers_gpu(monkeypatch):
    """--memory-cap-gb 16 on an 80 GB GPU lets the process use a fifth of it (the paper's V100 16 GB
    column of Table 9); on a smaller GPU the whole; on the CPU nothing is capped."""
    fractions = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 80e9}))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device: fractions.append((fraction, str(device))))
    assert cost.cap_gpu_memory("cuda:0", 16) == 16
    assert fractions == [(0.2, "cuda:0")]
    assert cost.cap_gpu_memory("cuda:0", 100) == 80 and fractions[-1] == (1.0, "cuda:0")
    assert cost.cap_gpu_memory("cuda:0", None) is None and len(fractions) == 2
    assert cost.cap_gpu_memory("cpu", 16) is None and len(fractions) == 2
    result = cost.throughput_report(tiny_model("gap"), 32, batch_size=2, warmup=0, repeats=1, memory_cap_gb=16)
    assert result["memory_cap_gb"] is None and result["amp_dtype"] is None


class SlowingModel(CountingModel):
    """Each forward takes 1/16 s more than the one before: every timing round is slower than the last."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.clock.now += 0.0625 * self.calls
        return super().forward(images)


def test_a_timing_in_rounds_reports_each_round_and_their_median(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(cost, "time", clock)
    model = SlowingModel(clock)
    result = cost.throughput_report(model, 8, batch_size=1, warmup=2, repeats=1, train=False, rounds=3)
    # Calls: 2 warm-up + 1 timed (round 0), then 1 warm-up + 1 timed per later round. The timed step
    # of call c (0-based) takes (c + 1) / 16 s: calls 2, 4 and 6 -> 16/3, 16/5 and 16/7 images/s.
    assert model.calls == 7
    assert [r["inference_images_per_s"] for r in result["rounds"]] == [16 / 3, 16 / 5, 16 / 7]
    assert result["inference_images_per_s"] == 16 / 5 and result["train_images_per_s"] is None
    with pytest.raises(ValueError, match="need rounds >= 1, got 0"):
        cost.throughput_report(model, 8, batch_size=1, rounds=0)


def test_module_timing_in_rounds_reports_each_round():
    result = cost.time_decoder_modules(tiny_model("transformer_decoder"), 32, 1, warmup=0, repeats=1, rounds=2)
    assert len(result["rounds"]) == 2
    assert set(result["rounds"][0]["time_ms"]) == set(cost.DECODER_MODULES)
    for name in cost.DECODER_MODULES:
        per_round = [r["time_ms"][name] for r in result["rounds"]]
        assert result["time_ms"][name] == pytest.approx(sum(per_round) / 2)  # the median of two
