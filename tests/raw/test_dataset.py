"""A raw dataset's files: what is named like an image but is no file is said as what it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnlight.raw.dataset import open_raw_dataset
from nnlight.raw.synthetic import make_synthetic_dataset


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_folder_a_pipe_or_a_broken_link_named_like_an_image_is_named_for_what_it_is(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, 900, "Demo", num_cases=4, shape=(8, 12, 10), num_test_cases=0)
    images, labels = folder / "imagesTr", folder / "labelsTr"
    (images / "demo_000_0001.nii.gz").unlink()
    os.mkfifo(images / "demo_000_0001.nii.gz")  # reading it would wait forever
    (images / "demo_001_0000.nii.gz").unlink()
    (images / "demo_001_0000.nii.gz").mkdir()
    (images / "demo_002_0001.nii.gz").unlink()
    os.symlink("demo_002_0001.nii.gz", images / "demo_002_0001.nii.gz")  # a link to itself: a loop
    (labels / "demo_003.nii.gz").unlink()
    os.symlink(tmp_path / "nowhere.nii.gz", labels / "demo_003.nii.gz")
    _, problems = open_raw_dataset(folder)
    text = "\n".join(problems)
    assert f"{images / 'demo_000_0001.nii.gz'}: a named pipe (FIFO), not an image file" in text
    assert f"{images / 'demo_001_0000.nii.gz'}: a folder, not an image file" in text
    assert f"{images / 'demo_002_0001.nii.gz'}: a symbolic link that leads nowhere" in text
    assert f"{labels / 'demo_003.nii.gz'}: a symbolic link that leads nowhere" in text
