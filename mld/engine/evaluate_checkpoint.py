"""`mld evaluate`: score saved weights on a run config's evaluation split, without training."""
from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Mapping

from mld.data.loading import workers_stopped
from mld.engine import outputs
from mld.engine.checkpoint import load_checkpoint
from mld.engine.data import open_run_data
from mld.engine.distributed import World
from mld.engine.evaluation import Evaluator, evaluation_batch_size, final_section
from mld.engine.modeling import build_model
from mld.engine.precision import choose_precision
from mld.engine.progress import RunLog
from mld.engine.run import CHECKPOINT_FORMAT, as_run_config, seed_everything

CANDIDATES = ("model", "ema")
TRAINING_FILES = (outputs.RESUME, outputs.PARTIAL_LOG, outputs.LOG)


def evaluate(config: Mapping[str, Any] | str | Path, checkpoint: str | Path, out_dir: str | Path,
             log_stream: IO[str] | None = None) -> dict[str, Any]:
    """Evaluate `checkpoint` (a run's checkpoint.pt, or a bare state dict of the model) with `config`.

    Writes metrics.json ("final", no history) and predictions.npz to `out_dir`, which must not
    hold a training run (its metrics would be replaced). Returns the metrics.
    """
    config, source = as_run_config(config)
    out_dir = Path(out_dir)
    if any((out_dir / name).exists() for name in TRAINING_FILES):
        raise ValueError(f"{out_dir} holds a training run; write the evaluation to another --out directory")
    state = load_checkpoint(checkpoint)
    weights = _candidate_weights(state, checkpoint)
    world = World.from_environment(config["train"]["device"])
    try:
        seed_everything(config["seed"])
        data = open_run_data(config, source)
        candidates = {}
        for name, state_dict in weights.items():
            model = build_model(config["model"], data.num_train_classes, data.train_word_vectors,
                                data.feature_channels, seed=config["seed"])
            model.load_state_dict(state_dict)
            candidates[name] = model.to(world.device)
        train = config["train"]
        with RunLog(None, enabled=world.is_main, stream=log_stream) as log, workers_stopped():
            local_batch = train["batch_size"] // world.world_size
            evaluator = Evaluator(data, config["task"], evaluation_batch_size(local_batch), train["num_workers"], world,
                                  choose_precision(train["amp"], world.device), log, train["log_every_s"])
            results, scores, labels, zsl = evaluator.full(candidates)
            final = final_section(results, evaluator.metrics.selection)
            log(f"{checkpoint}: {final['selected_by']} {final[final['selected_by']]:.2f} ({final['selected']})")
        metrics = {"run_id": config["run_id"], "seed": config["seed"], "config": config,
                   "versions": outputs.software_versions(), "task": config["task"],
                   "mode": "cached_features" if config["features"] else "end_to_end",
                   "checkpoint": str(checkpoint), "final": final}
        if world.is_main:
            outputs.write_predictions(out_dir, scores[final["selected"]], labels, data.class_names,
                                      zsl.get(final["selected"]))
            outputs.write_metrics(out_dir, metrics)
        return outputs.json_safe(metrics)
    finally:
        world.close()


def _candidate_weights(state: dict[str, Any], path: str | Path) -> dict[str, dict[str, Any]]:
    """The model (and EMA) state dicts of a run checkpoint, or a bare state dict as "model"."""
    if state.get("format") == CHECKPOINT_FORMAT:
        return {name: state[name] for name in CANDIDATES if state.get(name) is not None}
    if state and all(hasattr(value, "shape") for value in state.values()):
        return {"model": state}
    raise ValueError(f"{path} is neither an mld run checkpoint (checkpoint.pt) nor a state dict of tensors")
