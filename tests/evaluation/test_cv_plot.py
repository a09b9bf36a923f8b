"""cv_results.png stays readable from 1 to 50 candidates: short labels beside the bars, a key with the full names,
bounded size, the post-processed value."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.image import imread
from matplotlib.text import Text

from nnlight.evaluation.cv_plot import LABEL_WIDTH, LINE_HEIGHT, NAME_WIDTH, cv_figure, wrap_name, write_cv_plot


def _result(count: int) -> dict:
    names = [f"3d_fullres/baseline+augmentation-da5+loss-dice_topk10+optimizer-adamw+optimizer.lr-"
             f"{0.001 * (i + 1):.3f}+trainer.max_epochs-250 + 2d/baseline+seed-{i}" for i in range(count)]
    candidates = {n: {"foreground_mean": {"Dice": 0.5 + 0.01 * i},
                      "fold_foreground_dice": {"0": 0.49 + 0.01 * i, "1": 0.51 + 0.01 * i}}
                  for i, n in enumerate(names)}
    return {"selected": {"name": names[-1], "selection_metric": "Dice", "selection_lower_is_better": False,
                         "cv_foreground_dice": 0.5 + 0.01 * (count - 1),
                         "cv_foreground_dice_postprocessed": 0.52 + 0.01 * (count - 1)},
            "cases_compared": 20, "candidates": candidates}


def _figure_text(result: dict) -> str:
    figure = cv_figure(result, "Dataset900_Demo")
    return "".join(t.get_text() for t in figure.findobj(Text)).replace("\n", "").replace(" ", "")


@pytest.mark.parametrize("count", [1, 3, 30])
def test_every_candidate_name_is_in_the_figure_and_its_size_stays_bounded(tmp_path: Path, count: int) -> None:
    result = _result(count)
    text = _figure_text(result)
    assert all(name.replace(" ", "") in text for name in result["candidates"])  # full names in the key, never cut
    ticks = [t.get_text() for t in cv_figure(result, "D").axes[0].get_yticklabels()]
    assert len(ticks) == count and all(len(t) <= LABEL_WIDTH + 4 for t in ticks) and ticks[0].startswith("A: ")
    write_cv_plot(result, tmp_path / "cv_results.png", "Dataset900_Demo")
    height, width, _ = imread(tmp_path / "cv_results.png").shape
    lines = sum(len(wrap_name(n)) + 1 for n in result["candidates"]) + 3  # a bar and a key entry each; key title
    assert width == 1080 and height <= 90 * (1.1 + LINE_HEIGHT * lines) + 1
    assert height <= 90 * 0.35 * 4 * count + 200  # ~0.35 inch per line: 30 long names fit in ~3,900 px at most


def test_the_selected_candidate_shows_its_value_after_post_processing() -> None:
    text = _figure_text(_result(3))
    assert "selected,afterpost-processing:0.540" in text and "0.520±0.010(2folds)" in text


def test_a_name_is_wrapped_at_its_separators_and_a_long_piece_is_cut() -> None:
    lines = wrap_name("baseline[" + "x" * 100 + ",loss=dice]")
    assert all(len(line) <= NAME_WIDTH for line in lines) and "".join(lines) == "baseline[" + "x" * 100 + ",loss=dice]"
