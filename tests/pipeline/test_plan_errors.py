"""Bad input ends with one readable message naming the file, exit code 2, and nothing written."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.raw.synthetic import make_synthetic_dataset
from tests.conftest import Roots, file_size_limit, run_script, small_disk

pytestmark = pytest.mark.cli

CASE = "demo_000"


def _edit_json(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / "dataset.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _rewrite_image(path: Path, change: Callable[[np.ndarray], np.ndarray], spacing: tuple | None = None) -> None:
    image = sitk.ReadImage(str(path))
    new = sitk.GetImageFromArray(change(sitk.GetArrayFromImage(image)))
    new.CopyInformation(image) if new.GetSize() == image.GetSize() else new.SetSpacing(image.GetSpacing())
    if spacing is not None:
        new.SetSpacing(spacing)
    sitk.WriteImage(new, str(path))


def _missing_channel(f: Path) -> str:
    (f / "imagesTr" / f"{CASE}_0001.nii.gz").unlink()
    return f"{CASE}_0001.nii.gz"


def _missing_label(f: Path) -> str:
    (f / "labelsTr" / f"{CASE}.nii.gz").unlink()
    return f"labelsTr/{CASE}.nii.gz"


def _shape_mismatch(f: Path) -> str:
    _rewrite_image(f / "labelsTr" / f"{CASE}.nii.gz", lambda a: a[:, :-2])
    return f"labelsTr/{CASE}.nii.gz"


def _geometry_mismatch(f: Path) -> str:
    _rewrite_image(f / "labelsTr" / f"{CASE}.nii.gz", lambda a: a, spacing=(1.0, 1.0, 3.0))
    return f"labelsTr/{CASE}.nii.gz"


def _undeclared_label(f: Path) -> str:
    def add_label(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[a.shape[0] // 2, a.shape[1] // 2, a.shape[2] // 2] = 7
        return a
    _rewrite_image(f / "labelsTr" / f"{CASE}.nii.gz", add_label)
    return f"labelsTr/{CASE}.nii.gz"


def _labels_not_consecutive(f: Path) -> str:
    _edit_json(f, lambda d: d["labels"].update({"dark_blob": 3}))
    return "dataset.json"


def _set_voxel(path: Path, index: tuple[int, int, int], value: float, dtype: type = np.float32) -> None:
    def change(a: np.ndarray) -> np.ndarray:
        a = a.astype(dtype)
        a[index] = value
        return a
    _rewrite_image(path, change)


def _nan_in_image(f: Path, case: str = CASE) -> str:
    _set_voxel(f / "imagesTr" / f"{case}_0000.nrrd", (4, 8, 3), np.nan)
    return f"{case}_0000.nrrd"


def _nan_in_nifti(f: Path) -> str:
    """SimpleITK reads NaN and Inf NIfTI voxels as 0 without a word: the file's own data is checked."""
    _set_voxel(f / "imagesTr" / f"{CASE}_0001.nii.gz", (2, 3, 4), np.nan)
    return f"{CASE}_0001.nii.gz: contains NaN or Inf voxels"


def _inf_in_float64_nifti(f: Path) -> str:
    _set_voxel(f / "imagesTr" / f"{CASE}_0000.nii.gz", (-1, -1, -1), -np.inf, np.float64)
    return f"{CASE}_0000.nii.gz: contains NaN or Inf voxels"


def _deeply_nested_dataset_json(f: Path) -> str:
    (f / "dataset.json").write_text('{"channel_names": ' + "[" * 50_000 + "]" * 50_000 + "}")
    return "dataset.json: nested too deeply"


def _extreme_anisotropy(f: Path) -> str:
    """1e6:1 spacing used to crash planning (a division by zero) after plans and cases were written."""
    for path in [*(f / "imagesTr").glob("*.nii.gz"), *(f / "labelsTr").glob("*.nii.gz")]:
        _rewrite_image(path, lambda a: a, spacing=(1.0, 1.0, 1e6))
    return "is so anisotropic (1e+06:1)"


def _num_training_wrong(f: Path) -> str:
    _edit_json(f, lambda d: d.update({"numTraining": 99}))
    return "numTraining"


