"""The case store: one folder per (dataset, data identifier), a few plain files per case.

Layout (``<preprocessed>/<Dataset>/<data_identifier>/``):
  ``<case>.npy``            float32 ``(c, z, y, x)`` image, uncompressed so a patch is a memory-mapped slice
  ``<case>_seg.npy``        int8/int16 ``(1, z, y, x)`` labels (-1 outside the non-zero mask)
  ``<case>_locations.npz``  sampled voxel coordinates per foreground class (for oversampling)
  ``<case>.json``           properties (geometry, crop box, shapes); written last — it marks the case complete

Every file is written under a temporary name and renamed, and the JSON comes last, so a case killed
half-way is simply not there for a reader and is redone by the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from nnlight.preprocessing.case import BORDER_THICKNESS_KEY, PreprocessedCase
from nnlight.utils.files import atomic_write, atomic_write_json, load_json


def is_complete(folder: Path, case_id: str) -> bool:
    return (folder / f"{case_id}.json").is_file()


def completed_cases(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def border_thickness_of(folder: Path, case_id: str) -> float | None:
    """The border ring (mm) a case's border-core labels were made with; None for other labels."""
    value = load_json(folder / f"{case_id}.json").get(BORDER_THICKNESS_KEY)
    return None if value is None else float(value)


def remove_leftovers(folder: Path) -> int:
    """Delete temporary files an interrupted run left behind (never read, but they waste disk)."""
    leftovers = list(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def _save_named(file: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` of named arrays (numpy's stub types the keyword arrays like its own ``allow_pickle`` flag)."""
    save: Callable[..., None] = np.savez
    save(file, **arrays)


def write_case(folder: Path, case_id: str, case: PreprocessedCase, extra_properties: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case_id}.json").unlink(missing_ok=True)  # a rewrite is incomplete until its JSON is back
    atomic_write(folder / f"{case_id}.npy", lambda f: np.save(f, np.ascontiguousarray(case.data)))
    if case.seg is not None:
        atomic_write(folder / f"{case_id}_seg.npy", lambda f: np.save(f, np.ascontiguousarray(case.seg)))
        atomic_write(folder / f"{case_id}_locations.npz", lambda f: _save_named(f, case.class_locations))
    atomic_write_json(folder / f"{case_id}.json", {**case.properties, **extra_properties})


def load_case(folder: Path, case_id: str, mmap: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Image, labels (None for unlabelled cases) and properties; memory-mapped by default (patches read lazily)."""
    mode: Literal["r"] | None = "r" if mmap else None
    properties = load_json(folder / f"{case_id}.json")
    seg_path = folder / f"{case_id}_seg.npy"
    seg = np.load(seg_path, mmap_mode=mode) if seg_path.is_file() else None
    return np.load(folder / f"{case_id}.npy", mmap_mode=mode), seg, properties


def load_arrays(folder: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped image and labels of a training case, without its properties (the patch sampler's hot path)."""
    return (np.load(folder / f"{case_id}.npy", mmap_mode="r"),
            np.load(folder / f"{case_id}_seg.npy", mmap_mode="r"))


def load_class_locations(folder: Path, case_id: str) -> dict[str, np.ndarray]:
    with np.load(folder / f"{case_id}_locations.npz") as f:
        return {k: f[k] for k in f.files}
