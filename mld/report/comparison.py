"""What changed between two results files: every reproduced cell's change, with its noise.

`mld compare --from A/runs.csv --to B/runs.csv` pairs the rows that both files reproduce (same
table, same run) and gives, for each accuracy metric, B - A over the seeds both have with its 95%
margin, from the claims' noise model (`mld.report.tables.compare`: the seed spread of the per-seed
changes plus, when both were scored on the same validation images, the paired bootstrap over
them). A change is "beyond noise" when its interval excludes 0. Beside the cells, the effects the
tables show (on synthetic stand-ins, each row minus its baseline row) are compared the same way:
the change of a row's effect, per seed (after - before of row - baseline), with the same noise
model; the claims are about effects, so an effect that moves beyond noise is what matters for
them even when every cell moved together. The convergence check
(benchmarks/convergence.py: the same config with the head epochs doubled) and a comparison of a
reproduction with the committed reference are both this.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from mld.report import paper
from mld.report import results as long_form
from mld.report.tables import DIFFERENCE_METRICS, LAYOUT_EFFECTS, Observation, TableResult, build_tables, compare

COLUMNS = ("table", "run", "metric", "from", "to", "change", "margin", "seeds", "beyond noise")
EFFECT_COLUMNS = ("table", "run", "baseline", "metric", "from", "to", "change", "margin", "seeds", "beyond noise")


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

    @property
    def margin_text(self) -> str:
        """The margin as the markdown reports show it: "± 0.49", or "± unknown"."""
        return "± unknown" if self.margin is None else f"± {self.margin:.2f}"


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


@dataclass(frozen=True)
class EffectChange(CellChange):
    """One effect (`run`'s row minus its `baseline` row) in both files: its seed means and the
    change's interval."""

    baseline: str = ""


def _effect(own: Observation, base: Observation, metric: str, seeds: Sequence[int]) -> Observation:
    """own - base per seed as an observation, with paired replicates where both were scored on the
    same images, so `compare` gives the change of two effects with the tables' noise model."""
    effect = Observation(f"{own.origin} - {base.origin}", {}, [])
    effect.by_seed[metric] = {s: own.by_seed[metric][s] - base.by_seed[metric][s] for s in seeds}
    own_reps, base_reps = own.replicates.get(metric, {}), base.replicates.get(metric, {})
    effect.replicates[metric] = {s: (own_reps[s][0] - base_reps[s][0], own_reps[s][1]) for s in seeds
                                 if s in own_reps and s in base_reps and own_reps[s][1] == base_reps[s][1]}
    return effect


def effect_changes(before: long_form.Collected, after: long_form.Collected,
                   tables: Sequence[str] | None = None) -> list[EffectChange]:
    """The changes of every effect the tables show (rows against their baseline; synthetic
    stand-ins) that both files reproduce (only `tables`, when given)."""
    wanted = None if tables is None else set(tables)
    before_tables = {t.spec.table_id: t for t in build_tables(before, paper.table_ids())}
    changes = []
    for table in build_tables(after, paper.table_ids()):
        table_id = table.spec.table_id
        if (wanted is not None and table_id not in wanted) or table_id not in before_tables \
                or table.layout != LAYOUT_EFFECTS:
            continue
        old = _observations(before_tables[table_id])
        for index, base_index in enumerate(table.baselines):
            own, base = table.observations[index], None if base_index is None else table.observations[base_index]
            if own is None or base is None or own.origin not in old or base.origin not in old:
                continue
            for metric in table.spec.metrics:
                if metric not in DIFFERENCE_METRICS:
                    continue
                sides = (own, base, old[own.origin], old[base.origin])
                seeds = sorted(set.intersection(*(set(side.by_seed.get(metric, {})) for side in sides)))
                if not seeds:
                    continue
                new_effect, old_effect = _effect(own, base, metric, seeds), _effect(*sides[2:], metric, seeds)
                difference = compare(new_effect, old_effect, metric)
                changes.append(EffectChange(table_id, own.origin, metric, _mean(old_effect, metric, seeds),
                                            _mean(new_effect, metric, seeds), difference.value, difference.margin(),
                                            len(seeds), baseline=base.origin))
    return changes


def frame(changes: Iterable[CellChange]) -> pd.DataFrame:
    return pd.DataFrame([(c.table, c.run, c.metric, c.before, c.after, c.change, c.margin, c.seeds, c.beyond_noise)
                         for c in changes], columns=list(COLUMNS))


def effects_frame(changes: Iterable[EffectChange]) -> pd.DataFrame:
    return pd.DataFrame([(c.table, c.run, c.baseline, c.metric, c.before, c.after, c.change, c.margin, c.seeds,
                          c.beyond_noise) for c in changes], columns=list(EFFECT_COLUMNS))


def _verdict(beyond_noise: bool | None) -> str:
    return "unknown" if beyond_noise is None else ("yes" if beyond_noise else "no")


def render_effects(changes: Sequence[EffectChange]) -> str:
    """The effect changes: a summary line, then one table of them."""
    if not changes:
        return "No effect (a row against its baseline, on synthetic stand-ins) is reproduced in both files.\n"
    moved = [c for c in changes if c.beyond_noise is True]
    tables = ", ".join(dict.fromkeys(c.table for c in moved)) or "none"
    lines = [f"### Effects: {len(moved)} of {len(changes)} moved beyond noise (tables: {tables})", "",
             "Each effect is a row minus its table's baseline row, per seed; its change is to - from.", "",
             "| table | run | baseline | metric | from | to | change | margin | beyond noise |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for c in changes:
        lines.append(f"| {c.table} | {c.run} | {c.baseline} | {c.metric} | {c.before:+.2f} | {c.after:+.2f} | "
                     f"{c.change:+.2f} | {c.margin_text} | {_verdict(c.beyond_noise)} |")
    return "\n".join(lines) + "\n"


def render_markdown(changes: Sequence[CellChange], before: str, after: str,
                    effects: Sequence[EffectChange] | None = None) -> str:
    """A table of the changes and a summary line per table, then the effects' changes (when given)."""
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
            lines.append(f"| {c.run} | {c.metric} | {c.before:.2f} | {c.after:.2f} | {c.change:+.2f} | "
                         f"{c.margin_text} | {_verdict(c.beyond_noise)} |")
        lines.append("")
    if not changes:
        lines.append("No accuracy cell is reproduced in both files.")
    text = "\n".join(lines).rstrip() + "\n"
    return text if effects is None else text + "\n" + render_effects(effects)


def compare_files(before: str | Path, after: str | Path,
                  tables: Sequence[str] | None = None) -> list[CellChange]:
    """`cell_changes` of two runs.csv files (each with its runs.bootstrap.npz when it has one)."""
    return cell_changes(long_form.read(before), long_form.read(after), tables)


def compare_all(before: str | Path, after: str | Path,
                tables: Sequence[str] | None = None) -> tuple[list[CellChange], list[EffectChange]]:
    """The cell changes and the effect changes of two runs.csv files."""
    old, new = long_form.read(before), long_form.read(after)
    return cell_changes(old, new, tables), effect_changes(old, new, tables)
