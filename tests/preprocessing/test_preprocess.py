"""The case store: complete cases only, resumable after an interruption, identical to an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnlight.fingerprint import compute_fingerprint
from nnlight.planning import PlannerSettings, plan_experiment
from nnlight.preprocessing.preprocess import preprocess_dataset
from nnlight.preprocessing.store import completed_cases, load_case, load_class_locations
from nnlight.raw.dataset import require_raw_dataset
from nnlight.utils.files import load_json

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planned(demo_3d: Path):
    dataset = require_raw_dataset(demo_3d)
    fingerprint = compute_fingerprint(dataset, num_workers=0, sample_budget=1e5)
    return dataset, plan_experiment(fingerprint, dataset.dataset_json, PlannerSettings(), dataset.name)


def _store(folder: Path) -> dict[str, object]:
    """Everything a reader sees, file by file (JSON parsed, arrays loaded)."""
    content: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            content[path.name] = load_json(path)
        elif path.suffix == ".npy":
            content[path.name] = np.load(path).tolist()
        elif path.suffix == ".npz":
            with np.load(path) as f:
                content[path.name] = {k: f[k].tolist() for k in f.files}
    return content


def test_store_holds_every_case_with_properties(planned, tmp_path: Path) -> None:
    dataset, plans = planned
    reports = preprocess_dataset(dataset, plans, tmp_path, num_workers=0)
    assert {r.data_identifier for r in reports} == {"nnUNetPlans_2d", "nnUNetPlans_3d_fullres"}
    folder = tmp_path / dataset.name / "nnUNetPlans_3d_fullres"
    assert completed_cases(folder) == [c.case_id for c in dataset.cases]
    data, seg, props = load_case(folder, dataset.cases[0].case_id)
    assert isinstance(data, np.memmap) and data.dtype == np.float32
    assert data.shape[1:] == seg.shape[1:] == tuple(props["shape_after_resampling"])
    assert data.shape[0] == 2 and props["sitk_origin"] == [-12.5, 30.0, 4.0]
    locations = load_class_locations(folder, dataset.cases[0].case_id)
    assert set(locations) == {"1", "2"}
    for label, coords in locations.items():
        assert np.all(seg[tuple(coords.T)] == int(label))


def test_interrupted_preprocessing_resumes_to_the_same_store(planned, tmp_path: Path) -> None:
    dataset, plans = planned
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    preprocess_dataset(dataset, plans, reference, num_workers=0, configurations=["3d_fullres"])
    preprocess_dataset(dataset, plans, resumed, num_workers=0, configurations=["3d_fullres"])
    folder = resumed / dataset.name / "nnUNetPlans_3d_fullres"
    # What a kill leaves behind: one case whose arrays were being rewritten (JSON not yet back), a stray
    # temporary file, and one case not started.
    victim, missing = dataset.cases[1].case_id, dataset.cases[3].case_id
    (folder / f"{victim}.json").unlink()
    (folder / f"{victim}.npy").write_bytes(b"\x93NUMPY half-written")
    (folder / f".{victim}_seg.npy.abc.tmp").write_bytes(b"partial")
    for path in folder.glob(f"{missing}*"):
        path.unlink()
    assert victim not in completed_cases(folder) and missing not in completed_cases(folder)

    report = preprocess_dataset(dataset, plans, resumed, num_workers=0, configurations=["3d_fullres"])[0]
    assert (report.done, report.skipped) == (2, len(dataset.cases) - 2)
    assert not list(folder.glob(".*.tmp"))  # leftovers of the killed run are cleaned up
    assert _store(folder) == _store(reference / dataset.name / "nnUNetPlans_3d_fullres")


def test_readers_ignore_temporary_files(planned, tmp_path: Path) -> None:
    dataset, plans = planned
    preprocess_dataset(dataset, plans, tmp_path, num_workers=0, configurations=["2d"])
    folder = tmp_path / dataset.name / "nnUNetPlans_2d"
    (folder / ".demo_000.json.x.tmp").write_text("{")
    assert completed_cases(folder) == [c.case_id for c in dataset.cases]


def test_instance_ids_beyond_int32_keep_their_objects(tmp_path: Path) -> None:
    """A 3D instance dataset whose label files number the cells from 2**40 (uint64): fingerprinted, planned and
    preprocessed with every object kept (before: cast to int32 they wrapped, or MemoryError checking them)."""
    import SimpleITK as sitk

    from nnlight.raw.synthetic import make_instance_dataset

    folder = make_instance_dataset(tmp_path / "raw", num_cases=2, shape=(8, 32, 32), spacing=(3.0, 1.0, 1.0),
                                   cells=4, num_test_cases=0)
    for label in (folder / "labelsTr").iterdir():
        original = sitk.ReadImage(str(label))
        ids = sitk.GetArrayFromImage(original).astype(np.uint64)
        huge = sitk.GetImageFromArray(np.where(ids > 0, ids + 2 ** 40, 0).astype(np.uint64))
        huge.CopyInformation(original)
        sitk.WriteImage(huge, str(label))
        assert sitk.ReadImage(str(label)).GetPixelID() == sitk.sitkUInt64
    dataset = require_raw_dataset(folder)
    plans = plan_experiment(compute_fingerprint(dataset, num_workers=0, sample_budget=1e4), dataset.dataset_json,
                            PlannerSettings(), dataset.name)
    preprocess_dataset(dataset, plans, tmp_path / "pre", num_workers=0, configurations=["3d_fullres"])
    store = tmp_path / "pre" / dataset.name / plans.configurations["3d_fullres"].data_identifier
    for case in dataset.cases:
        _, seg, _ = load_case(store, case.case_id)
        assert set(np.unique(seg)) <= {-1, 0, 1, 2} and (seg > 0).any()  # border-core labels of the objects


def test_shards_fill_one_store_equal_to_one_run_and_a_budget_refuses_a_case_too_large(planned, tmp_path: Path
                                                                                      ) -> None:
    """Two jobs (shard 0 and 1 of 2) write the store one run writes, each its own cases; a case whose estimated
    peak exceeds preprocess.memory_gb is refused before anything is written."""
    from nnlight.fingerprint import compute_fingerprint
    from nnlight.utils.errors import UserError
    from nnlight.utils.shards import Shard

    dataset, plans = planned
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    preprocess_dataset(dataset, plans, whole, num_workers=0, configurations=["3d_fullres"])
    done = [preprocess_dataset(dataset, plans, sharded, num_workers=0, configurations=["3d_fullres"],
                               shard=Shard(k, 2))[0].done for k in (0, 1)]
    assert sum(done) == len(dataset.cases) and 0 not in done
    assert _store(sharded / dataset.name / "nnUNetPlans_3d_fullres") == \
        _store(whole / dataset.name / "nnUNetPlans_3d_fullres")

    fingerprint = compute_fingerprint(dataset, num_workers=0, sample_budget=1e5)
    with pytest.raises(UserError, match=r"3d_fullres: case .* needs about .* GiB .* more than the budget of 0\.1 GiB"):
        preprocess_dataset(dataset, plans, tmp_path / "tight", num_workers=2, configurations=["3d_fullres"],
                           fingerprint=fingerprint, memory_budget=2**30 // 10)
    assert not (tmp_path / "tight").exists()