def _file_ending_wrong(f: Path) -> str:
    (f / "imagesTr" / f"{CASE}_0000.nii.gz").rename(f / "imagesTr" / f"{CASE}_0000.nrrd")
    return f"{CASE}_0000.nrrd"


def _missing_json_key(f: Path) -> str:
    _edit_json(f, lambda d: d.pop("file_ending"))
    return "file_ending"


def _wrong_json_type(f: Path) -> str:
    _edit_json(f, lambda d: d.update({"numTraining": "five"}))
    return "numTraining"


def _corrupt_gzip(f: Path) -> str:
    path = f / "imagesTr" / f"{CASE}_0001.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti at all")[:12])
    return f"{CASE}_0001.nii.gz"


def _truncated_image(f: Path) -> str:
    """A copy cut short: SimpleITK alone reads the missing half as zeros."""
    path = f / "imagesTr" / f"{CASE}_0000.nii.gz"
    path.write_bytes(path.read_bytes()[:-400])
    return f"{CASE}_0000.nii.gz: the compressed file is truncated or corrupt"


def _truncated_uncompressed(f: Path) -> str:
    image = f / "imagesTr" / f"{CASE}_0000.nii.gz"
    data = gzip.decompress(image.read_bytes())
    image.write_bytes(gzip.compress(data[: len(data) - 1000]))  # a whole gzip stream holding a short NIfTI
    return f"{CASE}_0000.nii.gz: the file is truncated"


def _image_4d(f: Path) -> str:
    path = f / "imagesTr" / f"{CASE}_0000.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([array, array])), str(path))
    return f"{CASE}_0000.nii.gz"


def _empty_labels_tr(f: Path) -> str:
    for p in (f / "labelsTr").iterdir():
        p.unlink()
    return "labelsTr"


FAILURES = [_missing_channel, _missing_label, _shape_mismatch, _geometry_mismatch, _undeclared_label,
            _labels_not_consecutive, _num_training_wrong, _file_ending_wrong, _missing_json_key,
            _wrong_json_type, _corrupt_gzip, _truncated_image, _truncated_uncompressed, _image_4d, _empty_labels_tr,
            _nan_in_nifti, _inf_in_float64_nifti, _deeply_nested_dataset_json, _extreme_anisotropy]


def _plan_in_process(dataset: str, roots: Roots) -> str:
    """plan.py's stage run in this process (the entry point's exit code and format are tested separately)."""
    from hydra import compose, initialize_config_dir

    from nnlight.pipeline.plan import parse, run
    from nnlight.utils.errors import UserError
    from tests.conftest import REPO

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("plan", overrides=[f"dataset={dataset}", "num_workers=0", f"paths.raw={roots.raw}",
                                         f"paths.preprocessed={roots.preprocessed}", f"paths.results={roots.results}"])
    with pytest.raises(UserError) as error:
        run(parse(cfg))
    return str(error.value)


@pytest.mark.parametrize("break_dataset", FAILURES, ids=lambda f: f.__name__.strip("_"))
def test_broken_dataset_is_reported(break_dataset: Callable[[Path], str], demo_3d: Path, roots: Roots) -> None:
    folder = shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    expected_in_message = break_dataset(folder)
    assert expected_in_message in _plan_in_process(folder.name, roots)
    assert roots.files_under_outputs() == []


def test_a_broken_dataset_ends_plan_py_with_exit_code_2(demo_3d: Path, roots: Roots) -> None:
    folder = shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    expected_in_message = _truncated_image(folder)
    result = run_script("plan.py", f"dataset={folder.name}", "num_workers=0", roots=roots)
    assert result.returncode == 2, result.stderr
    assert expected_in_message in result.stderr and "nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert roots.files_under_outputs() == []


@pytest.fixture(scope="module")
def demo_nrrd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("rawnrrd"), 902, "Nrrd", num_cases=3, shape=(12, 20, 16),
                                  file_ending=".nrrd")


def test_nan_in_image_is_reported(demo_nrrd: Path, roots: Roots) -> None:
    folder = shutil.copytree(demo_nrrd, roots.raw / demo_nrrd.name)
    name = _nan_in_image(folder, "nrrd_001")
    result = run_script("plan.py", f"dataset={folder.name}", "num_workers=0", roots=roots)
    assert result.returncode == 2
    assert name in result.stderr and "NaN" in result.stderr
    assert roots.files_under_outputs() == []


