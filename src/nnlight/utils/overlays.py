"""Pictures of labels over images: a dataset's labels (``nnlight-plot-overlays``), and image channels | label |
prediction side by side for the validation cases of a run and for the images logged to W&B/TensorBoard during
training.

Intensities are scaled between the shown image's 0.5th and 99.5th percentiles; each label value keeps its own
colour (tab10, by value) at half opacity, so a label and its prediction are drawn in the same colour, and a legend
above the panels names each colour.
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ALPHA = 0.5
PANEL_PIXELS = 256  # small images are enlarged (nearest neighbour, whole factors) to about this many pixels
GAP = 2  # pixels between panels
TITLE_BAND = 44  # pixels above the panels: the title and the column names
LEGEND_BAND = 18  # pixels more for the colour legend


def label_colour(value: int) -> tuple[float, float, float]:
    """The colour of a label value (the same in every picture)."""
    red, green, blue, _ = matplotlib.colormaps["tab10"]((int(value) - 1) % 10)
    return float(red), float(green), float(blue)


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB ``(y, x, 3)`` uint8: a grayscale ``(y, x)`` image with the ``(y, x)`` label map coloured over it."""
    low, high = np.percentile(image, [0.5, 99.5])
    gray = np.clip((image - low) / max(high - low, 1e-8), 0, 1)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    for value in np.unique(labels):
        if value > 0:
            mask = labels == value
            rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * np.array(label_colour(int(value)))
    return (rgb * 255).round().astype(np.uint8)


def foreground_slices(*label_maps: np.ndarray, count: int = 3) -> list[int]:
    """Up to ``count`` slices (first axis) spread over the foreground of the first ``(z, y, x)`` map that has any
    (the reference before the prediction: the object is shown, not only stray predictions); the middle slices
    when none has."""
    depth = label_maps[0].shape[0]
    occupied = next((found for m in label_maps if (found := np.flatnonzero((m > 0).reshape(depth, -1).any(1))).size),
                    np.arange(depth))
    positions = np.linspace(0, len(occupied) - 1, count + 2)[1:-1] if len(occupied) > count else \
        np.arange(len(occupied))
    return sorted({int(occupied[round(p)]) for p in positions})


def panel_scale(shape: tuple[int, ...]) -> int:
    """The whole enlargement factor of a ``(y, x)`` slice (1 for slices of PANEL_PIXELS or more)."""
    return max(1, PANEL_PIXELS // max(shape))


def comparison(channels: list[np.ndarray], label_maps: list[np.ndarray], slices: list[int], labels_over: int = 0
               ) -> np.ndarray:
    """RGB grid for ``(z, y, x)`` arrays: one row per slice, columns: each image channel, then each label map
    (label, prediction) drawn over ``channels[labels_over]``."""
    scale = panel_scale(label_maps[0].shape[1:])
    rows = []
    for z in slices:
        background = channels[labels_over][z]
        panels = [*(overlay(channel[z], np.zeros_like(label_maps[0][z])) for channel in channels),
                  *(overlay(background, labels[z]) for labels in label_maps)]
        panels = [p.repeat(scale, 0).repeat(scale, 1) for p in panels]
        gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
        rows.append(np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1))
    gap = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)


def titled_png(grid: np.ndarray, title: str, columns: tuple[str, ...] = ("image", "label", "prediction"),
               legend: dict[str, int] | None = None) -> bytes:
    """The grid as PNG bytes, exactly its pixels wide; above it the title, the colour legend (label name -> value)
    and the column names."""
    height, width = grid.shape[:2]
    band = TITLE_BAND + (LEGEND_BAND if legend else 0)
    total = height + band
    figure = Figure(figsize=(width / 100, total / 100), dpi=100, facecolor="white")
    FigureCanvasAgg(figure)
    figure.figimage(grid, xo=0, yo=0, origin="upper")
    figure.text(4 / width, 1 - 12 / total, title, fontsize=9, va="center", ha="left")
    if legend:
        x = 4 / width
        for name, value in legend.items():
            figure.text(x, 1 - 30 / total, "\u25a0", color=label_colour(value), fontsize=11, va="center")
            text = figure.text(x + 13 / width, 1 - 30 / total, f"{name} ({value})", fontsize=8, va="center")
            x += (13 + text.get_window_extent().width + 10) / width
    for i, name in enumerate(columns):
        figure.text((i + 0.5) / len(columns), 1 - (band - 11) / total, name, fontsize=8, va="center",
                    ha="center")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def mean_dice(metrics: dict[str, dict[str, float]]) -> float:
    """A case's Dice averaged over its labels (labels absent from both reference and prediction left out)."""
    values = [m["Dice"] for m in metrics.values() if not math.isnan(m["Dice"])]
    return float(np.mean(values)) if values else float("nan")
