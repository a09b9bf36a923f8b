"""Model selection's candidates: debug runs and fold_all never take part."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnlight.evaluation.selection import select_best
from nnlight.utils.errors import UserError
from nnlight.utils.folders import ModelFolder


def test_debug_profiles_are_recognised_by_the_run_name() -> None:
    assert ModelFolder(Path("2d/baseline+debug-limit")).is_debug
    assert ModelFolder(Path("2d/segresnet+data.fold-1+debug-fast_dev_run")).is_debug
    assert not ModelFolder(Path("2d/baseline+trainer.max_epochs-2")).is_debug
    assert ModelFolder(Path("2d/baseline[debug=limit]")).is_debug  # named by an earlier nnlight
    assert ModelFolder(Path("2d/baseline[data.fold=1,debug=fast_dev_run]")).is_debug
    assert not ModelFolder(Path("2d/baseline[trainer.max_epochs=2]")).is_debug
    assert not ModelFolder(Path("2d/nnUNetTrainerDebugLike")).is_debug


def test_only_debug_runs_and_fold_all_give_no_candidate(tmp_path: Path) -> None:
    for run in ("2d/baseline[debug=limit]/fold_0", "2d/baseline/fold_all"):
        validation = tmp_path / "Dataset900_Demo" / run / "validation"
        validation.mkdir(parents=True)
        (validation / "summary.json").write_text("{}")
        (validation.parent / "plan.json").write_text("{}")
    with pytest.raises(UserError, match="debug runs and search trials do not count"):
        select_best(tmp_path / "Dataset900_Demo", tmp_path, {"background": 0, "a": 1}, ".nii.gz")


def test_the_selection_metric_ranks_errors_and_distances_lowest_first_and_nan_last() -> None:
    from nnlight.evaluation.selection import ranking_value

    low, high, missing = ({"foreground_mean": {"ARE": v}} for v in (0.1, 0.4, float("nan")))
    by_error = sorted([high, missing, low], key=lambda s: -ranking_value(s, "ARE", lower_is_better=True))
    assert by_error == [low, high, missing]
    by_score = sorted([low, missing, high], key=lambda s: -ranking_value(s, "ARE"))
    assert by_score == [high, low, missing]
