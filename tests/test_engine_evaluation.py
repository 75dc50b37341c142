"""Evaluation: the model and its EMA scored from one pass over the validation split."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset

from mld.engine.data import open_run_data
from mld.engine.distributed import World
from mld.engine.evaluation import Evaluator, best_epoch_section
from mld.engine.modeling import build_model
from mld.engine.precision import choose_precision
from mld.engine.progress import RunLog
from mld.engine.run import as_run_config
from test_engine_support import TINY_HEAD, make_dataset, one_thread, run_config  # noqa: F401 (fixture)

ZERO_SHOT_HEAD = {**TINY_HEAD, "query_type": "nlp", "head_type": "nlp"}


class CountedLoads(Dataset):
    """A dataset that counts how often each sample is loaded."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.loads = dataset, Counter()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        self.loads[key[0]] += 1
        return self.dataset[key]


@pytest.fixture(scope="module", ids=["multilabel", "zero_shot"],
                params=[("coco-like", "multilabel", TINY_HEAD), ("nus-like", "zero_shot", ZERO_SHOT_HEAD)])
def setup(request, tmp_path_factory):
    """An evaluator over a counted validation split, and two differently initialised models."""
    preset, task, head = request.param
    dataset = make_dataset(tmp_path_factory.mktemp("data"), preset, num_train=16, num_val=20)
    config, source = as_run_config(run_config(dataset, task=task, model={"head_options": head}))
    data = open_run_data(config, source)
    data.eval_set = counted = CountedLoads(data.eval_set)
    models = {}
    for seed, name in enumerate(("model", "ema")):
        torch.manual_seed(seed)
        models[name] = build_model(config["model"], data.num_train_classes, data.train_word_vectors, seed=0)
    world = World(0, 1, torch.device("cpu"))
    evaluator = Evaluator(data, task, 8, 0, world, choose_precision("off", world.device), RunLog(None, enabled=False),
                          1000.0)
    return evaluator, counted, models


def test_model_and_ema_are_scored_from_one_load_of_each_image(setup):
    evaluator, counted, models = setup
    counted.loads.clear()
    results, scores, labels, unseen = evaluator.full(models)
    assert sorted(counted.loads) == list(range(20)) and set(counted.loads.values()) == {1}
    counted.loads.clear()
    quick = evaluator.quick(models)
    assert sorted(counted.loads) == list(range(20)) and set(counted.loads.values()) == {1}
    assert not torch.equal(scores["model"], scores["ema"])  # two different models were scored
    # Exactly the values of one pass per model (how runs were scored before).
    for name, model in models.items():
        alone_results, alone_scores, alone_labels, alone_unseen = evaluator.full({name: model})
        assert results[name] == alone_results[name]
        assert torch.equal(scores[name], alone_scores[name]) and torch.equal(labels, alone_labels)
        assert (name in unseen) == (name in alone_unseen) == (evaluator.zero_shot is not None)
        for together, alone in zip(unseen.get(name, ()), alone_unseen.get(name, ())):
            assert torch.equal(together, alone)
        selection = evaluator.metrics.selection
        assert quick[f"{selection}_{name}"] == evaluator.quick({name: model})[f"{selection}_{name}"]
        assert quick[f"{selection}_{name}"] == results[name][selection]


# ---- the official protocol's selection: the best evaluated epoch

def test_the_best_epoch_is_the_highest_evaluated_epoch_of_the_better_candidate():
    history = [{"epoch": 1, "mAP_model": 50.0, "mAP_ema": 49.0}, {"epoch": 2, "train_loss": 0.5},
               {"epoch": 3, "mAP_model": 60.0, "mAP_ema": 61.0}, {"epoch": 4, "mAP_model": 61.0, "mAP_ema": 55.0},
               {"epoch": 5, "mAP_model": 58.0, "mAP_ema": 59.0}]
    assert best_epoch_section(history, "mAP", ["model", "ema"]) == {
        "epoch": 3, "mAP": 61.0, "mAP_model": 60.0, "mAP_ema": 61.0, "selected": "ema", "selected_by": "mAP"}
    tied = [{"epoch": 1, "top1_model": 70.0, "top1_ema": 70.0}]
    assert best_epoch_section(tied, "top1", ["model", "ema"])["selected"] == "model"
    assert best_epoch_section(history, "mAP", ["model"])["epoch"] == 4
    assert best_epoch_section(history[1:2], "mAP", ["model"]) is None
