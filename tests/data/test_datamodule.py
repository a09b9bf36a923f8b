"""The DataModule end to end on a preprocessed synthetic dataset (workers read, the device augments)."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import pytest
import torch

from nnlight.data import datamodule
from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import DataSettings, SegmentationDataModule, deep_supervision_scales
from nnlight.utils.errors import UserError

pytestmark = pytest.mark.integration


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


def test_loaders_know_their_length_so_progress_bars_show_a_total(preprocessed) -> None:
    module = _module(preprocessed, "3d_fullres", 0)
    assert len(module.train_dataloader()) == 3 and len(module.val_dataloader()) == 2  # "2/3", never "2/?"


def test_fold_out_of_range_is_a_clear_error(preprocessed) -> None:
    with pytest.raises(UserError, match="out of range"):
        _module(preprocessed, "3d_fullres", 0, fold=7)


def test_fold_all_trains_a_dataset_of_fewer_cases_than_folds(preprocessed, tmp_path: Path) -> None:
    """Two cases cannot make five folds, and need none for data.fold=all (a small collection's first model)."""
    import shutil

    from nnlight.preprocessing.store import completed_cases

    folder, plans = preprocessed
    small = tmp_path / folder.name
    shutil.copytree(folder, small, ignore=shutil.ignore_patterns("splits_final.json"))
    store = small / plans.configurations["3d_fullres"].data_identifier
    cases = completed_cases(store)
    for case in cases[2:]:
        (store / f"{case}.json").unlink()  # what makes a case complete
    module = _module((small, plans), "3d_fullres", 0, fold="all")
    assert module.train_cases == module.val_cases == cases[:2]
    with pytest.raises(UserError, match="2 training case\\(s\\) cannot be split into 5 folds"):
        _module((small, plans), "3d_fullres", 0, fold=0)


def test_data_settings_out_of_range_are_named() -> None:
    for wrong in ({"batch_size": 0}, {"iterations_per_epoch": 0}, {"oversample_foreground": 1.5}, {"fold": -1}):
        with pytest.raises(ValueError, match=next(iter(wrong))):
            DataSettings(patch_size=(8, 8), **wrong)  # type: ignore[arg-type]


def test_deep_supervision_scales() -> None:
    assert deep_supervision_scales([[1, 1, 1], [1, 2, 2], [2, 2, 2]]) == [[1, 1, 1], [1, 0.5, 0.5]]
    assert deep_supervision_scales([[1, 1], [2, 2], [2, 2], [2, 2]]) == [[1, 1], [0.5, 0.5], [0.25, 0.25]]


def test_sampling_is_a_function_of_seed_and_epoch(preprocessed) -> None:
    """What makes a resumed run draw the same patches as an uninterrupted one."""
    loader = _module(preprocessed, "3d_fullres", 0).train_dataloader()
    first, again = list(loader), list(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    loader.sampler.set_epoch(1)  # what Lightning calls at every epoch start
    next_epoch = list(loader)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, next_epoch, strict=True))


def test_batches_do_not_depend_on_the_number_of_workers(preprocessed) -> None:
    in_process = list(_module(preprocessed, "3d_fullres", 0).train_dataloader())
    two_workers = list(_module(preprocessed, "3d_fullres", 2).train_dataloader())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(in_process, two_workers, strict=True))


def test_workers_persist_across_epochs(preprocessed) -> None:
    """Worker start-up is paid once per run, not once per epoch."""
    loader = _module(preprocessed, "3d_fullres", 2).train_dataloader()
    assert loader.persistent_workers and not loader.pin_memory  # pinned memory only when training on a GPU
    list(loader)
    workers = {p.pid for p in multiprocessing.active_children()}
    loader.sampler.set_epoch(1)
    list(loader)
    assert len(workers) >= 2 and workers <= {p.pid for p in multiprocessing.active_children()}
    del loader


def test_batches_are_pinned_when_training_on_a_gpu(preprocessed) -> None:
    """Pinned host memory lets Lightning copy a batch to the GPU without blocking; on the CPU it is a waste."""
    from types import SimpleNamespace

    module = _module(preprocessed, "3d_fullres", 2)
    module.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), num_devices=1)
    assert module.train_dataloader().pin_memory and module.val_dataloader().pin_memory
    module.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")), num_devices=1)
    assert not module.train_dataloader().pin_memory


def test_worker_counts_follow_the_cores(preprocessed, monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's default: min(12, cores) for training, half of it for validation; an explicit count wins."""
    module = _module(preprocessed, "3d_fullres", 0)
    assert module.worker_counts() == (0, 0)
    module.settings = dataclasses.replace(module.settings, num_workers="auto")
    for cores, expected in ((1, (1, 1)), (2, (2, 1)), (16, (12, 6)), (128, (12, 6))):
        monkeypatch.setattr(datamodule, "usable_cpus", lambda cores=cores: cores)
        assert module.worker_counts() == expected
    assert datamodule.default_num_workers(processes_per_node=4) == 12  # 128 cores over 4 GPUs: still capped
    monkeypatch.setattr(datamodule, "usable_cpus", lambda: 16)
    assert datamodule.default_num_workers(processes_per_node=4) == 4


def test_prefetch_is_bounded_by_memory() -> None:
    gib = 2**30
    assert datamodule.prefetch_factor(1, 10 * 2**20, 16 * gib) == 4  # one worker: a deeper queue
    assert datamodule.prefetch_factor(12, 10 * 2**20, 16 * gib) == 2  # PyTorch's default per worker
    assert datamodule.prefetch_factor(12, 300 * 2**20, 16 * gib) == 1  # 12 x 2 x 300 MB > 1/8 of 16 GiB
