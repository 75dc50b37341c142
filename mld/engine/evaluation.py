"""Scoring the evaluation split, the task's metrics, and the choice between the model and its EMA.

Zero-shot runs are scored as the paper's official code scores them: ZSL from the unseen classes
alone (only their word vectors as queries), GZSL from all classes, where the seen classes come
first in their training order (so that group decoding keeps their training groups; see
mld.heads.ml_decoder) and the unseen ones after them. Both class sets are scored from one
backbone pass per batch.

The model and its EMA are scored in one pass over the split, as the official train.py does: each
batch is loaded once and scored by both (two forwards, one decode).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from mld import metrics
from mld.data.loading import make_loader
from mld.engine.data import RunData
from mld.engine.distributed import World
from mld.engine.loop import predict
from mld.engine.precision import Precision
from mld.engine.progress import RunLog, track
from mld.data.sampling import EvalBatchSampler


# Evaluator.scores: per candidate (scores of every class, (zero-shot) the unseen pass's), the labels.
ScoredSplit = tuple[dict[str, tuple[torch.Tensor, torch.Tensor | None]], torch.Tensor]
# Evaluator.full: metrics and scores per candidate, the labels, (zero-shot) the unseen pass per candidate.
FullEvaluation = tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor], torch.Tensor,
                       dict[str, tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class TaskMetrics:
    """What a task reports; `selection` is the metric that picks the model or its EMA.

    multilabel: mAP and the threshold metrics (CP, CR, CF1, OP, OR, OF1) over all classes.
    zero_shot: ZSL (unseen classes) and GZSL (all classes) mAP, F1@3, F1@5, plus the mAP of the
        seen classes ("mAP_seen"); "mAP" is the ZSL mAP, the headline of the zero-shot tables.
    single_label: top-1 accuracy (which selects) and mAP over one-hot targets.
    """

    task: str
    seen: Sequence[int] = ()
    unseen: Sequence[int] = ()

    @property
    def selection(self) -> str:
        return "top1" if self.task == "single_label" else "mAP"

    def compute(self, scores: torch.Tensor, labels: torch.Tensor,
                unseen_scores: torch.Tensor | None = None) -> dict[str, Any]:
        """Metrics of `scores` [images, classes]; zero-shot ZSL from `unseen_scores` (the unseen pass)."""
        if self.task == "multilabel":
            return {"mAP": metrics.mean_average_precision(scores, labels),
                    **metrics.threshold_metrics(scores, labels)}
        if self.task == "single_label":
            return {"top1": metrics.top1_accuracy(scores, labels),
                    "mAP": metrics.mean_average_precision(scores, labels)}
        zero_shot = metrics.zero_shot_evaluation(scores, labels, self.unseen, self.seen,
                                                 unseen_scores=unseen_scores)
        seen = metrics.class_subset_metrics(scores, labels, self.seen, top_k=())
        return {"mAP": zero_shot["zsl"]["mAP"], "mAP_seen": seen["mAP"], **zero_shot}

    def quick(self, scores: torch.Tensor, labels: torch.Tensor,
              unseen_scores: torch.Tensor | None = None) -> float:
        """Only the selection metric (per-epoch history)."""
        if self.task == "single_label":
            return metrics.top1_accuracy(scores, labels)
        if self.task == "zero_shot":
            return self.compute(scores, labels, unseen_scores)["mAP"]
        return metrics.mean_average_precision(scores, labels)


class ClassSetPasses(nn.Module):
    """A model scoring several class sets (word vectors) of each batch from one backbone pass.

    Returns the logits of every set side by side, [B, sum of the sets' sizes]; evaluation only.
    """

    def __init__(self, model: nn.Module, class_sets: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.model, self.class_sets = model, list(class_sets)

    def forward(self, inputs: Any, class_embeddings: Any = None) -> torch.Tensor:
        features = self.model.forward_features(inputs)
        return torch.cat([self.model.forward_head(features, class_set) for class_set in self.class_sets], dim=1)


@dataclass(frozen=True)
class ZeroShotPasses:
    """The two class sets of a zero-shot evaluation and how their columns map to the dataset's classes."""

    seen: list[int]
    unseen: list[int]

    def class_sets(self, word_vectors: torch.Tensor) -> list[torch.Tensor]:
        """[the unseen classes alone, the seen then the unseen classes] of all classes' `word_vectors`."""
        return [word_vectors[self.unseen], word_vectors[self.seen + self.unseen]]

    def split(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ClassSetPasses scores -> (every class in dataset order, the unseen pass)."""
        unseen_pass, all_pass = scores[:, :len(self.unseen)], scores[:, len(self.unseen):]
        in_order = torch.empty_like(all_pass)
        in_order[:, self.seen + self.unseen] = all_pass
        return in_order, unseen_pass


def select(candidates: Mapping[str, Mapping[str, Any]], selection: str) -> str:
    """The candidate ("model" or "ema") with the best selection metric; the model wins ties."""
    return max(candidates, key=lambda name: (candidates[name][selection], name == "model"))


def final_section(candidates: Mapping[str, Mapping[str, Any]], selection: str) -> dict[str, Any]:
    """metrics.json "final": the selected candidate's metrics, each candidate's mAP, what was chosen."""
    chosen = select(candidates, selection)
    final = dict(candidates[chosen])
    final.update({f"mAP_{name}": values["mAP"] for name, values in candidates.items()})
    final.update({"selected": chosen, "selected_by": selection,
                  "candidates": {name: dict(values) for name, values in candidates.items()}})
    return final


def best_epoch_section(history: Sequence[Mapping[str, Any]], selection: str,
                       candidates: Sequence[str]) -> dict[str, Any] | None:
    """metrics.json "best_epoch": the official train.py's selection, the highest over the evaluated
    epochs of the better of the candidates (the earliest epoch wins ties, the model within one).

    Only epochs that were evaluated count (every `train.eval_every`-th and the last one); None when
    no epoch of `history` holds the candidates' selection metric."""
    best: dict[str, Any] | None = None
    for entry in history:
        scored = {name: {selection: entry[f"{selection}_{name}"]} for name in candidates
                  if f"{selection}_{name}" in entry}
        if len(scored) < len(candidates):
            continue
        chosen = select(scored, selection)
        if best is None or scored[chosen][selection] > best[selection]:
            best = {"epoch": entry["epoch"], selection: scored[chosen][selection],
                    **{f"{selection}_{name}": values[selection] for name, values in scored.items()},
                    "selected": chosen, "selected_by": selection}
    return best


def evaluation_batch_size(training_batch_size: int) -> int:
    """A process's evaluation batch: twice its training batch (no gradients to keep). `mld evaluate`
    uses the same, so that it scores a checkpoint with the kernels the run's evaluation used."""
    return 2 * training_batch_size


class Evaluator:
    """Scores the evaluation split with any set of weights, sharded over processes."""

    def __init__(self, data: RunData, task: str, batch_size: int, num_workers: int, world: World,
                 precision: Precision, log: RunLog, log_every_s: float,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.data, self.world, self.precision, self.log = data, world, precision, log
        self.batch_size, self.log_every_s, self.should_stop = batch_size, log_every_s, should_stop
        sampler = EvalBatchSampler(len(data.eval_set), batch_size, world.rank, world.world_size)
        self.loader = make_loader(data.eval_set, sampler, data.collate, num_workers, world.device)
        self.metrics = TaskMetrics(task, data.meta.seen_classes or (), data.meta.unseen_classes or ())
        self.zero_shot = ZeroShotPasses(list(self.metrics.seen), list(self.metrics.unseen)) if task == "zero_shot" else None
        embeddings = data.eval_class_embeddings
        self.class_embeddings = None if embeddings is None else embeddings.to(world.device)

    def _activation(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1) if self.data.labels.softmax else logits.sigmoid()

    def scores(self, models: Mapping[str, nn.Module]) -> ScoredSplit | None:
        """Each model's scores of every class and (zero-shot) of the unseen pass, and the labels, of
        the whole split (every process gets all), from one pass over it; None if stopped."""
        batches = track(self.loader, len(self.loader), "evaluation", self.log, self.log_every_s)
        class_embeddings = self.class_embeddings
        if self.zero_shot is not None:
            class_sets = self.zero_shot.class_sets(self.class_embeddings)
            models = {name: ClassSetPasses(model, class_sets) for name, model in models.items()}
            class_embeddings = None
        result = predict(models, batches, class_embeddings, self.precision, self._activation, self.should_stop)
        if result is None:
            return None
        total = len(self.data.eval_set)
        per_model = {name: self.world.gather_shards(scores, total) for name, scores in result[0].items()}
        labels = self.world.gather_shards(result[1], total)
        if self.zero_shot is None:
            return {name: (scores, None) for name, scores in per_model.items()}, labels
        return {name: self.zero_shot.split(scores) for name, scores in per_model.items()}, labels

    def quick(self, candidates: Mapping[str, nn.Module]) -> dict[str, float] | None:
        """The selection metric of each candidate, keyed "<metric>_<candidate>"; None if stopped."""
        scored = self.scores(candidates)
        if scored is None:
            return None
        per_model, labels = scored
        return {f"{self.metrics.selection}_{name}": self.metrics.quick(scores, labels, unseen_scores)
                for name, (scores, unseen_scores) in per_model.items()}

    def full(self, candidates: Mapping[str, nn.Module]) -> FullEvaluation | None:
        """Every metric and the scores of each candidate, the labels, and (zero-shot) each candidate's
        unseen pass with its labels, as predictions.npz keeps them; None if stopped."""
        scored = self.scores(candidates)
        if scored is None:
            return None
        per_model, labels = scored
        results = {name: self.metrics.compute(scores, labels, unseen_scores)
                   for name, (scores, unseen_scores) in per_model.items()}
        scores = {name: scores for name, (scores, _) in per_model.items()}
        unseen = {name: (unseen_scores, labels[:, self.zero_shot.unseen])
                  for name, (_, unseen_scores) in per_model.items() if unseen_scores is not None}
        return results, scores, labels, unseen
