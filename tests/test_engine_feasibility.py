"""The memory estimate for every head, out-of-memory runs recorded as infeasible, cost.json freshness,
and zero-shot evaluation from a pass over the unseen classes alone: whole runs on tiny data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mld import metrics
from mld.data.prepared import images_with_positive, open_prepared
from mld.engine import extract_features, train
from mld.engine.checkpoint import load_checkpoint
from mld.engine.config import validate_run_config
from mld.engine.costing import (
    COST_KEY, MEMORY_BATCH_KEY, MEMORY_KEY, MEMORY_PRECISION_KEY, TrainingStep, fitting_accumulation, memory_cost,
    training_memory_gb,
)
from mld.engine.features import FeatureCache
from mld.engine.loop import Trainer
from mld.engine.modeling import HeadOnlyModel, build_model
from mld.engine.precision import Precision
from mld.heads import create_head
from mld.report.results import numbers_in
from mld.report.tables import Observation, infeasible_text
from test_engine_support import TINY_HEAD, make_dataset, one_thread, run_config

ADAM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4}
WORD_DIM = 8
NLP = {"query_type": "nlp", "head_type": "nlp"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Feature caches of a random test_resnet: one map (multilabel, zero-shot) and every stage (HSVLT)."""
    data, root = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("features")
    out = {}
    for name, preset, head in (("multilabel", "coco-like", "gap"), ("zero_shot", "nus-like", "gap"),
                               ("stages", "coco-like", "hsvlt")):
        dataset = make_dataset(data, preset)
        options = {"num_heads": 2, "embed_dim": 16} if head == "hsvlt" else {}
        config = run_config(dataset, task="zero_shot" if name == "zero_shot" else "multilabel",
                            model={"head": head, "head_options": options})
        extract_features(config, root / name)
        out[name] = (dataset, root / name)
    return out


def cached_run(caches, name, *, head="ml_decoder", options=None, **sections):
    dataset, features = caches[name]
    task = "zero_shot" if name == "zero_shot" else "multilabel"
    model = {"head": head, "head_options": dict(TINY_HEAD) if options is None else options, **sections.pop("model", {})}
    train_section = {"epochs": 1, "ema_decay": None, **sections.pop("train", {})}
    return validate_run_config(run_config(dataset, task=task, features=str(features), model=model,
                                          train=train_section, **sections))


# ---- the memory estimate: every head, query type and zero-shot variant, at batch size and precision

HEADS = {
    "gap": ("gap", {}),
    "ml_decoder full": ("ml_decoder", {}),
    "ml_decoder groups learnable queries": ("ml_decoder", {"num_groups": 3, "query_type": "learnable"}),
    "ml_decoder shared head": ("ml_decoder", {"num_groups": 3, "head_type": "shared"}),
    "ml_decoder zero-shot nlp/nlp": ("ml_decoder", NLP),
    "ml_decoder zero-shot groups + augmentations": ("ml_decoder", {**NLP, "num_groups": 3, "random_queries": 2,
                                                                   "query_noise": 0.1}),
    "ml_decoder nlp queries, shared head": ("ml_decoder", {"query_type": "nlp", "head_type": "shared"}),
    "transformer_decoder": ("transformer_decoder", {}),
    "transformer_decoder nlp queries": ("transformer_decoder", {"query_type": "nlp"}),
}


def _estimate(name: str, batch: int, dtype: torch.dtype | None, zero_shot: bool = False) -> float:
    head, options = HEADS[name]
    sized = {} if head == "gap" else dict(TINY_HEAD)
    words = torch.randn(12, WORD_DIM)
    if "nlp" in options.values():
        sized["word_vectors"] = words
    model = HeadOnlyModel(create_head(head, 32, 12, **sized, **options))
    embeddings = words if zero_shot else None
    return training_memory_gb(model, torch.zeros(batch, 32, 4, 4), ADAM, embeddings, Precision(CPU, dtype))


@pytest.mark.parametrize("name", sorted(HEADS))
def test_the_memory_estimate_grows_with_the_batch_and_shrinks_under_autocast(name):
    one, many = _estimate(name, 1, None), _estimate(name, 64, None)
    assert 0 < one < many
    if name != "gap":  # GAP's step is its weights; autocast casts the matmuls of the others
        assert _estimate(name, 64, torch.bfloat16) < many


