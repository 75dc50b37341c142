"""The runs' per-epoch history in long form: `runs.history.csv` beside runs.csv.

Each run's metrics.json keeps a `history` list, one entry per epoch (train_loss, lr, timings and,
on evaluated epochs, the selection metric of the model and of the EMA). The collection step
(mld.report.results) copies every numeric per-epoch key into one row per (run, seed, epoch, quantity),
whatever the keys are, so the training curves (mld.report.curves) rebuild from the results alone, as
the tables do from runs.csv.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from mld.atomic import write_text

COLUMNS = ("run_id", "seed", "epoch", "quantity", "value")
SUFFIX = ".history.csv"  # runs.csv -> runs.history.csv
EPOCH_KEY = "epoch"
FLOAT_FORMAT = "%.10g"  # as runs.csv: every measured digit, no float noise


def history_path(runs_csv: str | Path) -> Path:
    """The history companion of a runs.csv."""
    path = Path(runs_csv)
    return path.with_name(path.name.removesuffix(".csv") + SUFFIX)


def empty() -> pd.DataFrame:
    return frame([])


def rows(run_id: str, seed: int, entries: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """One row per numeric key of each history entry (the epoch number excluded: it is a column)."""
    from mld.report.results import finite_number  # mld.report.results imports this module

    out = []
    for position, entry in enumerate(entries or [], start=1):
        if not isinstance(entry, Mapping):
            continue
        epoch = entry.get(EPOCH_KEY, position)
        for quantity, value in entry.items():
            number = finite_number(value)
            if quantity != EPOCH_KEY and number is not None:
                out.append({"run_id": run_id, "seed": int(seed), "epoch": int(epoch), "quantity": str(quantity),
                            "value": number})
    return out


def frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The long-form history frame, typed as read back: ids as text, seed and epoch as ints."""
    table = pd.DataFrame(list(records), columns=list(COLUMNS))
    return table.astype({"run_id": object, "seed": "int64", "epoch": "int64", "quantity": object,
                         "value": "float64"})


def write(table: pd.DataFrame, path: str | Path) -> None:
    write_text(path, table.to_csv(index=False, float_format=FLOAT_FORMAT))


def read(path: str | Path) -> pd.DataFrame:
    """The history companion, empty when it does not exist (results collected before it was kept)."""
    path = Path(path)
    if not path.is_file():
        return empty()
    table = pd.read_csv(path, dtype={"run_id": "string", "quantity": "string"}, keep_default_na=False)
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; it is not a runs.history.csv that mld wrote")
    return frame(table[list(COLUMNS)].astype({"run_id": object, "quantity": object}).to_dict("records"))
