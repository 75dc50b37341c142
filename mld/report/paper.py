"""The papers' reported values and claims, read from `mld/report/paper_values.yaml`.

That file is the single source of truth for every number the papers report; this module loads
it once, checks its structure (so a typo fails loudly instead of silently dropping a row), and
hands out tables as pandas frames whose key columns join with the reproduced runs' rows.
"""
from __future__ import annotations

import copy
import functools
import numbers
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

VALUES_FILE = Path(__file__).with_name("paper_values.yaml")
TABLE_FIELDS = ("title", "source", "key", "metrics", "rows")
# Optional table fields: `baseline` (the row each row's effect is measured against: `match`, the
# baseline's key values, and `within`, the columns it must share with the row) and
# `not_reproduced` (why the suite cannot produce the table).
OPTIONAL_TABLE_FIELDS = ("baseline", "not_reproduced")
CLAIM_FIELDS = ("id", "table", "text")
# Optional claim field: `equivalence` {bound, source}: the bound an "equal" claim is tested against.
OPTIONAL_CLAIM_FIELDS = ("equivalence",)


def _fail(where: str, problem: str) -> None:
    raise ValueError(f"{VALUES_FILE.name}: {where}: {problem}")


def _check_names(where: str, field: str, names: Any) -> None:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        _fail(where, f"'{field}' must be a non-empty list of column names, got {names!r}")


def _check_table(table_id: str, table: Any) -> None:
    where = f"table {table_id!r}"
    if not isinstance(table, dict):
        _fail(where, "must be a mapping")
    missing = [field for field in TABLE_FIELDS if field not in table]
    if missing:
        _fail(where, f"missing field(s) {missing}")
    _check_names(where, "key", table["key"])
    _check_names(where, "metrics", table["metrics"])
    if not isinstance(table["rows"], list) or not table["rows"]:
        _fail(where, "'rows' must be a non-empty list")
    seen_keys = set()
    for number, row in enumerate(table["rows"]):
        row_where = f"{where}, row {number}"
        if not isinstance(row, dict):
            _fail(row_where, "must be a mapping of column -> value")
        absent = [column for column in table["key"] + table["metrics"] if column not in row]
        if absent:
            _fail(row_where, f"lacks column(s) {absent} (write null for 'not reported')")
        for metric in table["metrics"]:
            value = row[metric]
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, numbers.Real)):
                _fail(row_where, f"metric {metric!r} must be a number or null, got {value!r}")
        key = tuple(row[column] for column in table["key"])
        if key in seen_keys:
            _fail(row_where, f"repeats key {dict(zip(table['key'], key))}")
        seen_keys.add(key)
    unknown = set(table) - set(TABLE_FIELDS) - set(OPTIONAL_TABLE_FIELDS)
    if unknown:
        _fail(where, f"unknown field(s) {sorted(unknown)}; allowed: {list(TABLE_FIELDS + OPTIONAL_TABLE_FIELDS)}")
    baseline = table.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, dict) or not isinstance(baseline.get("match"), dict) \
                or not set(baseline["match"]) <= set(table["key"]) \
                or not set(baseline.get("within", [])) <= set(table["key"]):
            _fail(where, "'baseline' must be {match: {key column: value}, within: [key columns]} over the key "
                         f"{table['key']}, got {baseline!r}")
    if "not_reproduced" in table and (not isinstance(table["not_reproduced"], str) or not table["not_reproduced"]):
        _fail(where, "'not_reproduced' must be a sentence saying why the suite cannot produce the table")


def _check_claims(claims: Any, table_ids: set[str]) -> None:
    if not isinstance(claims, list):
        _fail("claims", "must be a list")
    seen_ids = set()
    for number, claim in enumerate(claims):
        where = f"claim {number}"
        if not isinstance(claim, dict) or any(field not in claim for field in CLAIM_FIELDS):
            _fail(where, f"must have the fields {list(CLAIM_FIELDS)}")
        if claim["id"] in seen_ids:
            _fail(where, f"repeats id {claim['id']!r}")
        seen_ids.add(claim["id"])
        if claim["table"] not in table_ids:
            _fail(where, f"names unknown table {claim['table']!r}")
        if not isinstance(claim["text"], str) or not claim["text"].strip():
            _fail(where, "needs a non-empty text")
        equivalence = claim.get("equivalence")
        if equivalence is not None and (not isinstance(equivalence, dict) or set(equivalence) != {"bound", "source"}
                                        or not isinstance(equivalence["bound"], numbers.Real)
                                        or equivalence["bound"] <= 0):
            _fail(where, f"'equivalence' must be {{bound: a positive number, source: where it comes from}}, "
                         f"got {equivalence!r}")


@functools.lru_cache(maxsize=None)
def _load() -> dict[str, Any]:
    with VALUES_FILE.open(encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    if not isinstance(values, dict) or set(values) != {"tables", "claims"}:
        _fail("top level", "must hold exactly the keys 'tables' and 'claims'")
    for table_id, table in values["tables"].items():
        _check_table(table_id, table)
    _check_claims(values["claims"], set(values["tables"]))
    return values


def table_ids() -> list[str]:
    """Ids of every reported table, in file order."""
    return list(_load()["tables"])


def table_spec(table_id: str) -> dict[str, Any]:
    """A table's title, source, key and metrics (everything but its rows)."""
    table = _table(table_id)
    fields = [field for field in TABLE_FIELDS + OPTIONAL_TABLE_FIELDS if field != "rows"]
    return {field: copy.deepcopy(table.get(field)) for field in fields}


def _table(table_id: str) -> dict[str, Any]:
    tables = _load()["tables"]
    if table_id not in tables:
        raise KeyError(f"no reported table {table_id!r}; known tables: {', '.join(tables)}")
    return tables[table_id]


def paper_table(table_id: str) -> pd.DataFrame:
    """A reported table as a frame: key columns, then context columns, then metrics.

    Missing values (not reported, or a context column a row lacks) are None/NaN, so a count
    column with gaps (queries: null for GAP) reads as floats; the frame's `attrs` hold the
    table's title, source, key and metrics.
    """
    table = _table(table_id)
    frame = pd.DataFrame(copy.deepcopy(table["rows"]))
    context = [c for c in frame.columns if c not in table["key"] + table["metrics"]]
    frame = frame[table["key"] + context + table["metrics"]]
    frame.attrs.update(table_spec(table_id))
    return frame


def claims() -> list[dict[str, Any]]:
    """Every claim of the papers: {"id", "table", "text"} and, for "equal" claims, "equivalence"."""
    return copy.deepcopy(_load()["claims"])

