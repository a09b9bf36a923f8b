from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnlight.data.splits import fold_cases, kfold_splits, load_or_create_splits
from nnlight.utils.errors import UserError

IDS = [f"case_{i:02d}" for i in range(12)]
# scikit-learn 1.x KFold(5, shuffle=True, random_state=12345).split(sorted IDS), validation folds (computed once
# with scikit-learn in a separate environment; nnlight does not depend on it).
SKLEARN_VAL = [["case_00", "case_03", "case_08"], ["case_07", "case_10", "case_11"], ["case_06", "case_09"],
               ["case_01", "case_04"], ["case_02", "case_05"]]


def test_folds_match_sklearn_kfold_on_sorted_ids() -> None:
    splits = kfold_splits(list(reversed(IDS)))  # input order must not matter
    assert [s["val"] for s in splits] == SKLEARN_VAL
    for s in splits:
        assert sorted(s["train"] + s["val"]) == IDS and not set(s["train"]) & set(s["val"])


def test_splits_file_is_written_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create_splits(tmp_path, IDS)
    custom = [{"train": IDS[:6], "val": IDS[6:]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(custom))
    assert load_or_create_splits(tmp_path, IDS) == custom  # a user-supplied file wins
    assert first == kfold_splits(IDS)


def test_fold_selection_and_errors(tmp_path: Path) -> None:
    splits = load_or_create_splits(tmp_path, IDS)
    assert fold_cases(splits, 2, IDS)["val"] == SKLEARN_VAL[2]
    assert fold_cases(splits, "all", IDS) == {"train": IDS, "val": IDS}
    with pytest.raises(UserError, match="out of range"):
        fold_cases(splits, 5, IDS)
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["ghost"], "val": IDS}]))
    with pytest.raises(UserError, match="ghost"):
        load_or_create_splits(tmp_path, IDS)
    with pytest.raises(UserError, match="cannot be split"):
        kfold_splits(IDS[:3])
