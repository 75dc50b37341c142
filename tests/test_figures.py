"""The mAP-vs-FLOPs figure: valid PNG and SVG, both panels, points labelled, reproducible bytes."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import matplotlib.image
import pandas as pd
import pytest

from mld.report import figures, tables

BACKBONES = {"small": 0.1, "medium": 0.2, "large": 0.4}  # backbone -> GFLOPs of its GAP model


def figure5(with_runs: bool) -> tables.TableResult:
    """The figure5 table, with three backbones x GAP / ML-Decoder reproduced (3 seeds) or none."""
    observations = []
    for index, (backbone, flops) in enumerate(BACKBONES.items()) if with_runs else []:
        for head, gain in (("gap", 0.0), ("ml_decoder", 5.0)):
            observation = tables.Observation(f"coco-like/{backbone}/{head}", {"backbone": backbone, "head": head},
                                             ["seed0", "seed1", "seed2"], finished=["seed0", "seed1", "seed2"])
            observation.samples = {"flops_g": [flops * (1.1 if gain else 1.0)] * 3,
                                   "mAP": [60.0 + 3 * index + gain + seed for seed in (0.0, 0.5, 1.0)]}
            observations.append(observation)
    return tables.build_table(tables.reported_spec("figure5"), observations)


def svg_text(svg: bytes) -> list[str]:
    root = ElementTree.fromstring(svg)
    return [element.text for element in root.iter() if element.text and element.text.strip()]


def test_png_and_svg_are_valid_and_show_both_sides():
    figure = figures.map_vs_flops(figure5(with_runs=True), "unit test")
    png = figures.figure_bytes(figure, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = matplotlib.image.imread(io.BytesIO(png), format="png").shape
    assert width > height > 100
    svg = figures.figure_bytes(figure, "svg")
    texts = svg_text(svg)
    assert sum("axes_" in (element.get("id") or "") for element in ElementTree.fromstring(svg).iter()) >= 2
    reported_backbones = set(tables.reported_spec("figure5").reported["backbone"])
    assert set(BACKBONES) <= set(texts), "every reproduced point is labelled with its backbone"
    assert reported_backbones <= set(texts), "the paper's points are labelled too"
    assert any("Reproduced: unit test" in text for text in texts)
    assert {"GAP", "ML-Decoder"} <= set(texts)


def test_a_side_without_values_says_so():
    svg = figures.figure_bytes(figures.map_vs_flops(figure5(with_runs=False), "nothing yet"), "svg")
    assert "no values yet" in svg_text(svg)


def test_rendering_twice_gives_identical_files():
    table = figure5(with_runs=True)
    for file_format in ("svg", "png"):
        first = figures.figure_bytes(figures.map_vs_flops(table, "x"), file_format)
        assert figures.figure_bytes(figures.map_vs_flops(table, "x"), file_format) == first


def test_a_table_without_backbone_and_head_is_refused():
    spec = tables.TableSpec("t", "t", "s", ("method",), ("flops_g", "mAP"), pd.DataFrame(columns=["method"]))
    with pytest.raises(ValueError, match="backbone"):
        figures.map_vs_flops(tables.build_table(spec, []), "x")


# --- Figure 6: top-1 against measured inference speed

RESNETS = {"resnet18": 3000.0, "resnet50": 1200.0, "resnet101": 700.0}  # backbone -> GAP images/s


def figure6_tables(with_runs: bool) -> tuple[tables.TableResult, tables.TableResult]:
    """The figure6 (top-1 of runs, 2 seeds) and figure6_speed (one measurement each) tables."""
    runs, speeds = [], []
    for index, (backbone, images_per_s) in enumerate(RESNETS.items()) if with_runs else []:
        for head, gain, slowdown in (("gap", 0.0, 1.0), ("ml_decoder", 0.6, 0.9)):
            key = {"backbone": backbone, "head": head}
            run = tables.Observation(f"imagenet/{backbone}/{head}", key, ["seed0", "seed1"],
                                     finished=["seed0", "seed1"])
            run.samples = {"top1": [70.0 + 4 * index + gain, 70.5 + 4 * index + gain]}
            speed = tables.Observation(f"throughput/{backbone}/{head}", key, [""], finished=[""])
            speed.samples = {"inference_images_per_s": [images_per_s * slowdown]}
            runs.append(run)
            speeds.append(speed)
    return (tables.build_table(tables.reported_spec("figure6"), runs),
            tables.build_table(tables.reported_spec("figure6_speed"), speeds))


def test_figure6_plots_each_resnet_at_its_measured_speed():
    figure = figures.top1_vs_speed(*figure6_tables(with_runs=True), "unit test")
    (axes,) = figure.axes
    lines = {bars.get_label(): ([float(x) for x in bars.lines[0].get_xdata()],
                                [round(float(y), 6) for y in bars.lines[0].get_ydata()]) for bars in axes.containers}
    # Each head's points ordered by speed, at the measured images/s and the seed mean of top-1.
    assert lines["GAP"] == ([700.0, 1200.0, 3000.0], [78.25, 74.25, 70.25])
    assert lines["ML-Decoder"] == ([630.0, 1080.0, 2700.0], [78.85, 74.85, 70.85])
    texts = svg_text(figures.figure_bytes(figure, "svg"))
    assert set(RESNETS) <= set(texts)
    title = " ".join(axes.get_title().split())
    assert "Reproduced: unit test" in title and "resnet50 GAP 79.7, resnet50 ML-Decoder 80.3" in title


def test_figure6_without_runs_says_so_and_is_reproducible():
    empty = figures.top1_vs_speed(*figure6_tables(with_runs=False), "nothing yet")
    assert "no values yet" in svg_text(figures.figure_bytes(empty, "svg"))
    pair = figure6_tables(with_runs=True)
    first = figures.figure_bytes(figures.top1_vs_speed(*pair, "x"), "svg")
    assert figures.figure_bytes(figures.top1_vs_speed(*pair, "x"), "svg") == first
