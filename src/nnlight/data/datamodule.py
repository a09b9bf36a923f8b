"""The LightningDataModule: CPU workers read and crop patches, the device augments whole batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nnlight.data.augmentation import (
    AugmentationSettings,
    augment,
    deep_supervision_targets,
    labels_to_regions,
    spatial_augmentation_geometry,
    user_transforms,
)
from nnlight.data.cascade import augment_previous_stage, one_hot_previous
from nnlight.data.sampling import Oversampling, PatchSampler, rank_sampling
from nnlight.data.splits import fold_cases, load_or_create_splits
from nnlight.planning.plans import ConfigurationPlan
from nnlight.preprocessing.store import completed_cases, load_arrays
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.raw.labels import LabelLayout, label_key
from nnlight.utils.errors import UserError
from nnlight.utils.machine import total_memory_bytes, usable_cpus

Batch = tuple[torch.Tensor, torch.Tensor]
MAX_DEFAULT_WORKERS = 12  # nnU-Net's default number of augmentation processes
MIN_QUEUED_BATCHES = 8
PREFETCH_MEMORY_SHARE = 0.125


class _PatchBatches(Dataset):
    """Batch ``i`` of an epoch, drawn from its own random stream ``(seed, epoch, i)``.

    Which worker reads a batch, and how many workers there are, does not change it: a resumed run or one
    with another ``data.num_workers`` samples exactly what an uninterrupted one would have. Each worker
    process keeps one :class:`PatchSampler` (and its memory maps) for the whole run.
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 oversample_foreground: float, seed: int, probabilistic: bool, annotated_key: str | None,
                 previous_stage: Path | None = None) -> None:
        self.args = (folder, list(case_ids), list(patch_size), batch_size, oversample_foreground)
        self.sampler_options: dict[str, Any] = {"probabilistic": probabilistic, "annotated_key": annotated_key,
                                "previous_stage": previous_stage}
        self.seed = seed
        self._sampler: PatchSampler | None = None

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        epoch, index = key
        if self._sampler is None:
            self._sampler = PatchSampler(*self.args, **self.sampler_options)
        self._sampler.rng = np.random.default_rng([self.seed, epoch, index])
        images, labels, _ = self._sampler.sample()
        return torch.from_numpy(images), torch.from_numpy(labels)


class _EpochBatches(Sampler[tuple[int, int]]):
    """The keys ``(epoch, 0..iterations-1)`` of one epoch; Lightning tells it the epoch (``set_epoch``)."""

    def __init__(self, iterations: int, fixed_epoch: bool) -> None:
        self.iterations = iterations
        self.fixed_epoch = fixed_epoch  # debug=overfit: the same batches every epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if not self.fixed_epoch:
            self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in range(self.iterations))


def default_num_workers(processes_per_node: int = 1) -> int:
    """nnU-Net's default: 12 augmentation workers, never more than the cores (shared by the node's processes)."""
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cpus() // max(processes_per_node, 1)))