@pytest.mark.parametrize("name", [name for name in HEADS if "nlp" in HEADS[name][1].values()])
def test_the_memory_estimate_of_a_zero_shot_step_given_its_class_set(name):
    # Word vectors as class_embeddings reached a finiteness check (.item() on meta tensors) before.
    assert _estimate(name, 4, None, zero_shot=True) > 0


@pytest.mark.parametrize("hamburger", [True, False])
def test_the_memory_estimate_of_hsvlt(hamburger):
    # The Hamburger switched autocast off on the estimate's device ("unsupported scalarType" on meta).
    head = create_head("hsvlt", [8, 16, 32, 64], 12, word_vectors=torch.randn(12, WORD_DIM), num_heads=2,
                       hamburger=hamburger)
    stages = [torch.zeros(4, c, 16 >> i, 16 >> i) for i, c in enumerate((8, 16, 32, 64))]
    for dtype in (None, torch.bfloat16):
        assert training_memory_gb(HeadOnlyModel(head), stages, ADAM, None, Precision(CPU, dtype)) > 0


def test_the_memory_estimate_of_a_lamb_step_counts_its_optimiser_state():
    """Table 13's A2 recipe trains with LAMB (timm's): its step runs on the estimate's fake tensors,
    and, like Adam, it keeps two moments per weight."""
    model = HeadOnlyModel(create_head("ml_decoder", 32, 12, num_groups=4, **TINY_HEAD))
    inputs, precision = torch.zeros(4, 32, 4, 4), Precision(CPU, None)
    lamb = training_memory_gb(model, inputs, {**ADAM, "optimizer": "lamb"}, None, precision)
    plain = training_memory_gb(model, inputs, {**ADAM, "optimizer": "adam"}, None, precision)
    weights_gb = sum(p.numel() * 4 for p in model.parameters()) / 1e9
    assert lamb == pytest.approx(plain) and lamb > 4 * weights_gb  # weights, gradients, two moments


def test_the_transformer_decoder_at_many_classes_is_measured_at_its_batch():
    """Table 2's case in small: attention scores grow with batch x classes^2, which batch 1 hides."""
    head = HeadOnlyModel(create_head("transformer_decoder", 32, 600, **TINY_HEAD))
    one = training_memory_gb(head, torch.zeros(1, 32, 2, 2), ADAM, None, Precision(CPU, None))
    batch = training_memory_gb(head, torch.zeros(56, 32, 2, 2), ADAM, None, Precision(CPU, None))
    scores_bytes = 56 * TINY_HEAD["num_heads"] * 600 * 600 * 4
    assert batch * 1e9 > one * 1e9 + scores_bytes


def test_accumulation_is_the_fewest_micro_batches_whose_step_fits(caches):
    """train.accumulation: auto's choice, from the memory estimate: 1 when the whole batch fits,
    else the fewest micro-batches whose step fits, and None when one image does not fit."""
    config = cached_run(caches, "multilabel", options={**TINY_HEAD, "ff_dim": 256},
                        model={"head": "transformer_decoder"}, train={"batch_size": 48})
    from mld.engine.data import open_run_data

    data = open_run_data(config, "test")
    model = build_model(config["model"], data.num_train_classes, None, data.feature_channels)
    step = TrainingStep(48, Precision(CPU, None))
    memory = {batch: memory_cost(config, model, data, TrainingStep(batch, step.precision))[MEMORY_KEY]
              for batch in (1, 12, 16, 48)}
    assert fitting_accumulation(config, model, data, step, memory[48]) == 1
    between = (memory[12] + memory[16]) / 2  # micro-batches of 16 (3 steps) do not fit, of 12 (4 steps) do
    assert fitting_accumulation(config, model, data, step, between) == 4
    assert fitting_accumulation(config, model, data, step, memory[1] / 2) is None


