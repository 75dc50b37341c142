"""Results from several places in one file: `mld merge A/runs.csv B/runs.csv --out merged.csv`.

A campaign split across clusters or people gives one runs.csv (with its bootstrap and history
companions) per site. Merging keeps every row with where it came from (the column `site`) and
refuses what cannot be combined honestly:

* a run's seed present at two sites: kept once when every metric and status agree; when a value
  differs the merge stops, naming the run, the seed and the metrics, unless `prefer` names the
  site whose values to keep; a seed one site has only as "missing" yields to a site that ran it;
* a run id whose config (the `config` rows, mld.report.results) differs between sites: refused, naming
  the keys that differ, since the same id would then stand for two experiments;
* a header whose mode differs: refused (the numbers mean different things); the seeds are the
  union of the sites', other header lines are kept when they differ (a dataset's path per
  cluster), the commits are listed together.

Rows keep the order of the first site that has them, so a file split by seed and merged back
rebuilds the same tables byte for byte.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd

from mld.report import history
from mld.report import results as long_form

SITE = "site"
RUNS_FILE_STEM = "runs"
KIND_ORDER = (long_form.KIND_RUN, long_form.KIND_MEASUREMENT, long_form.KIND_REPORT, long_form.KIND_CONFIG)
# Fields of a (run, seed) that must agree between sites for the copies to be one result.
COMPARED = ("value", "status")
HEADER_UNION = "seeds"
HEADER_MUST_AGREE = ("mode",)
REPORT_IDENTITY = ("metric", "dataset", "backbone_role")


class MergeConflict(ValueError):
    """Two sites disagree about the same result, config or header line."""


@dataclass(frozen=True)
class Source:
    """One input of a merge: its site name and its runs.csv."""

    site: str
    path: Path


def default_site(path: Path) -> str:
    """The site a runs.csv is named for: its file name, or its folder's for a plain `runs.csv`."""
    return path.parent.name if path.stem == RUNS_FILE_STEM and path.parent.name else path.stem


def sources(paths: Sequence[str | Path], named: Sequence[str] = ()) -> list[Source]:
    """The inputs: plain paths (site from the name) and `NAME=PATH` pairs; site names must differ."""
    out = [Source(default_site(Path(p)), Path(p)) for p in paths]
    for text in named:
        site, separator, path = text.partition("=")
        if not separator or not site or not path:
            raise ValueError(f"--site {text!r}: expected NAME=PATH, e.g. --site clusterA=a/results/runs.csv")
        out.append(Source(site, Path(path)))
    if len(out) < 2:
        raise ValueError("a merge needs at least two runs.csv files")
    names = [source.site for source in out]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"site name(s) {repeated} given to more than one input; name each with "
                         "--site NAME=PATH")
    return out


def _with_site(collected: long_form.Collected, site: str) -> pd.DataFrame:
    """The frame with its `site` column: kept where a merged input already has one, else `site`."""
    frame = collected.frame.copy()
    own = frame[SITE] if SITE in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    frame[SITE] = own.where(own.notna(), site).astype(object)
    return frame


def _flat(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(config, Mapping):
        for key, value in config.items():
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), config


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs (absent on one side counts)."""
    flat_a, flat_b = dict(_flat(a)), dict(_flat(b))
    return sorted(key for key in set(flat_a) | set(flat_b) if flat_a.get(key, "absent") != flat_b.get(key, "absent"))


def _check_configs(frames: Mapping[str, pd.DataFrame]) -> None:
    seen: dict[str, tuple[str, dict]] = {}
    for site, frame in frames.items():
        rows = frame[frame["kind"] == long_form.KIND_CONFIG]
        for run_id, note in zip(rows["run_id"], rows["note"]):
            config = json.loads(note)
            if run_id not in seen:
                seen[run_id] = (site, config)
                continue
            first_site, first = seen[run_id]
            keys = config_differences(first, config)
            if keys:
                flat_a, flat_b = dict(_flat(first)), dict(_flat(config))
                shown = "; ".join(f"{key}: {flat_a.get(key, 'absent')!r} ({first_site}) vs "
                                  f"{flat_b.get(key, 'absent')!r} ({site})" for key in keys)
                raise MergeConflict(f"run {run_id} has different configs at {first_site} and {site}: {shown}. "
                                    "The same run id would stand for two experiments; rerun one site with "
                                    "the other's config, or leave that run out of one input")


def _values(rows: pd.DataFrame) -> dict[tuple[str | None, str | None], tuple]:
    """{(metric, selection): (value, status)}: a final and a best-epoch mAP are two results."""
    return {(metric, None if pd.isna(selection) else selection): tuple(None if pd.isna(v) else v for v in values)
            for metric, selection, *values in rows[["metric", "selection", *COMPARED]].itertuples(index=False)}


def _metric_name(key: tuple[str | None, str | None]) -> str:
    """"mAP", or "mAP (best_epoch)" for a value of the official selection."""
    metric, selection = key
    return f"{metric} ({selection})" if selection and selection != long_form.SELECTION_FINAL else str(metric)


def _all_missing(rows: pd.DataFrame) -> bool:
    return set(rows["status"]) == {long_form.STATUS_MISSING}


def _describe(values: tuple) -> str:
    value, status = values
    number = "no value" if value is None else f"{value:.10g}"
    return number if status == long_form.STATUS_OK else f"{number} ({status})"


def _choose(key: tuple, copies: list[tuple[str, pd.DataFrame]], prefer: str | None) -> str:
    """Which site's copy of one (run or measurement, seed) to keep."""
    ran = [(site, rows) for site, rows in copies if not _all_missing(rows)] or copies[:1]
    first_site, first_rows = ran[0]
    reference = _values(first_rows)
    for site, rows in ran[1:]:
        other = _values(rows)
        differing = sorted((m for m in set(reference) | set(other) if reference.get(m) != other.get(m)), key=str)
        if not differing:
            continue
        if prefer in {s for s, _ in ran}:
            return prefer
        run_id, seed = key
        shown = "; ".join(f"{_metric_name(m)}: {_describe(reference[m]) if m in reference else 'absent'} "
                          f"({first_site}) vs {_describe(other[m]) if m in other else 'absent'} ({site})"
                          for m in differing)
        what = f"run {run_id} seed {seed}" if seed is not None else f"measurement {run_id}"
        raise MergeConflict(f"{what} differs between {first_site} and {site}: {shown}; pass --prefer SITE "
                            "to keep one site's values")
    return first_site


