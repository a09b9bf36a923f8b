"""Atomic writes: a reader sees the old file or the new one, never a mix, also with concurrent writers or a full
disk; JSON files are read without trusting them."""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnlight.inference.export import write_segmentation
from nnlight.raw.io import Geometry
from nnlight.utils import files
from nnlight.utils.files import JsonFileError, WriteFailed, atomic_write, atomic_write_json, load_json
from tests.conftest import small_disk


def test_concurrent_writers_of_one_segmentation_never_corrupt_it(tmp_path: Path) -> None:
    """Each writer uses its own temporary name (process id + random), so the last rename wins whole."""
    geometry = Geometry((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), False)
    target = tmp_path / "case.nii.gz"
    segmentations = [np.full((8, 16, 16), value, np.uint8) for value in range(1, 9)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: write_segmentation(s, target, geometry), segmentations * 4))
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))
    assert written.shape == (8, 16, 16) and len(np.unique(written)) == 1 and 1 <= written.flat[0] <= 8
    assert [p.name for p in tmp_path.iterdir()] == ["case.nii.gz"]  # no temporary file left behind


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on a 64 KiB tmpfs; where none can be mounted, every file this process writes is cut at 8 KiB for the
    duration (RLIMIT_FSIZE: what a full disk does to a write, for numpy's and SimpleITK's C writers too)."""
    with small_disk(tmp_path / "disk", "64k") as resize:
        if resize is not None:
            yield tmp_path / "disk"
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        monkeypatch.setattr(files, "free_bytes", lambda folder: 0)  # as the full disk would report
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))
        try:
            yield tmp_path / "disk"
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("writer", ["json", "torch", "numpy", "segmentation"])
def test_a_write_onto_a_full_disk_fails_naming_the_file_and_keeps_the_old_one(full_disk: Path, writer: str) -> None:
    """Every writer nnlight uses (JSON, checkpoints, the case store, SimpleITK images): the error names the file and
    says the disk is full, no temporary file is left, and the file written before is untouched."""
    target = full_disk / f"out.{'nii.gz' if writer == 'segmentation' else writer}"
    rng = np.random.default_rng(0)
    big = rng.integers(0, 200, (40, 64, 64)).astype(np.uint8)  # incompressible: larger than the disk
    geometry = Geometry((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), False)
    write = {
        "json": lambda data: atomic_write_json(target, {"values": data.tolist()}),
        "torch": lambda data: atomic_write(target, lambda f: torch.save({"w": torch.from_numpy(data)}, f)),
        "numpy": lambda data: atomic_write(target, lambda f: np.save(f, data)),
        "segmentation": lambda data: write_segmentation(data, target, geometry),
    }[writer]
    write(big[:1, :2, :2])
    before = target.read_bytes()
    with pytest.raises(WriteFailed, match=rf"{target.name}: could not be written: no space left on the device"):
        write(big)
    assert target.read_bytes() == before and [p.name for p in full_disk.iterdir()] == [target.name]


def test_json_files_are_bounded_in_size_and_depth(tmp_path: Path) -> None:
    deep = tmp_path / "dataset.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(JsonFileError, match="nested"):
        load_json(deep)
    deep.write_text("[" * 70 + "]" * 70)
    with pytest.raises(JsonFileError, match="nested more than 64 levels"):
        load_json(deep)
    deep.write_text('{"a": ')
    with pytest.raises(JsonFileError, match="is not valid JSON"):
        load_json(deep)