def test_every_problem_is_listed_at_once(demo_nrrd: Path, roots: Roots) -> None:
    """A layout problem in one case does not hide a content problem in another."""
    folder = shutil.copytree(demo_nrrd, roots.raw / demo_nrrd.name)
    (folder / "labelsTr" / "nrrd_000.nrrd").unlink()
    second = _nan_in_image(folder, "nrrd_001")
    result = run_script("plan.py", f"dataset={folder.name}", "num_workers=0", roots=roots)
    assert result.returncode == 2
    assert "labelsTr/nrrd_000.nrrd" in result.stderr and second in result.stderr
    assert "2 problem(s)" in result.stderr


def test_dataset_name_must_follow_convention(demo_3d: Path, roots: Roots) -> None:
    folder = shutil.copytree(demo_3d, roots.raw / "my_scans")
    result = run_script("plan.py", f"dataset={folder}", roots=roots)
    assert result.returncode == 2
    assert "my_scans" in result.stderr and "DatasetXXX_Name" in result.stderr
    assert roots.files_under_outputs() == []


@pytest.mark.parametrize(("overrides", "message"), [
    (["dataset=Dataset999_Nope"], "Dataset999_Nope"),
    ([], "dataset=... is required"),
    (["dataset=Dataset900_Demo", "+planner.gpu_memmory_target_gb=24"], "planner.gpu_memmory_target_gb"),
    (["dataset=Dataset900_Demo", "planner.gpu_memory_target_gb=lots"], "planner.gpu_memory_target_gb"),
    (["dataset=Dataset900_Demo", "fingerprint=/nonexistent/fingerprint.json"], "/nonexistent/fingerprint.json"),
    (["dataset=Dataset900_Demo", "shard=0", "shards=2"], "nnlight-plan dataset=Dataset900_Demo preprocess=false, "
                                                          "then start the shards"),
    (["dataset=Dataset900_Demo", "shard=2", "shards=2"], "shards=2 needs shard=0..1"),
    (["dataset=Dataset900_Demo", "preprocess.memory_gb=0"], "memory_gb=0: give the GB"),
])
def test_wrong_overrides_are_clear_errors(overrides: list[str], message: str, demo_3d: Path, roots: Roots) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    result = run_script("plan.py", *overrides, roots=roots)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert roots.files_under_outputs() == []


def test_unknown_config_option_is_named(roots: Roots) -> None:
    """An unknown group option is one line listing the valid ones, exit 2, before Hydra writes anything."""
    result = run_script("plan.py", "dataset=Dataset900_Demo", "planner=resenc_xxl", roots=roots)
    assert result.returncode == 2
    assert "planner=resenc_xxl: no such option; choose one of default, resenc_l, resenc_m, resenc_xl" in result.stderr
    assert "Traceback" not in result.stderr
    assert roots.files_under_outputs() == []


@pytest.mark.slow  # 15 s: full-disk writes stay covered by default by the prediction and checkpoint tests
def test_plan_onto_a_full_disk_fails_clearly_and_a_rerun_finishes(demo_3d: Path, roots: Roots, tmp_path: Path) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    with small_disk(tmp_path / "disk", "192k") as resize:
        on_disk = Roots(roots.raw, tmp_path / "disk" / "preprocessed", roots.results)
        full = run_script("plan.py", "dataset=Dataset900_Demo", "num_workers=0", roots=on_disk,
                          preexec_fn=None if resize is not None else file_size_limit(40_000))
        assert full.returncode == 2 and "could not be written" in full.stderr and "Traceback" not in full.stderr
        if resize is not None:
            assert "no space left on the device" in full.stderr
            resize("64m")
        again = run_script("plan.py", "dataset=Dataset900_Demo", "num_workers=0", roots=on_disk)
        assert again.returncode == 0, again.stderr[-2000:]
        store = on_disk.preprocessed / "Dataset900_Demo" / "nnUNetPlans_3d_fullres"
        assert len(list(store.glob("*.json"))) == 5 and all(np.load(p).size for p in store.glob("*.npy"))
