"""Cross-validation splits: nnU-Net's ``KFold(5, shuffle=True, random_state=12345)`` on sorted case ids.

Written once to ``splits_final.json`` (nnU-Net's name and format) and reused, so a fold always holds the
same cases; a user-supplied file there wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, load_json

SPLITS_FILE = "splits_final.json"
SPLIT_SEED = 12345
DEFAULT_FOLDS = 5

Split = dict[str, list[str]]


def kfold_splits(case_ids: Sequence[str], n_splits: int = DEFAULT_FOLDS, seed: int = SPLIT_SEED) -> list[Split]:
    """Same folds as scikit-learn's ``KFold(n_splits, shuffle=True, random_state=seed)`` on the sorted ids."""
    ids = sorted(case_ids)
    if len(ids) < n_splits:
        raise UserError(f"{len(ids)} training case(s) cannot be split into {n_splits} folds; use fewer folds "
                        "or data.fold=all")
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, len(ids) // n_splits)
    sizes[: len(ids) % n_splits] += 1
    splits, start = [], 0
    for size in sizes:
        val = set(order[start:start + size].tolist())
        start += size
        splits.append({"train": [ids[i] for i in range(len(ids)) if i not in val],
                       "val": [ids[i] for i in range(len(ids)) if i in val]})
    return splits


def load_or_create_splits(dataset_folder: Path, case_ids: Sequence[str], n_splits: int = DEFAULT_FOLDS,
                          write: bool = True) -> list[Split]:
    """Reuse ``<dataset_folder>/splits_final.json`` if present (checked against the cases), else write it
    (``write=False``: only compute it, for a check that must leave no trace)."""
    path = dataset_folder / SPLITS_FILE
    if not path.is_file():
        splits = kfold_splits(case_ids, n_splits)
        if write:
            atomic_write_json(path, splits)
        return splits
    try:
        splits = load_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); fix it or delete it to regenerate the splits") from None
    known = set(case_ids)
    for k, split in enumerate(splits):
        unknown = sorted({*split.get("train", []), *split.get("val", [])} - known)
        if unknown:
            raise UserError(f"{path}: fold {k} names case(s) not in the preprocessed data: {', '.join(unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''}; fix the file or delete it to regenerate it")
    return splits


def fold_count(dataset_folder: Path) -> int:
    """How many folds the dataset's cross-validation has: the splits file's, or nnU-Net's 5 before one exists."""
    path = dataset_folder / SPLITS_FILE
    if not path.is_file():
        return DEFAULT_FOLDS
    try:
        return len(load_json(path))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); fix it or delete it to regenerate the splits") from None


def fold_cases(splits: list[Split], fold: int | Literal["all"], case_ids: Sequence[str]) -> Split:
    """Training and validation case ids of ``fold``; ``"all"`` trains (and validates) on every case."""
    if fold == "all":
        return {"train": sorted(case_ids), "val": sorted(case_ids)}
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise UserError(f"data.fold={fold!r} is out of range: the splits file has folds 0..{len(splits) - 1} "
                        "(or use data.fold=all)")
    return splits[fold]
