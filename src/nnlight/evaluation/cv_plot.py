"""``cv_results.png`` (and ``.svg``, ``.pdf``): the candidates of model selection side by side, readable from
1 to 50 of them.

One horizontal bar per candidate, best on top, under a short label (a letter and the start of its name); a key
below the bars gives every label's full name (wrapped, never cut: the figure grows with the key, by a bounded
height per line). The bar is the value selection ranks by (the cross-validation foreground mean of
``selection_metric``) with the spread of the folds' own means for Dice; the selected candidate is green and also
shows its value after the post-processing that selection determined for it, the value it is reported with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nnlight.utils.figures import write_figure

NAME_WIDTH = 62  # characters per line of a name
LINE_HEIGHT = 0.16  # inches per name line (font size 7)
FIGURE_WIDTH = 12.0  # inches; the labels take the left 30 %
LABEL_WIDTH = 40  # characters of a name shown beside its bar; the key below gives it whole


def wrap_name(name: str, width: int = NAME_WIDTH) -> list[str]:
    """A run name over lines of at most ``width`` characters, broken before each ``+<difference>`` and `` + ``
    (and, for names of an earlier nnlight, after ``[`` and ``,``; a piece longer than a line is cut into lines of
    its own)."""
    pieces = [p for p in re.split(r"(?<=[\[,])|(?= \+ )|(?<=\S)(?=\+)", name) if p]
    lines = [""]
    for piece in pieces:
        while len(piece) > width:
            if lines[-1]:
                lines.append("")
            lines[-1], piece = piece[:width], piece[width:]
            lines.append("")
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return [line for line in lines if line]


def short_label(index: int, name: str) -> str:
    """``A: <the name's first LABEL_WIDTH characters>``: a letter (``AA`` after ``Z``) the key below resolves."""
    letter = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letter = chr(ord("A") + rest) + letter
    shown = name if len(name) <= LABEL_WIDTH else name[:LABEL_WIDTH - 3] + "..."
    return f"{letter}: {shown}"


def _value(candidate: Mapping[str, Any], metric: str) -> float:
    return float(candidate["foreground_mean"].get(metric, math.nan))


def cv_figure(result: Mapping[str, Any], title: str) -> Figure:
    selected = result["selected"]
    metric, lower = selected.get("selection_metric", "Dice"), selected.get("selection_lower_is_better", False)
    order = sorted(result["candidates"].items(), key=lambda kv: (math.isnan(_value(kv[1], metric)),
                                                                 _value(kv[1], metric) * (1 if lower else -1)))
    labels = [short_label(i, name) for i, (name, _) in enumerate(order)]
    key = [f"{label.split(':')[0]}: {line}" if j == 0 else f"    {line}"
           for label, (name, _) in zip(labels, order, strict=True) for j, line in enumerate(wrap_name(name))]
    centres = [-(i + 0.5) for i in range(len(order))]
    bars_height, key_height = LINE_HEIGHT * (len(order) + 1), LINE_HEIGHT * (len(key) + 2)
    fig = Figure(figsize=(FIGURE_WIDTH, 1.1 + bars_height + key_height))
    height = fig.get_figheight()
    ax = fig.add_axes((0.3, (0.6 + key_height) / height, 0.67, bars_height / height))
    fig.text(0.02, (key_height - LINE_HEIGHT) / height, "\n".join(["Key:", *key]), fontsize=7, va="top",
             family="monospace", linespacing=1.1)
    values = [_value(c, metric) for _, c in order]
    folds = [list(c.get("fold_foreground_dice", {}).values()) if metric == "Dice" else [] for _, c in order]
    spreads = [float(np.std(f)) if len(f) > 1 else 0.0 for f in folds]
    colours = ["tab:green" if name == selected["name"] else "tab:blue" for name, _ in order]
    shown = [0.0 if math.isnan(v) else v for v in values]
    ax.barh(centres, shown, height=0.8, xerr=spreads, color=colours, capsize=3, error_kw={"alpha": 0.6})
    ax.set_yticks(centres, labels, fontsize=7)
    ax.set_ylim(-len(order) - 0.5, 0.5)
    finite = [v + s for v, s in zip(values, spreads, strict=True) if not math.isnan(v)]
    right = max(finite, default=1.0) * 1.35 if lower or max(finite, default=0) > 1 else 1.3
    ax.set_xlim(0, right)
    for y, v, s, f in zip(centres, values, spreads, folds, strict=True):
        text = "no value" if math.isnan(v) else f"{v:.3f}" + (f" ± {s:.3f} ({len(f)} folds)" if len(f) > 1 else "")
        ax.text((0 if math.isnan(v) else v + s) + right * 0.01, y, text, va="center", fontsize=7)
    post = selected.get("cv_foreground_dice_postprocessed")
    if metric == "Dice" and post is not None and post >= 0:
        y = centres[[n for n, _ in order].index(selected["name"])]
        ax.plot([post, post], [y - 0.4, y + 0.4], color="black", linewidth=2,
                label=f"selected, after post-processing: {post:.3f}")
        ax.legend(loc="lower right", fontsize=7)
    direction = "lower is better" if lower else "higher is better"
    ax.set_xlabel(f"foreground mean {metric} (cross-validation, {direction})"
                  + (", ± std over folds" if metric == "Dice" else ""), fontsize=8)
    fig.suptitle(f"{title}: {len(order)} candidate(s), {result['cases_compared']} case(s) compared; "
                 f"green = selected ({labels[[n for n, _ in order].index(selected['name'])].split(':')[0]})",
                 fontsize=9, y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig


def write_cv_plot(result: Mapping[str, Any], path: Path, title: str) -> None:
    """``path`` (PNG) and the same figure as SVG and PDF beside it, for a paper."""
    write_figure(cv_figure(result, title), path)