def prefetch_factor(workers: int, batch_bytes: int, memory_bytes: int) -> int:
    """Batches each worker keeps ready: 2 (PyTorch's default) to 4, so that together at least
    ``MIN_QUEUED_BATCHES`` buffer slow reads, but never more than ``PREFETCH_MEMORY_SHARE`` of the machine's
    memory (a 3D batch at the initial patch size is hundreds of MB)."""
    wanted = min(4, max(2, -(-MIN_QUEUED_BATCHES // workers)))
    affordable = int(memory_bytes * PREFETCH_MEMORY_SHARE // max(workers * batch_bytes, 1))
    return max(1, min(wanted, affordable))


@dataclass(frozen=True)
class DataSettings:
    """The ``data`` group: which fold and how patches are sampled (batch and patch size come from the plan)."""

    fold: int | Literal["all"] = 0
    batch_size: int = 2
    patch_size: tuple[int, ...] = ()
    oversample_foreground: float = 0.33
    oversampling: Oversampling = "last_in_batch"  # random / random_at_batch_rate: nnU-Net's probabilistic variants
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    num_workers: int | Literal["auto"] = "auto"  # auto: min(12, cores per training process), as nnU-Net
    same_patches_every_epoch: bool = False  # debug=overfit: one fixed set of batches

    def __post_init__(self) -> None:
        checks = {"batch_size": self.batch_size >= 1, "iterations_per_epoch": self.iterations_per_epoch >= 1,
                  "val_iterations_per_epoch": self.val_iterations_per_epoch >= 1,
                  "num_workers": self.num_workers == "auto" or int(self.num_workers) >= 0,
                  "oversample_foreground": 0 <= self.oversample_foreground <= 1,
                  "patch_size": len(self.patch_size) in (2, 3) and min(self.patch_size) >= 1,
                  "fold": self.fold == "all" or (isinstance(self.fold, int) and self.fold >= 0)}
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(f"{wrong[0]}={getattr(self, wrong[0])!r} is out of range (batch size and iterations "
                             "at least 1, oversample_foreground in [0, 1], 2 or 3 patch axes, fold >= 0 or all, "
                             "num_workers >= 0 or auto)")


@dataclass(frozen=True)
class PreviousStage:
    """The cascade's input from its low-res stage: cross-validation segmentations on this grid, one-hot."""

    folder: Path  # <low-res model>/predicted_next_stage
    labels: tuple[int, ...]  # the foreground label values, one input channel each


class SegmentationDataModule(L.LightningDataModule):
    """``layout`` (labels vs regions, ignore label), ``mask_channels`` and ``previous_stage`` are dataset facts
    from the plan."""

    def __init__(self, preprocessed_dataset: Path, data_identifier: str, settings: DataSettings,
                 augmentation: AugmentationSettings, layout: LabelLayout, mask_channels: Sequence[int] = (),
                 deep_supervision_scales: Sequence[Sequence[float]] | None = None, seed: int = 12345,
                 previous_stage: PreviousStage | None = None) -> None:
        super().__init__()
        self.previous_stage = previous_stage
        self.store = preprocessed_dataset / data_identifier
        self.preprocessed_dataset = preprocessed_dataset
        self.settings = settings
        self.layout = layout
        self.mask_channels = tuple(mask_channels)
        self.seed = seed
        self.patch_size = list(settings.patch_size)
        self.deep_supervision_scales = [list(s) for s in deep_supervision_scales] if deep_supervision_scales \
            else [[1.0] * len(self.patch_size)]
        self.augmentation = augmentation
        self.transforms = user_transforms(augmentation)  # the user's own stages, created once
        self.geometry = spatial_augmentation_geometry(self.patch_size, augmentation)
        self.initial_patch_size = self.geometry.initial_patch_size
        annotated = layout.annotated_area
        self.annotated_key = label_key(annotated) if annotated else None
        self.generator: torch.Generator | None = None
        self._generator_epoch = -1
        self.train_cases: list[str] = []
        self.val_cases: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        s = self.settings
        cases = completed_cases(self.store)
        if not cases:
            raise UserError(f"{self.store}: no preprocessed cases; run plan.py on the dataset first (preprocess=true)")
        # fold=all needs no splits: a dataset of fewer cases than folds trains on all of them
        split = fold_cases([] if s.fold == "all" else load_or_create_splits(self.preprocessed_dataset, cases), s.fold,
                           cases)
        self.train_cases, self.val_cases = split["train"], split["val"]
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        self.batch_size, self.oversample = rank_sampling(s.batch_size, world, rank, s.oversample_foreground,
                                                         s.oversampling)
        self.rank = rank

    @property
    def epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def worker_counts(self) -> tuple[int, int]:
        """Training and validation DataLoader workers: ``data.num_workers`` (auto: nnU-Net's min(12, cores),
        the cores shared by this node's training processes) and, as nnU-Net, half as many for validation."""
        requested = self.settings.num_workers
        train = default_num_workers(self.trainer.num_devices if self.trainer is not None else 1) \
            if requested == "auto" else int(requested)
        return train, (max(1, train // 2) if train else 0)

    def on_gpu(self) -> bool:
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def batch_bytes(self, patch: Sequence[int]) -> int:
        """Host memory of one batch: float32 images of every channel + int16 labels."""
        channels = load_arrays(self.store, self.train_cases[0])[0].shape[0] if self.train_cases else 1
        return self.batch_size * (4 * channels + 2) * int(np.prod(patch))

    def _loader(self, cases: list[str], patch: Sequence[int], iterations: int, workers: int,
                seed_offset: int) -> DataLoader:
        """Workers are started once and kept for the whole run (``persistent_workers``); on a GPU the
        batches arrive in pinned memory, so Lightning's copy to the device does not block."""
        s = self.settings
        batches = _PatchBatches(self.store, cases, patch, self.batch_size, self.oversample,
                                self.seed + 1000 * self.rank + seed_offset, s.oversampling != "last_in_batch",
                                self.annotated_key, self.previous_stage.folder if self.previous_stage else None)
        queue: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch_factor(
            workers, self.batch_bytes(patch), total_memory_bytes())} if workers else {}
        return DataLoader(batches, batch_size=None, sampler=_EpochBatches(iterations, s.same_patches_every_epoch),
                          num_workers=workers, pin_memory=self.on_gpu(), **queue)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_cases, self.initial_patch_size, self.settings.iterations_per_epoch,
                            self.worker_counts()[0], 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_cases, self.patch_size, self.settings.val_iterations_per_epoch,
                            self.worker_counts()[1], 1)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Augment training batches on the device; validation only maps -1 to 0. Targets per DS output."""
        images, labels = batch
        training = self.trainer is None or self.trainer.training
        if training:
            if self.generator is None or self._generator_epoch != self.epoch:  # one stream per (rank, epoch)
                self.generator = torch.Generator(images.device).manual_seed(
                    int(np.random.SeedSequence([self.seed, self.rank, self.epoch]).generate_state(1)[0]))
                self._generator_epoch = self.epoch
            images, labels = augment(images, labels, self.patch_size, self.augmentation, self.geometry,
                                     self.generator, self.mask_channels, self.transforms)
        else:
            labels = labels.clamp_min(0)
        if self.previous_stage is not None:  # its segmentation becomes one-hot input channels
            previous = one_hot_previous(labels[:, 1:], self.previous_stage.labels)
            if training:
                assert self.generator is not None  # made above for training batches
                previous = augment_previous_stage(previous, self.generator)
            images, labels = torch.cat([images, previous.to(images.dtype)], 1), labels[:, :1]
        if self.layout.has_regions:
            labels = labels_to_regions(labels, self.layout.regions, self.layout.ignore_label)
        return images, deep_supervision_targets(labels, self.deep_supervision_scales)


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[list[float]]:
    """1 / cumulative product of the strides, one entry per decoder output (nnU-Net's scales)."""
    return [list(s) for s in (1 / np.cumprod(np.vstack(strides), axis=0))[:-1].tolist()]


def plan_datamodule(dataset_folder: Path, plan: ConfigurationPlan, fold: int | Literal["all"] = 0,
                    batch_size: int | None = None, iterations_per_epoch: int = 250, num_workers: int = 0,
                    augmentation: AugmentationSettings | None = None, seed: int = 12345) -> SegmentationDataModule:
    """The data module for one configuration of a planned, preprocessed dataset (previews and benchmarks).

    ``dataset_folder`` is ``<preprocessed>/<Dataset>``: its dataset.json gives the labels, the plan the rest.
    """
    layout = load_dataset_json(dataset_folder / "dataset.json").layout
    settings = DataSettings(fold=fold, batch_size=batch_size or plan.batch_size, patch_size=tuple(plan.patch_size),
                            iterations_per_epoch=iterations_per_epoch, val_iterations_per_epoch=1,
                            num_workers=num_workers)
    mask_channels = [i for i, use in enumerate(plan.use_mask_for_norm) if use]
    return SegmentationDataModule(dataset_folder, plan.data_identifier, settings,
                                  augmentation or AugmentationSettings(), layout, mask_channels,
                                  deep_supervision_scales(plan.architecture.strides), seed)
