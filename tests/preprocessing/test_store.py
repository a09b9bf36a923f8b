"""The case store's formats: the compressed one holds exactly what the memory-mapped one holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnlight.preprocessing.case import PreprocessedCase
from nnlight.preprocessing.preprocess import check_disk
from nnlight.preprocessing.store import (
    STORE_FORMATS,
    blosc2_layout,
    completed_cases,
    format_of_case,
    load_arrays,
    load_case,
    remove_leftovers,
    write_case,
)
from nnlight.utils.errors import UserError


def _case(rng: np.random.Generator) -> PreprocessedCase:
    data = rng.normal(size=(2, 20, 40, 36)).astype(np.float32)
    seg = rng.integers(-1, 3, size=(1, 20, 40, 36)).astype(np.int8)
    return PreprocessedCase(data, seg, {"shape_after_resampling": [20, 40, 36]}, {"1": np.zeros((0, 4), np.int32)})


def test_a_compressed_case_reads_back_exactly_whole_and_in_patches(tmp_path: Path) -> None:
    pytest.importorskip("blosc2", reason='pip install "nnlight[compressed]"')
    case = _case(np.random.default_rng(0))
    write_case(tmp_path, "a", case, {"case_id": "a"}, STORE_FORMATS["blosc2"], (8, 16, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.b2nd", "a.json", "a_locations.npz", "a_seg.b2nd"]
    data, seg, properties = load_case(tmp_path, "a")
    assert np.array_equal(data, case.data) and np.array_equal(seg, case.seg) and properties["case_id"] == "a"
    image, labels = load_arrays(tmp_path, "a")
    assert image.shape == case.data.shape and labels.dtype == np.int8
    assert np.array_equal(image[:, 3:11, 30:40, 0:16], case.data[:, 3:11, 30:40, 0:16])
    assert np.array_equal(labels[:, 19:20, 0:40, 35:36], case.seg[:, 19:20, 0:40, 35:36])


def test_a_case_written_in_the_other_format_replaces_the_old_files(tmp_path: Path) -> None:
    pytest.importorskip("blosc2", reason='pip install "nnlight[compressed]"')
    case = _case(np.random.default_rng(1))
    write_case(tmp_path, "a", case, {}, STORE_FORMATS["npy"])
    assert format_of_case(tmp_path, "a") is STORE_FORMATS["npy"]
    write_case(tmp_path, "a", case, {}, STORE_FORMATS["blosc2"], (8, 16, 16))
    assert format_of_case(tmp_path, "a") is STORE_FORMATS["blosc2"]
    assert not list(tmp_path.glob("*.npy")) and completed_cases(tmp_path) == ["a"]
    (tmp_path / ".a.b2nd.123.abcd.tmp.b2nd").write_bytes(b"half")  # what a killed write leaves
    assert remove_leftovers(tmp_path) == 1


def test_chunks_are_a_patch_per_channel_and_blocks_fit_the_cache() -> None:
    assert blosc2_layout((4, 300, 512, 512), (48, 128, 128), 4)[0] == (1, 48, 128, 128)
    chunks, blocks = blosc2_layout((4, 300, 512, 512), (64, 192, 160), 4)  # 7.5 MiB: halved to the 6 MiB cap
    assert chunks == (1, 64, 96, 160) and np.prod(chunks) * 4 <= 6 * 2**20
    assert np.prod(blocks) * 4 <= 128 * 2**10 and all(b <= c for b, c in zip(blocks, chunks, strict=True))
    assert blosc2_layout((3, 1, 584, 565), (640, 640), 4)[0] == (1, 1, 584, 565)  # a 2d patch on a 2D case


def test_an_uncompressed_store_larger_than_the_free_disk_is_refused_with_the_compressed_one_proposed(
        tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"preprocess.store=blosc2 keeps it compressed"):
        check_disk(10**18, tmp_path / "not" / "there", "npy")
    check_disk(10**18, tmp_path, "blosc2")  # compressed: its size is not known before, nothing refused
    check_disk(1, tmp_path, "npy")
