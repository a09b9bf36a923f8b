"""progress.png: titled panels, whole epochs on the axis, a legend that hides no curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nnlight.training import progress
from nnlight.training.progress import ProgressPlot


def test_progress_plot_has_titles_integer_epochs_and_a_legend_outside_the_curves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list[Figure] = []
    monkeypatch.setattr(progress, "Figure", lambda **kw: figures.append(Figure(**kw)) or figures[-1])
    plot = ProgressPlot(tmp_path / "progress.png")
    plot.path = plot.filename
    plot.history = {"train_loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.85], "pseudo_dice": [0.1, 0.3, 0.4],
                    "pseudo_dice_ema": [0.1, 0.12, 0.15], "lr": [0.01, 0.007, 0.004], "epoch_seconds": [3, 2, 2]}
    plot.draw()
    assert matplotlib.image.imread(tmp_path / "progress.png").shape[:2] == (880, 800)
    ax_loss, ax_lr, ax_time = figures[0].axes[:3]
    assert all(ax.get_title() for ax in (ax_loss, ax_lr, ax_time))
    FigureCanvasAgg(figures[0]).draw()
    for ax in (ax_loss, ax_lr, ax_time):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    legend = ax_loss.get_legend()
    assert len(legend.get_texts()) == 4  # losses and Dice in one legend
    renderer = figures[0].canvas.get_renderer()  # type: ignore[attr-defined]
    assert legend.get_window_extent(renderer).y1 <= ax_loss.get_window_extent(renderer).y0  # below the axes
