"""`mld compare`: each cell's change between two results, with the claims' noise model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mld.report import comparison
from mld.report import results as long_form
from tests.test_tables import HEADER, TABLE1_RUNS, make_results, on_synthetic_data

REPO = Path(__file__).resolve().parent.parent


def collected(tmp_path: Path, name: str, shift: dict[str, list[float]], synthetic: bool = False) -> Path:
    """A results tree like test_tables' with some runs' per-seed mAP moved; its runs.csv. With
    `synthetic`, on synthetic stand-ins: Table 1 then shows effects against its GAP row."""
    runs = {run_id: (row, [None if value is None else value + step
                           for value, step in zip(maps, shift.get(run_id, [0.0, 0.0, 0.0]))])
            for run_id, (row, maps) in TABLE1_RUNS.items()}
    results = tmp_path / name
    registry = make_results(results, runs)
    if synthetic:
        on_synthetic_data(registry)
    path = results / "runs.csv"
    long_form.write(long_form.collect(registry, results, HEADER), path)
    return path


def test_a_shift_beyond_the_seed_spread_is_beyond_noise_and_a_wobble_is_not(tmp_path):
    before = collected(tmp_path, "before", {})
    after = collected(tmp_path, "after", {"coco-like/gap": [2.0, 2.5, 1.5],
                                          "coco-like/transformer_decoder": [0.5, -0.5, 0.0]})
    changes = {(c.table, c.run): c for c in comparison.compare_files(before, after)}
    gap = changes[("table1_heads", "coco-like/gap")]
    assert (gap.before, gap.after, gap.seeds) == (pytest.approx(61.1666667), pytest.approx(63.1666667), 3)
    assert gap.change == pytest.approx(2.0) and gap.margin == pytest.approx(1.96 * 0.5 / 3 ** 0.5, rel=1e-3)
    assert gap.beyond_noise is True
    decoder = changes[("table1_heads", "coco-like/transformer_decoder")]
    assert decoder.change == pytest.approx(0.0) and decoder.beyond_noise is False
    partial = changes[("table1_heads", "coco-like/ml_decoder-k20")]  # seeds 0 and 1 only, in both
    assert partial.seeds == 2 and partial.change == pytest.approx(0.0)
    assert ("table1_heads", "coco-like/ml_decoder-k5") not in changes  # no seed finished
    zsl = [c for c in changes.values() if c.table == "table6_zsl"]
    assert zsl and all(c.change == pytest.approx(0.0) for c in zsl)


def test_the_command_prints_the_changes_and_gates_on_them(tmp_path):
    before = collected(tmp_path, "before", {})
    after = collected(tmp_path, "after", {"coco-like/gap": [2.0, 2.5, 1.5]})
    command = [sys.executable, "-m", "mld", "compare", "--from", str(before), "--to", str(after),
               "--out-md", str(tmp_path / "changes.md"),
               "--table", "table1_heads", "--out-csv", str(tmp_path / "changes.csv")]
    plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert "### table1_heads: 1 of 3 cells changed beyond noise" in plain.stdout
    assert "| coco-like/gap | mAP | 61.17 | 63.17 | +2.00 |" in plain.stdout
    assert (tmp_path / "changes.md").read_text() == plain.stdout  # --out-md: the printed markdown
    assert (tmp_path / "changes.csv").read_text().startswith(",".join(comparison.COLUMNS))
    gated = subprocess.run([*command, "--fail-beyond-noise"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert gated.returncode == 1
    unknown = subprocess.run([*command[:-4], "--table", "table99"], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert unknown.returncode == 2
    assert "no accuracy cell of table99 is reproduced in both files" in unknown.stderr


def test_effects_moved_beyond_noise_are_reported_beside_the_cells(tmp_path):
    """GAP and the transformer-decoder move together: both cells move, their effect does not; the
    ML-Decoder row stays: its cell does not move, its effect against GAP does."""
    shift = [2.0, 2.5, 1.5]
    before = collected(tmp_path, "before", {}, synthetic=True)
    after = collected(tmp_path, "after", {"coco-like/gap": shift, "coco-like/transformer_decoder": shift},
                      synthetic=True)
    cells, effects = comparison.compare_all(before, after, ["table1_heads"])
    assert {c.run for c in cells if c.beyond_noise} == {"coco-like/gap", "coco-like/transformer_decoder"}
    by_run = {e.run: e for e in effects}
    assert set(by_run) == {"coco-like/transformer_decoder", "coco-like/ml_decoder-k20"}
    together = by_run["coco-like/transformer_decoder"]
    assert (together.baseline, together.seeds, together.change, together.beyond_noise) == (
        "coco-like/gap", 3, pytest.approx(0.0), False)
    alone = by_run["coco-like/ml_decoder-k20"]  # seeds 0 and 1: effect changes -2.0 and -2.5
    assert alone.change == pytest.approx(-2.25) and alone.seeds == 2
    assert alone.margin == pytest.approx(1.959964 * 0.25, rel=1e-5) and alone.beyond_noise is True
    assert alone.before == pytest.approx((70.2 - 60.0 + 70.9 - 61.0) / 2)
    markdown = comparison.render_markdown(cells, "before", "after", effects)
    assert "### Effects: 1 of 2 moved beyond noise (tables: table1_heads)" in markdown
    row = "| table1_heads | coco-like/ml_decoder-k20 | coco-like/gap | mAP | +10.05 | +7.80 | -2.25 | ± 0.49 | yes |"
    assert row in markdown
