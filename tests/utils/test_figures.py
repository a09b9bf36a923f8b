"""Figures for a paper: SVG and PDF at a column's width, the same bytes for the same figure."""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.figure import Figure

from nnlight.utils.figures import COLUMN_INCHES, PAGE_INCHES, figure_files, write_figure


def _figure(width: float) -> Figure:
    fig = Figure(figsize=(width, 3.0))
    axes = fig.subplots()
    axes.plot([0, 1], [0, 1])
    axes.set_xlabel("epoch")
    return fig


def _svg_width_inches(svg: bytes) -> float:
    match = re.search(rb'<svg[^>]* width="([0-9.]+)pt"', svg)
    assert match is not None
    return float(match.group(1)) / 72


def test_vector_figures_take_a_columns_or_the_pages_width_and_keep_their_text() -> None:
    narrow, wide = figure_files(_figure(5.0)), figure_files(_figure(12.0))
    assert abs(_svg_width_inches(narrow["svg"]) - COLUMN_INCHES) < 0.01
    assert abs(_svg_width_inches(wide["svg"]) - PAGE_INCHES) < 0.01
    assert b"epoch" in narrow["svg"] and narrow["pdf"].startswith(b"%PDF-") and narrow["png"][:4] == b"\x89PNG"


def test_the_same_figure_gives_the_same_bytes_and_a_rerun_rewrites_nothing(tmp_path: Path) -> None:
    first, second = figure_files(_figure(5.0)), figure_files(_figure(5.0))
    assert first == second
    assert [p.name for p in write_figure(_figure(5.0), tmp_path / "plot.png")] == ["plot.png", "plot.svg", "plot.pdf"]
    assert write_figure(_figure(5.0), tmp_path / "plot.png") == []