@pytest.mark.parametrize("case", ["zero-shot group decoding", "hsvlt with hamburger"])
def test_runs_with_a_memory_budget_measure_their_batch(caches, tmp_path, case):
    budget = {"feasibility": {"max_memory_gb": 100.0}, "batch_size": 8}
    if case == "hsvlt with hamburger":
        config = cached_run(caches, "stages", head="hsvlt", train=budget,
                            options={"num_heads": 2, "embed_dim": 16, "hamburger": True})
    else:
        config = cached_run(caches, "zero_shot", train=budget,
                            options={**TINY_HEAD, **NLP, "random_queries": 2}, model={"num_groups": 25})
    result = train(config, tmp_path / "run")
    cost = json.loads((tmp_path / "run" / "cost.json").read_text())
    assert "final" in result and not result.get("infeasible")
    assert cost[MEMORY_BATCH_KEY] == 8 and cost[MEMORY_PRECISION_KEY] == "off" and 0 < cost[MEMORY_KEY] < 100


# ---- out of memory while training

def test_a_run_out_of_memory_is_recorded_as_infeasible(caches, tmp_path, monkeypatch):
    from mld.cli import main

    step = Trainer.step

    def out_of_memory_at_step_3(self, inputs, labels, where, **position):
        if where == "epoch 1, step 3":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 83.00 GiB")
        return step(self, inputs, labels, where, **position)

    monkeypatch.setattr(Trainer, "step", out_of_memory_at_step_3)
    config_path, out = tmp_path / "run.yaml", tmp_path / "oom"
    config_path.write_text(json.dumps(cached_run(caches, "multilabel", train={"batch_size": 16})))
    assert main(["train", "--run-config", str(config_path), "--out", str(out)]) == 0  # no retry by the cluster
    written = json.loads((out / "metrics.json").read_text())
    assert written["infeasible"] is True and "final" not in written
    assert written["reason"].startswith("out of memory at batch 16 during training (epoch 1)")
    assert written["cost"][MEMORY_KEY] > 0 and written["cost"][MEMORY_BATCH_KEY] == 16
    assert {p.name for p in out.iterdir()} == {"metrics.json", "cost.json", "train.log"}
    # The tables' view of it: the results frame keeps the reason and every number measured.
    measured = {name: value for name, _, value in numbers_in(written["cost"])}
    shown = Observation("oom", {}, ["seed0"], finished=["seed0"], infeasible=infeasible_text(written["reason"], measured))
    assert shown.status.status == "infeasible" and shown.status.detail.startswith("out of memory at batch 16")
    assert f"{MEMORY_KEY}=" in shown.status.detail
    monkeypatch.setattr(Trainer, "step", step)
    assert main(["train", "--run-config", str(config_path), "--out", str(out)]) == 0  # finished: not trained again
    assert json.loads((out / "metrics.json").read_text()) == written


# ---- cost.json describes the model it was measured for

def test_cost_is_measured_again_when_the_model_changes(caches, tmp_path):
    out = tmp_path / "run"
    wide = cached_run(caches, "multilabel", options={**TINY_HEAD, "decoder_dim": 32})
    train(wide, out)
    wide_cost = json.loads((out / "cost.json").read_text())
    for name in ("metrics.json", "checkpoint.pt", "predictions.npz"):  # retrain, as the workflow would
        (out / name).unlink()
    narrow = cached_run(caches, "multilabel", options={**TINY_HEAD, "decoder_dim": 8})
    train(narrow, out)
    narrow_cost = json.loads((out / "cost.json").read_text())
    head = build_model(narrow["model"], 80, None, FeatureCache.open(narrow["features"]).in_channels).head
    assert narrow_cost["head_params_m"] == pytest.approx(sum(p.numel() for p in head.parameters()) / 1e6)
    assert narrow_cost["head_params_m"] < wide_cost["head_params_m"] and narrow_cost[COST_KEY] != wide_cost[COST_KEY]


def test_cost_is_reused_for_the_same_model(caches, tmp_path):
    out = tmp_path / "run"
    config = cached_run(caches, "multilabel")
    train(config, out)
    recorded = json.loads((out / "cost.json").read_text())
    (out / "cost.json").write_text(json.dumps({**recorded, "flops_g": 123.0}))  # a marker, same key
    (out / "metrics.json").unlink()
    train(config, out)
    assert json.loads((out / "cost.json").read_text())["flops_g"] == 123.0


