"""One run from one config: train (or resume), evaluate the model and its EMA, write the outputs.

`train(config, out_dir)` is idempotent: a finished run returns its metrics, an unfinished one
resumes from `last.pt` (saved at the end of every epoch and when SIGTERM / SIGUSR1 arrive), and a
fresh one starts. Run under torchrun it trains with DistributedDataParallel; only the first
process writes files.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mld.engine import outputs
from mld.engine.checkpoint import (
    CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint,
)
from mld.engine.config import (
    ACCUMULATION_AUTO, check_components, load_run_config, mixing_enabled, result_defining, validate_run_config,
    with_defaults, with_execution,
)
from mld.engine.costing import (
    COST_KEY, MEMORY_KEY, TrainingStep, check_feasibility, cost_key, fitting_accumulation, measure_cost,
    memory_cost,
)
from mld.engine.cuda_settings import configure_cuda, use_channels_last
from mld.data.loading import make_loader, workers_stopped
from mld.engine.data import RunData, open_run_data
from mld.engine.distributed import World, synchronise_batchnorm
from mld.engine.ema import ModelEma
from mld.engine.evaluation import (
    Evaluator, FullEvaluation, best_epoch_section, evaluation_batch_size, final_section,
)
from mld.engine.loop import Trainer
from mld.engine.mixing import BatchMixing
from mld.engine.modeling import build_model
from mld.engine.optim import build_optimizer, build_schedule
from mld.engine.precision import Precision, choose_precision
from mld.engine.progress import RunLog, track
from mld.data.sampling import TrainBatchSampler
from mld.signals import RunInterrupted, StopRequest
from mld.heads import extend_targets
from mld.losses import create_loss

RESUME_FORMAT = "mld-resume/1"
CHECKPOINT_FORMAT = "mld-checkpoint/1"


def as_run_config(config: Mapping[str, Any] | str | Path,
                  execution: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """A validated config and the name of its source, from a YAML path or a mapping, with the
    job's execution settings (mld.engine.config.EXECUTION_KEYS, dotted) in place."""
    if isinstance(config, (str, Path)):
        validated, source = load_run_config(config, execution), str(config)
    else:
        validated, source = validate_run_config(with_execution(config, execution or {})), "<run config>"
    check_components(validated, source)
    return validated, source


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@dataclass
class Progress:
    """Where a run stands; saved in last.pt with everything needed to continue exactly."""

    epoch: int = 0  # epochs fully done (trained and, if scheduled, evaluated)
    step: int = 0  # steps done in the current epoch
    loss_sum: float = 0.0  # this process's summed step losses of the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    epoch_times: dict[str, float] = field(default_factory=dict)  # the current epoch's data_s, compute_s, time_s so far
    accumulation: int = 0  # micro-batches per step, chosen when the run starts (0: not yet)


