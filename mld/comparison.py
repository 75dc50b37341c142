"""What changed between two results files: every reproduced cell's change, with its noise.

`mld compare --from A/runs.csv --to B/runs.csv` pairs the rows that both files reproduce (same
table, same run) and gives, for each accuracy metric, B - A over the seeds both have with its 95%
margin, from the claims' noise model (`mld.tables.compare`: the seed spread of the per-seed
changes plus, when both were scored on the same validation images, the paired bootstrap over
them). A change is "beyond noise" when its interval excludes 0. The convergence check
(benchmarks/convergence.py: the same config with the head epochs doubled) and a comparison of a
reproduction with the committed reference are both this.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from mld import paper
from mld import results as long_form
from mld.tables import DIFFERENCE_METRICS, Observation, TableResult, build_tables, compare

COLUMNS = ("table", "run", "metric", "from", "to", "change", "margin", "seeds", "beyond noise")


@dataclass(frozen=True)
class CellChange:
    """One reproduced cell in both files: its seed means and the change's interval."""

    table: str
    run: str
    metric: str
    before: float
    after: float
    change: float
    margin: float | None
    seeds: int

    @property
    def beyond_noise(self) -> bool | None:
        """Whether the 95% interval of the change excludes 0 (None: noise unknown)."""
        return None if self.margin is None else abs(self.change) > self.margin


def _observations(table: TableResult) -> dict[str, Observation]:
    return {observation.origin: observation for observation in table.observations if observation is not None}


def _mean(observation: Observation, metric: str, seeds: Sequence[int]) -> float:
    return sum(observation.by_seed[metric][seed] for seed in seeds) / len(seeds)


def cell_changes(before: long_form.Collected, after: long_form.Collected,
                 tables: Sequence[str] | None = None) -> list[CellChange]:
    """The changes of every accuracy cell reproduced in both (only `tables`, when given)."""
    wanted = None if tables is None else set(tables)
    before_tables = {t.spec.table_id: t for t in build_tables(before, paper.table_ids())}
    changes = []
    for table in build_tables(after, paper.table_ids()):
        table_id = table.spec.table_id
        if (wanted is not None and table_id not in wanted) or table_id not in before_tables:
            continue
        old = _observations(before_tables[table_id])
        for run, new_observation in _observations(table).items():
            if run not in old:
                continue
            for metric in table.spec.metrics:
                if metric not in DIFFERENCE_METRICS:
                    continue
                difference = compare(new_observation, old[run], metric)
                if difference is None:
                    continue
                seeds = sorted(set(new_observation.by_seed[metric]) & set(old[run].by_seed[metric]))
                changes.append(CellChange(table_id, run, metric, _mean(old[run], metric, seeds),
                                          _mean(new_observation, metric, seeds), difference.value,
                                          difference.margin(), len(seeds)))
    return changes


def frame(changes: Iterable[CellChange]) -> pd.DataFrame:
    return pd.DataFrame([(c.table, c.run, c.metric, c.before, c.after, c.change, c.margin, c.seeds, c.beyond_noise)
                         for c in changes], columns=list(COLUMNS))


def render_markdown(changes: Sequence[CellChange], before: str, after: str) -> str:
    """A table of the changes and a summary line per table."""
    lines = [f"Changes from `{before}` to `{after}` (to - from, seed means; margin: 95%, seeds and "
             "paired bootstrap over images; beyond noise: the interval excludes 0).", ""]
    for table_id in dict.fromkeys(c.table for c in changes):
        rows = [c for c in changes if c.table == table_id]
        moved = sum(c.beyond_noise is True for c in rows)
        unknown = sum(c.beyond_noise is None for c in rows)
        summary = f"{moved} of {len(rows)} cells changed beyond noise" + (
            f", {unknown} with unknown noise (fewer than 2 common seeds)" if unknown else "")
        lines += [f"### {table_id}: {summary}", "",
                  "| run | metric | from | to | change | margin | beyond noise |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for c in rows:
            margin = "unknown" if c.margin is None else f"{c.margin:.2f}"
            verdict = "unknown" if c.beyond_noise is None else ("yes" if c.beyond_noise else "no")
            lines.append(f"| {c.run} | {c.metric} | {c.before:.2f} | {c.after:.2f} | {c.change:+.2f} | "
                         f"± {margin} | {verdict} |")
        lines.append("")
    if not changes:
        lines.append("No accuracy cell is reproduced in both files.")
    return "\n".join(lines).rstrip() + "\n"


def compare_files(before: str | Path, after: str | Path,
                  tables: Sequence[str] | None = None) -> list[CellChange]:
    """`cell_changes` of two runs.csv files (each with its runs.bootstrap.npz when it has one)."""
    return cell_changes(long_form.read(before), long_form.read(after), tables)