def _results(frames: Mapping[str, pd.DataFrame], prefer: str | None) -> tuple[pd.DataFrame, dict[tuple, str]]:
    """The run and measurement rows, one copy per (id, seed), and which site each copy came from."""
    kinds = (long_form.KIND_RUN, long_form.KIND_MEASUREMENT)
    groups: dict[tuple, list[tuple[str, pd.DataFrame]]] = {}
    for site, frame in frames.items():
        rows = frame[frame["kind"].isin(kinds)]
        for key, group in rows.groupby([rows["run_id"], rows["seed"].astype(object)], sort=False, dropna=False):
            seed = None if pd.isna(key[1]) else int(key[1])
            groups.setdefault((key[0], seed), []).append((site, group))
    kept = {key: _choose(key, copies, prefer) for key, copies in groups.items()}
    # Ids in order of first appearance, seeds ascending within each: the order `collect` writes.
    rank = {run_id: i for i, run_id in enumerate(dict.fromkeys(run_id for run_id, _ in groups))}
    order = sorted(groups, key=lambda key: (rank[key[0]], -1 if key[1] is None else key[1]))
    chosen = [next(rows for site, rows in groups[key] if site == kept[key]) for key in order]
    return (pd.concat(chosen) if chosen else next(iter(frames.values())).iloc[0:0]), kept


def _header(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The report rows: mode must agree, seeds are united, other lines kept once each."""
    rows = pd.concat([frame[frame["kind"] == long_form.KIND_REPORT] for frame in frames.values()])
    for field_name in HEADER_MUST_AGREE:
        values = rows.loc[rows["metric"] == field_name, ["note", SITE]].drop_duplicates("note")
        if len(values) > 1:
            shown = " vs ".join(f"{note} ({site})" for note, site in values.itertuples(index=False))
            raise MergeConflict(f"the results were made in different {field_name}s: {shown}; merge only "
                                f"results of one {field_name}")
    seeds = sorted({int(s) for note in rows.loc[rows["metric"] == HEADER_UNION, "note"].dropna()
                    for s in str(note).split(",") if s})
    rows = rows.copy()
    rows.loc[rows["metric"] == HEADER_UNION, "note"] = ",".join(map(str, seeds))
    rows["git_commit"] = ", ".join(sorted({c for cell in rows["git_commit"].dropna() for c in str(cell).split(", ")}))
    compared = [c for c in rows.columns if c != SITE]
    return rows.drop_duplicates(subset=compared)


def _configs(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    rows = pd.concat([frame[frame["kind"] == long_form.KIND_CONFIG] for frame in frames.values()])
    return rows.drop_duplicates(subset=["run_id"])


def merge(inputs: Sequence[Source], prefer: str | None = None) -> long_form.Collected:
    """The merged frame with its bootstrap replicates and history (see the module docstring)."""
    names = [source.site for source in inputs]
    if prefer is not None and prefer not in names:
        raise ValueError(f"--prefer {prefer!r} is not one of the sites {names}")
    read = {source.site: long_form.read(source.path) for source in inputs}
    frames = {site: _with_site(collected, site) for site, collected in read.items()}
    _check_configs(frames)
    results, kept = _results(frames, prefer)
    frame = pd.concat([results, _header(frames), _configs(frames)], ignore_index=True)
    replicates = {key: value for site, collected in read.items() for key, value in collected.replicates.items()
                  if kept.get((key[0], key[1])) == site}
    histories = [collected.history[[kept.get((run, int(seed))) == site for run, seed in
                                    zip(collected.history["run_id"], collected.history["seed"])]]
                 for site, collected in read.items() if len(collected.history)]
    merged_history = pd.concat(histories, ignore_index=True) if histories else history.empty()
    return long_form.Collected(long_form.normalise(frame), replicates, history.frame(merged_history.to_dict("records")))


def merge_files(inputs: Sequence[Source], out: str | Path, prefer: str | None = None) -> long_form.Collected:
    """Merge and write `out` with its companions (runs.bootstrap.npz, runs.history.csv beside it)."""
    merged = merge(inputs, prefer)
    long_form.write(merged, out)
    return merged
