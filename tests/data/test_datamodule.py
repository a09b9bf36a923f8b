"""The DataModule end to end on a preprocessed synthetic dataset (workers read, the device augments)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import DataSettings, SegmentationDataModule, deep_supervision_scales
from nnlight.utils.errors import UserError


def _module(preprocessed, configuration: str, num_workers: int, fold: int | str = 0) -> SegmentationDataModule:
    folder, plans = preprocessed
    plan = plans.configurations[configuration]
    settings = DataSettings(fold=fold, batch_size=plan.batch_size, patch_size=tuple(plan.patch_size),
                            iterations_per_epoch=3, val_iterations_per_epoch=2, num_workers=num_workers)
    module = SegmentationDataModule(folder, plan.data_identifier, settings, AugmentationSettings(),
                                    plan_layout(folder), (0, 1), deep_supervision_scales(plan.architecture.strides))
    module.setup("fit")
    return module


def plan_layout(folder: Path):
    from nnlight.raw.dataset_json import load_dataset_json

    return load_dataset_json(folder / "dataset.json").layout


@pytest.mark.parametrize(("configuration", "num_workers"), [("3d_fullres", 0), ("3d_fullres", 2), ("2d", 0)])
def test_training_batches_are_augmented_to_the_patch_size(preprocessed, configuration: str,
                                                          num_workers: int) -> None:
    module = _module(preprocessed, configuration, num_workers)
    plan = preprocessed[1].configurations[configuration]
    batches = list(module.train_dataloader())
    assert len(batches) == 3
    images, labels = batches[0]
    assert list(images.shape[2:]) == list(labels.shape[2:]) == module.initial_patch_size  # the larger initial patch
    images, targets = module.on_after_batch_transfer(batches[0], 0)
    assert tuple(images.shape) == (plan.batch_size, 2, *plan.patch_size)
    assert len(targets) == plan.architecture.n_stages - 1
    assert tuple(targets[0].shape) == (plan.batch_size, 1, *plan.patch_size)
    assert targets[0].min() >= 0 and targets[0].max() <= 2


def test_validation_uses_the_fold_and_final_patch(preprocessed) -> None:
    module = _module(preprocessed, "3d_fullres", 0, fold=1)
    assert not set(module.train_cases) & set(module.val_cases)
    batches = list(module.val_dataloader())
    assert len(batches) == 2
    assert list(batches[0][0].shape[2:]) == preprocessed[1].configurations["3d_fullres"].patch_size
    assert (preprocessed[0] / "splits_final.json").is_file()


def test_fold_out_of_range_is_a_clear_error(preprocessed) -> None:
    with pytest.raises(UserError, match="out of range"):
        _module(preprocessed, "3d_fullres", 0, fold=7)


def test_data_settings_out_of_range_are_named() -> None:
    for wrong in ({"batch_size": 0}, {"iterations_per_epoch": 0}, {"oversample_foreground": 1.5}, {"fold": -1}):
        with pytest.raises(ValueError, match=next(iter(wrong))):
            DataSettings(patch_size=(8, 8), **wrong)  # type: ignore[arg-type]


def test_deep_supervision_scales() -> None:
    assert deep_supervision_scales([[1, 1, 1], [1, 2, 2], [2, 2, 2]]) == [[1, 1, 1], [1, 0.5, 0.5]]
    assert deep_supervision_scales([[1, 1], [2, 2], [2, 2], [2, 2]]) == [[1, 1], [0.5, 0.5], [0.25, 0.25]]


def test_augmentation_preview_png(preprocessed, tmp_path: Path) -> None:
    import SimpleITK as sitk

    from nnlight.data.preview import main

    folder, plans = preprocessed
    out = tmp_path / "preview.png"
    main([folder.name, "--preprocessed", str(folder.parent), "--samples", "3", "--out", str(out)])
    image = sitk.ReadImage(str(out))
    patch = plans.configurations["3d_fullres"].patch_size
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert image.GetSize() == (3 * patch[2], 3 * patch[1])  # 3 columns wide, 3 rows of middle slices


def test_augmentation_preview_names_a_missing_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nnlight.data.preview import main

    with pytest.raises(SystemExit) as exit_info:
        main(["Dataset999_Nope", "--preprocessed", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "Dataset999_Nope/nnUNetPlans.json" in capsys.readouterr().err


def test_sampling_is_a_function_of_seed_and_epoch(preprocessed, monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes a resumed run draw the same patches as an uninterrupted one."""
    module = _module(preprocessed, "3d_fullres", 0)
    first, again = list(module.train_dataloader()), list(module.train_dataloader())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    monkeypatch.setattr(SegmentationDataModule, "epoch", property(lambda self: 1))
    next_epoch = list(module.train_dataloader())
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, next_epoch, strict=True))