# ---- zero-shot evaluation as the official code

def _val_features(caches) -> torch.Tensor:
    return torch.from_numpy(np.load(caches["zero_shot"][1] / "val.npy")).float()


def test_zsl_is_scored_from_the_unseen_classes_alone_and_seen_classes_keep_their_groups(caches, tmp_path):
    config = cached_run(caches, "zero_shot", seed=3, options={**TINY_HEAD, **NLP}, model={"num_groups": 25})
    result = train(config, tmp_path / "zsl")
    meta = open_prepared(caches["zero_shot"][0])
    seen, unseen = list(meta.seen_classes), list(meta.unseen_classes)
    words = torch.from_numpy(np.asarray(meta.word_vectors())).float()
    model = build_model(config["model"], len(seen), words[seen], FeatureCache.open(config["features"]).in_channels,
                        seed=3)
    model.load_state_dict(load_checkpoint(tmp_path / "zsl" / "checkpoint.pt")["model"])
    model.eval()
    features, labels = _val_features(caches), torch.from_numpy(np.array(meta.labels("val")))
    with torch.no_grad():
        alone = model(features, class_embeddings=words[unseen]).sigmoid()
        trained_layout = model(features).sigmoid()  # the seen classes as in training
        mixed = model(features, class_embeddings=words).sigmoid()  # all classes in dataset order
    scored = images_with_positive(labels[:, unseen])  # ZSL scores the images with an unseen positive
    assert 0 < scored.sum() < len(scored)
    zsl = metrics.class_subset_metrics(alone[scored], labels[scored][:, unseen], list(range(len(unseen))))
    assert result["final"]["zsl"] == pytest.approx(zsl, abs=1e-6)
    predictions = np.load(tmp_path / "zsl" / "predictions.npz")
    torch.testing.assert_close(torch.from_numpy(predictions["zsl_scores"]), alone)  # ZSL recomputes from the file
    assert (predictions["zsl_targets"] == predictions["targets"][:, unseen]).all()
    scores = torch.from_numpy(predictions["scores"])
    torch.testing.assert_close(scores[:, seen], trained_layout)
    torch.testing.assert_close(scores[:, unseen], alone)  # GZSL puts the unseen classes in groups of their own
    # One pass over all classes in dataset order re-groups them: what the engine no longer scores.
    assert not torch.allclose(mixed[:, unseen], alone, atol=1e-4)


def test_the_group_assignment_follows_the_run_seed(caches):
    config = cached_run(caches, "multilabel", model={"num_groups": 20})
    channels = FeatureCache.open(config["features"]).in_channels
    slots = [build_model(config["model"], 80, None, channels, seed=seed).head.class_slots for seed in (0, 1)]
    assert not torch.equal(slots[0], slots[1])
    again = build_model(config["model"], 80, None, channels, seed=1).head.class_slots
    assert torch.equal(again, slots[1])


def test_the_memory_estimate_of_an_end_to_end_model_leaves_it_untouched():
    import mld

    model = mld.create_model("test_resnet", "ml_decoder", 20, head_options=dict(TINY_HEAD))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    images = torch.zeros(32, 3, 96, 96)
    full, half = (training_memory_gb(model, images, ADAM, None, Precision(CPU, dtype)) for dtype in (None, torch.bfloat16))
    assert 0 < half < full
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_a_failing_memory_estimate_says_what_to_do(caches, tmp_path, monkeypatch):
    import mld.engine.costing as costing

    def unsupported(*args, **kwargs):
        raise NotImplementedError("aten::some_op has no fake implementation")

    monkeypatch.setattr(costing, "training_memory_gb", unsupported)
    config = cached_run(caches, "multilabel", train={"feasibility": {"max_memory_gb": 10.0}})
    with pytest.raises(RuntimeError, match=r"memory estimate of train.feasibility.max_memory_gb failed for "
                                           r"model.head = ml_decoder on cpu .*max_memory_gb: null"):
        train(config, tmp_path / "run")
