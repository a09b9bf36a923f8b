"""Model selection's candidates: debug runs and fold_all never take part."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnlight.evaluation.selection import select_best
from nnlight.utils.errors import UserError
from nnlight.utils.folders import ModelFolder


def test_debug_profiles_are_recognised_by_the_run_name() -> None:
    assert ModelFolder(Path("2d/baseline[debug=limit]")).is_debug
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
