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
  union of the sites', each site's report row (label, config file, commit) is kept when it
  differs, the other header rows once each (a dataset's description per cluster when they differ).

Rows keep the order of the first site that has them, so a file split by seed and merged back
rebuilds the same tables byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from mld.report import history
from mld.report import results as long_form

SITE = "site"
RUNS_FILE_STEM = "runs"
# Fields of a (run, seed) that must agree between sites for the copies to be one result, and what names them.
COMPARED = ("value", "status")
RESULT_KEY = ("section", "metric", "part", "selection")
HEADER_MUST_AGREE = ("mode",)


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


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs given as {dotted key: value}
    (mld.report.results.configs; absent on one side counts)."""
    return sorted(key for key in set(a) | set(b) if a.get(key, "absent") != b.get(key, "absent"))


def _check_configs(frames: Mapping[str, pd.DataFrame]) -> None:
    seen: dict[str, tuple[str, dict]] = {}
    for site, frame in frames.items():
        for run_id, config in long_form.configs(frame).items():
            if run_id not in seen:
                seen[run_id] = (site, config)
                continue
            first_site, first = seen[run_id]
            keys = config_differences(first, config)
            if keys:
                shown = "; ".join(f"{key}: {first.get(key, 'absent')!r} ({first_site}) vs "
                                  f"{config.get(key, 'absent')!r} ({site})" for key in keys)
                raise MergeConflict(f"run {run_id} has different configs at {first_site} and {site}: {shown}. "
                                    "The same run id would stand for two experiments; rerun one site with "
                                    "the other's config, or leave that run out of one input")


def _values(rows: pd.DataFrame) -> dict[tuple, tuple]:
    """{(section, metric, part, selection): (value, status)}: a final and a best-epoch mAP are two
    results; the copies of a run's rows in each of its tables are one."""
    def plain(cells: tuple) -> tuple:
        return tuple(None if pd.isna(cell) else cell for cell in cells)

    width = len(RESULT_KEY)
    return {plain(cells[:width]): plain(cells[width:])
            for cells in rows[[*RESULT_KEY, *COMPARED]].itertuples(index=False, name=None)}


def _metric_name(key: tuple) -> str:
    """"mAP", or "mAP (zsl, best_epoch)" for a value of a section, part or the official selection."""
    section, metric, part, selection = key
    qualifiers = [q for q in (section, part, selection if selection != long_form.SELECTION_FINAL else None) if q]
    return f"{metric} ({', '.join(qualifiers)})" if qualifiers else str(metric)


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
    """The header rows: the mode must agree, the seeds are united (ascending), other rows kept once
    each (the report row once per differing label, config file or commit)."""
    rows = pd.concat([frame[frame["kind"].isin(long_form.HEADER_KINDS)] for frame in frames.values()])
    report = rows[rows["kind"] == long_form.KIND_REPORT]
    for field_name in HEADER_MUST_AGREE:
        values = report[[field_name, SITE]].drop_duplicates(field_name)
        if len(values) > 1:
            shown = " vs ".join(f"{value} ({site})" for value, site in values.itertuples(index=False))
            raise MergeConflict(f"the results were made in different {field_name}s: {shown}; merge only "
                                f"results of one {field_name}")
    seeds = rows[rows["kind"] == long_form.KIND_SEED].drop_duplicates("seed").sort_values("seed")
    others = rows[~rows["kind"].isin([long_form.KIND_REPORT, long_form.KIND_SEED])]
    return pd.concat([report.drop_duplicates([c for c in rows.columns if c != SITE]), seeds,
                      others.drop_duplicates([c for c in rows.columns if c not in (SITE, "git_commit")])])


def _configs(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The config rows of each run id from the first site that has it (the sites agree: _check_configs)."""
    rows = pd.concat([frame[frame["kind"] == long_form.KIND_CONFIG] for frame in frames.values()])
    first_site = rows.drop_duplicates("run_id").set_index("run_id")[SITE]
    return rows[rows[SITE].to_numpy() == first_site.loc[rows["run_id"]].to_numpy()]


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
