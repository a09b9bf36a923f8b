"""A figure as files: PNG for the screen, and for a paper SVG and PDF at a journal column's width.

The vector versions keep their text as text (editable, searchable) and are byte-identical for the same figure:
no creation date, fixed SVG ids — a rerun that draws the same figure changes no file.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from nnlight.utils.files import write_if_changed

COLUMN_INCHES = 3.5  # one column of a two-column journal page (IEEE, Elsevier; 89 mm): a figure of one panel column
PAGE_INCHES = 7.16  # the page width across both columns (182 mm): a figure with panels side by side
WIDE_FIGURE_INCHES = 6.0  # a screen figure wider than this has panels side by side


def _render(fig: Figure, file_format: str, dpi: int) -> bytes:
    buffer = io.BytesIO()
    metadata: dict[str, str | None] = {"Software": None} if file_format == "png" else \
        {"Date": None} if file_format == "svg" else {"CreationDate": None, "Producer": None}
    fig.savefig(buffer, format=file_format, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def figure_files(fig: Figure, dpi: int = 90) -> dict[str, bytes]:
    """``{"png": ..., "svg": ..., "pdf": ...}``: the PNG as drawn, the SVG and PDF scaled to a column's width
    (or the page's, for a wide figure) with the same proportions."""
    files = {"png": _render(fig, "png", dpi)}
    width, height = fig.get_size_inches()
    paper = COLUMN_INCHES if width <= WIDE_FIGURE_INCHES else PAGE_INCHES
    fig.set_size_inches(paper, height * paper / width)
    with matplotlib.rc_context({"svg.hashsalt": "nnlight", "svg.fonttype": "none", "pdf.fonttype": 42}):
        files["svg"] = _render(fig, "svg", dpi)
        files["pdf"] = _render(fig, "pdf", dpi)
    fig.set_size_inches(width, height)
    return files


def write_figure(fig: Figure, png_path: Path, dpi: int = 90) -> list[Path]:
    """``png_path`` and its ``.svg`` and ``.pdf`` beside it, each replaced only when its content changed; the
    paths that changed."""
    changed = []
    for suffix, data in figure_files(fig, dpi).items():
        path = png_path.with_suffix(f".{suffix}")
        if write_if_changed(path, data):
            changed.append(path)
    return changed
