"""`mld prepare ...` through its argparse registration, as mld.cli dispatches it."""
from __future__ import annotations

import argparse
import json
import pickle

import numpy as np
import pytest

from mld.commands import data as data_commands
from mld.data import open_prepared


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mld")
    data_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_prepare_synthetic_then_validate(tmp_path, capsys):
    out = tmp_path / "voc"
    assert run("prepare", "synthetic", "--preset", "voc-like", "--image-size", "24", "--seed", "2",
               "--num-train", "10", "--num-val", "4", "--out", str(out)) == 0
    assert "voc-like, 20 classes, multilabel; train 10, val 4 images (array, 24 px)" in capsys.readouterr().out
    assert open_prepared(out).source.startswith("synthetic preset voc-like (mimics Pascal VOC 2007), seed 2, 24 px")
    assert run("prepare", "validate", str(out)) == 0
    assert capsys.readouterr().out.startswith(f"ok {out}")


def test_validate_reports_the_inconsistent_file(tmp_path):
    out = tmp_path / "voc"
    run("prepare", "synthetic", "--preset", "voc-like", "--image-size", "24", "--num-train", "6",
        "--num-val", "3", "--out", str(out))
    meta = json.loads((out / "meta.json").read_text())
    meta["splits"]["val"] = 5
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"val/labels.npy: expected \[5, 20\] int8"):
        run("prepare", "validate", str(out))


def test_unknown_preset_is_an_argument_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        run("prepare", "synthetic", "--preset", "mnist", "--out", str(tmp_path / "x"))
    assert exited.value.code == 2  # argparse's usage error, not --help's 0
    assert "--preset: invalid choice: 'mnist'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_prepare_voc_with_word_vectors(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages").mkdir()
    for split in ("trainval", "test"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("")
    np.save(tmp_path / "vectors.npy", np.ones((20, 3), np.float32))
    out = tmp_path / "prepared"
    assert run("prepare", "voc", "--root", str(root), "--out", str(out),
               "--word-vectors", str(tmp_path / "vectors.npy")) == 0
    assert open_prepared(out).word_vectors().shape == (20, 3)


def test_convert_pickle_command(tmp_path, capsys):
    with open(tmp_path / "w.pkl", "wb") as handle:
        pickle.dump({"cat": np.ones(3)}, handle)
    assert run("prepare", "convert-pickle", str(tmp_path / "w.pkl"), "--out", str(tmp_path / "w.npz")) == 0
    assert np.load(tmp_path / "w.npz")["names"].tolist() == ["cat"]
