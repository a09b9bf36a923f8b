"""``cv_results.png`` (and ``.svg``, ``.pdf``): the candidates of model selection side by side, readable from
1 to 50 of them.

One horizontal bar per candidate, best on top, its full name beside it (wrapped, never cut: the figure grows with
the names, by a bounded height per line). The bar is the value selection ranks by (the cross-validation foreground
mean of ``selection_metric``) with the spread of the folds' own means for Dice; the selected candidate is green and
also shows its value after the post-processing that selection determined for it, the value it is reported with.
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
FIGURE_WIDTH = 12.0  # inches; the names take the left 40 %


def wrap_name(name: str, width: int = NAME_WIDTH) -> list[str]:
    """A run name over lines of at most ``width`` characters, broken after ``[`` and ``,`` and before `` + ``
    (a piece longer than a line is cut into lines of its own)."""
    pieces = [p for p in re.split(r"(?<=[\[,])|(?= \+ )", name) if p]
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


def _value(candidate: Mapping[str, Any], metric: str) -> float:
    return float(candidate["foreground_mean"].get(metric, math.nan))


def cv_figure(result: Mapping[str, Any], title: str) -> Figure:
    selected = result["selected"]
    metric, lower = selected.get("selection_metric", "Dice"), selected.get("selection_lower_is_better", False)
    order = sorted(result["candidates"].items(), key=lambda kv: (math.isnan(_value(kv[1], metric)),
                                                                 _value(kv[1], metric) * (1 if lower else -1)))
    names = [wrap_name(name) for name, _ in order]
    heights = [max(len(lines), 1) for lines in names]
    # each candidate gets as many lines of height as its name; the best at the top
    centres, top = [], 0.0
    for h in heights:
        centres.append(-(top + h / 2))
        top += h
    fig = Figure(figsize=(FIGURE_WIDTH, 1.1 + LINE_HEIGHT * (top + len(order))))
    ax = fig.add_axes((0.42, 0.6 / fig.get_figheight(), 0.55, 1 - 1.0 / fig.get_figheight()))
    values = [_value(c, metric) for _, c in order]
    folds = [list(c.get("fold_foreground_dice", {}).values()) if metric == "Dice" else [] for _, c in order]
    spreads = [float(np.std(f)) if len(f) > 1 else 0.0 for f in folds]
    colours = ["tab:green" if name == selected["name"] else "tab:blue" for name, _ in order]
    shown = [0.0 if math.isnan(v) else v for v in values]
    ax.barh(centres, shown, height=[0.8 * h for h in heights], xerr=spreads, color=colours, capsize=3,
            error_kw={"alpha": 0.6})
    ax.set_yticks(centres, ["\n".join(lines) for lines in names], fontsize=7, linespacing=1.1)
    ax.set_ylim(-top - 0.5, 0.5)
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
                 f"green = selected ({selected['name'][:60]}{'...' if len(selected['name']) > 60 else ''})",
                 fontsize=9, y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig


def write_cv_plot(result: Mapping[str, Any], path: Path, title: str) -> None:
    """``path`` (PNG) and the same figure as SVG and PDF beside it, for a paper."""
    write_figure(cv_figure(result, title), path)