def train(config: Mapping[str, Any] | str | Path, out_dir: str | Path,
          log_stream: IO[str] | None = None, execution: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run a config to completion in `out_dir` (resuming if it was interrupted); return metrics.json.

    Raises RunInterrupted after saving the resume point when a stop signal arrives.
    """
    config, source = as_run_config(config, execution)
    out_dir = Path(out_dir)
    finished = finished_metrics(out_dir, config)
    if finished is not None:
        RunLog(None, stream=log_stream)(f"{out_dir / outputs.METRICS} exists: the run is finished")
        return finished
    # From here on a stop signal waits for the next step boundary; loader workers end with the run.
    with StopRequest() as stop, workers_stopped():
        world = World.from_environment(config["train"]["device"])
        try:
            if world.is_main:
                outputs.reopen_run_dir(out_dir)
            with RunLog(out_dir / outputs.PARTIAL_LOG, enabled=world.is_main, stream=log_stream) as log:
                return _Run(config, source, out_dir, world, log, stop).execute()
        finally:
            world.close()


def finished_metrics(out_dir: Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished run of this config in `out_dir`, None if there is none yet."""
    if not (out_dir / outputs.METRICS).exists():
        return None
    metrics = outputs.read_json(out_dir / outputs.METRICS)
    check_same_run(metrics.get("config", {}), config, out_dir / outputs.METRICS)
    (out_dir / outputs.RESUME).unlink(missing_ok=True)
    return metrics


def check_same_run(recorded: Mapping[str, Any], config: Mapping[str, Any], where: Path) -> None:
    """Refuse to continue or reuse a run made with a config that computes something else."""
    old, new = result_defining(with_defaults(recorded)), result_defining(config)
    if old != new:
        keys = sorted(_differing_keys(old, new))
        raise ValueError(f"{where} belongs to a run with a different config (differs in: "
                         f"{', '.join(keys)}); use another --out directory, or delete {where.parent} "
                         "to start over")


def _differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [key for name in sorted(set(old) | set(new))
                for key in _differing_keys(old.get(name), new.get(name), f"{prefix}{name}.")]
    return [] if old == new else [prefix.rstrip(".")]


class _Run:
    """The state of one training run between its setup and its outputs."""

    def __init__(self, config: dict[str, Any], source: str, out_dir: Path, world: World,
                 log: RunLog, stop: StopRequest) -> None:
        self.config, self.source, self.out_dir, self.world, self.log = config, source, out_dir, world, log
        self.train_config = config["train"]
        self.stop = stop

    # ---- setup

    def execute(self) -> dict[str, Any]:
        seed_everything(self.config["seed"])
        data = open_run_data(self.config, self.source)
        model = build_model(self.config["model"], data.num_train_classes, data.train_word_vectors,
                            data.feature_channels, seed=self.config["seed"])
        cost = self._cost(model, data)
        infeasible = check_feasibility(self.train_config["feasibility"], cost)
        if self.world.any(infeasible is not None):
            return self._write_infeasible(infeasible or "infeasible on another process", cost)
        self.data = data
        self._prepare_training(model)
        progress = self._resume_or_start()
        try:
            progress.accumulation = progress.accumulation or self._choose_accumulation()
            self.trainer.accumulation = progress.accumulation
            self._train_epochs(progress)
            candidates, scores, labels, zsl = self._evaluate_final()
        except torch.OutOfMemoryError:  # infeasible on this device, not a failure to retry
            return self._write_out_of_memory(progress, cost)
        return self._write_outputs(progress, candidates, scores, labels, zsl)

    def _cost(self, model: nn.Module, data: RunData) -> dict[str, Any]:
        """cost.json, measured once per model (a resumed run of the same model reads it back)."""
        path = self.out_dir / outputs.COST
        step = self._training_step()
        if path.exists():
            recorded = outputs.read_json(path)
            if recorded.get(COST_KEY) == cost_key(self.config, step):
                return recorded
        cost = measure_cost(self.config, model, data, step)
        if self.world.is_main:
            outputs.write_cost(self.out_dir, cost)
        return cost

    def _prepare_training(self, model: nn.Module) -> None:
        train, world = self.train_config, self.world
        device = world.device
        if world.distributed:
            model = synchronise_batchnorm(model, device)
        model.to(device)
        if device.type == "cuda":
            configure_cuda()
            if not self.config["features"]:
                use_channels_last(model)
        self.model = model
        self.ema = ModelEma(model, train["ema_decay"]) if train["ema_decay"] else None
        wrapped = model
        if world.distributed:
            wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.precision: Precision = choose_precision(train["amp"], device)
        mixing = BatchMixing(train["mix"], self.data.num_train_classes, self.config["seed"]) \
            if mixing_enabled(train["mix"]) else None
        self.sampler = TrainBatchSampler(len(self.data.train_set), train["batch_size"], self.config["seed"],
                                         world.rank, world.world_size, repeats=train["augment"]["repeats"],
                                         keep_pairs=mixing is not None)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        optimizer = build_optimizer(model, train)
        loss = create_loss(**train["loss"])
        self.loss_scale = float(world.world_size) if getattr(loss, "reduction", "mean") == "sum" else 1.0
        self.trainer = Trainer(
            model=wrapped, optimizer=optimizer,
            schedule=build_schedule(optimizer, train, train["epochs"] * self.steps_per_epoch),
            loss=loss, labels=self.data.labels, precision=self.precision, ema=self.ema,
            class_embeddings=_on(self.data.train_class_embeddings, device), loss_scale=self.loss_scale,
            extend_targets=extend_targets, mixing=mixing)
        self.train_loader = make_loader(self.data.train_set, self.sampler, self.data.collate,
                                        train["num_workers"], device)
        self.evaluator = Evaluator(self.data, self.config["task"], evaluation_batch_size(self.sampler.local_batch_size),
                                   train["num_workers"], world, self.precision, self.log,
                                   train["log_every_s"], self._should_stop)
        self.log(f"run {self.config['run_id']} seed {self.config['seed']}: "
                 f"{'cached features' if self.config['features'] else 'end to end'}, device {device}"
                 f"{f' x {world.world_size} processes' if world.distributed else ''}, precision "
                 f"{self.precision.name}, {self.steps_per_epoch} steps/epoch x {train['epochs']} epochs")

    def _choose_accumulation(self) -> int:
        """train.accumulation as a number: given, or (auto) the fewest micro-batches that fit this GPU
        (under DDP: the most that any process's GPU needs)."""
        setting, batch = self.train_config["accumulation"], self.sampler.local_batch_size
        if setting != ACCUMULATION_AUTO:
            return min(int(setting), batch)
        device = self.world.device
        if device.type != "cuda":
            return 1
        capacity_gb = 0.9 * torch.cuda.get_device_properties(device).total_memory / 1e9
        steps = fitting_accumulation(self.config, self.model, self.data, self._training_step(), capacity_gb)
        if steps is None:
            raise torch.OutOfMemoryError(f"even one image per micro-batch is estimated above {capacity_gb:.1f} GB")
        # Every process must take as many micro-batches (DDP averages gradients on the last one).
        steps = self.world.largest(steps)
        self.log(f"accumulation: {steps} micro-batch(es) of at most {-(-batch // steps)} images per step "
                 f"(estimated to fit {capacity_gb:.1f} GB)")
        return steps

    def _resume_or_start(self) -> Progress:
        path = self.out_dir / outputs.RESUME
        if not path.exists():
            return Progress()
        state = load_checkpoint(path)
        if state.get("format") != RESUME_FORMAT:
            raise CheckpointError(f"{path} is not an mld resume checkpoint; delete it to start over")
        check_same_run(state["config"], self.config, path)
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.schedule.load_state_dict(state["schedule"])
        self.precision.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        progress = Progress(**state["progress"])
        self.log(f"resuming from {path}: epoch {progress.epoch + 1}, step {progress.step}")
        return progress

    # ---- training

    def _should_stop(self) -> bool:
        return self.world.any(self.stop.received is not None)

    def _train_epochs(self, progress: Progress) -> None:
        epochs, every = self.train_config["epochs"], self.train_config["eval_every"]
        if self._should_stop():  # a signal during the setup
            self._interrupt(progress)
        while progress.epoch < epochs:
            epoch = progress.epoch
            started = time.monotonic()
            if progress.step < self.steps_per_epoch:
                self.sampler.set_epoch(epoch, progress.step)
                batches = track(self.train_loader, len(self.sampler), f"epoch {epoch + 1}/{epochs}",
                                self.log, self.train_config["log_every_s"])
                result = self.trainer.run_epoch(batches, epoch, progress.step, self._should_stop)
                elapsed = time.monotonic() - started
                progress.step, progress.loss_sum = result.steps, progress.loss_sum + result.loss_sum
                progress.train_time_s += elapsed
                times = progress.epoch_times  # a resumed epoch adds to the times before the stop
                for key, value in (("data_s", result.data_s), ("compute_s", result.compute_s), ("time_s", elapsed)):
                    times[key] = times.get(key, 0.0) + value
                if result.stopped:
                    self._interrupt(progress)
            entry = {"epoch": epoch + 1, "train_loss": self._epoch_loss(progress),
                     "lr": self.trainer.schedule.get_last_lr()[0], **progress.epoch_times}
            if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
                quick = self.evaluator.quick(self._candidates())
                if quick is None:
                    self._interrupt(progress)
                entry.update(quick)
            progress.history.append(entry)
            progress.epoch, progress.step, progress.loss_sum, progress.epoch_times = epoch + 1, 0, 0.0, {}
            self._save_resume(progress)
            self.log("epoch {epoch}/{epochs}: ".format(epoch=epoch + 1, epochs=epochs)
                     + ", ".join(f"{key} {value:.4g}" for key, value in entry.items() if key != "epoch"))

    def _epoch_loss(self, progress: Progress) -> float:
        """The epoch's mean loss over the global batches, the same for any number of processes."""
        total = self.world.sum(torch.tensor([progress.loss_sum], dtype=torch.float64)).item()
        return total * self.loss_scale / self.world.world_size / max(progress.step, 1)

    def _interrupt(self, progress: Progress) -> None:
        # last.pt holds one process's state; give every process the mean partial loss so that the
        # epoch's summed loss is right after a resume on any number of processes.
        total = self.world.sum(torch.tensor([progress.loss_sum], dtype=torch.float64)).item()
        progress.loss_sum = total / self.world.world_size
        self._save_resume(progress)
        signal_number = self.stop.received or 0
        message = (f"stopped by signal {signal_number} at epoch {progress.epoch + 1}, step {progress.step}; "
                   f"saved {self.out_dir / outputs.RESUME}: rerun the same command to resume")
        self.log(message)
        raise RunInterrupted(signal_number, message)

    def _save_resume(self, progress: Progress) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(self.out_dir / outputs.RESUME, {
            "format": RESUME_FORMAT, "config": result_defining(self.config),
            "progress": asdict(progress),
            "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.trainer.optimizer.state_dict(),
            "schedule": self.trainer.schedule.state_dict(),
            "scaler": self.precision.scaler.state_dict(), "rng": capture_rng_state()})

    # ---- evaluation

    def _candidates(self) -> dict[str, nn.Module]:
        return {"model": self.model, **({"ema": self.ema.module} if self.ema else {})}

    def _evaluate_final(self) -> FullEvaluation:
        result = self.evaluator.full(self._candidates())
        if result is None:  # last.pt already holds the finished training: a rerun only evaluates
            signal_number = self.stop.received or 0
            raise RunInterrupted(signal_number, f"stopped by signal {signal_number} during the final "
                                 "evaluation; rerun the same command to evaluate again")
        return result

    # ---- outputs

    def _write_outputs(self, progress: Progress, candidates: dict[str, dict[str, Any]],
                       scores: dict[str, torch.Tensor], labels: torch.Tensor,
                       zsl: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        selection = self.evaluator.metrics.selection
        final = final_section(candidates, selection)
        if progress.history:
            progress.history[-1].update({f"{selection}_{name}": values[selection]
                                         for name, values in candidates.items()})
        best = best_epoch_section(progress.history, selection, list(candidates))
        metrics = {**self._identity(), "final": final, "best_epoch": best, "history": progress.history,
                   "train_time_s": progress.train_time_s, "accumulation": progress.accumulation}
        if self.world.is_main:
            outputs.write_predictions(self.out_dir, scores[final["selected"]], labels, self.data.class_names,
                                      zsl.get(final["selected"]))
            save_checkpoint(self.out_dir / outputs.CHECKPOINT, {
                "format": CHECKPOINT_FORMAT, "config": self.config, "selected": final["selected"],
                "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None})
            self.log(f"finished: {selection} {final[selection]:.2f} ({final['selected']} weights); best "
                     f"evaluated epoch {best['epoch']}: {best[selection]:.2f} ({best['selected']}); "
                     f"{progress.train_time_s:.0f} s of training")
            self._publish(metrics)
        return outputs.json_safe(metrics)

    def _identity(self) -> dict[str, Any]:
        return {"run_id": self.config["run_id"], "seed": self.config["seed"], "config": self.config,
                "versions": outputs.software_versions(), "task": self.config["task"],
                "mode": "cached_features" if self.config["features"] else "end_to_end"}

    def _publish(self, metrics: dict[str, Any]) -> None:
        """metrics.json last: its presence marks the run finished (the workflow waits for it)."""
        self.log.close()
        outputs.finish_log(self.out_dir)
        outputs.write_metrics(self.out_dir, metrics)
        (self.out_dir / outputs.RESUME).unlink(missing_ok=True)

    def _training_step(self) -> TrainingStep:
        """One process's batch size and precision (what the memory estimate measures)."""
        return TrainingStep(self.train_config["batch_size"] // self.world.world_size,
                            choose_precision(self.train_config["amp"], self.world.device))

    def _write_out_of_memory(self, progress: Progress, cost: dict[str, Any]) -> dict[str, Any]:
        """The infeasible record of a run that ran out of memory: where, and the memory measured."""
        training = progress.epoch < self.train_config["epochs"]
        batch = self.sampler.local_batch_size if training else self.evaluator.batch_size
        device = self.world.device
        measured = dict(cost)
        if device.type == "cuda":
            measured["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        self.trainer.optimizer.zero_grad(set_to_none=True)
        if MEMORY_KEY not in measured:
            measured.update(memory_cost(self.config, self.model, self.data, self._training_step()))
        where = f"training (epoch {progress.epoch + 1})" if training else "the final evaluation"
        return self._write_infeasible(f"out of memory at batch {batch} during {where} on {device}", measured)

    def _write_infeasible(self, reason: str, cost: dict[str, Any]) -> dict[str, Any]:
        metrics = {**self._identity(), "infeasible": True, "reason": reason, "cost": cost}
        if self.world.is_main:
            self.log(f"not trained: {reason}")
            self._publish(metrics)
        return outputs.json_safe(metrics)


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)
