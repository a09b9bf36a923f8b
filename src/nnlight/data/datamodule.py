"""The LightningDataModule: CPU workers read and crop patches, the device augments whole batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nnlight.data.augmentation import AugmentationSettings, augment, deep_supervision_targets, labels_to_regions
from nnlight.data.sampling import PatchSampler, rank_batch_and_oversampling, spatial_augmentation_geometry
from nnlight.data.splits import fold_cases, load_or_create_splits
from nnlight.preprocessing.store import completed_cases
from nnlight.utils.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


class _PatchBatches(IterableDataset):
    """``iterations`` batches of one epoch, shared among the DataLoader workers.

    Each (seed, epoch, worker) draws its own stream, so a resumed run samples exactly what an
    uninterrupted one would have (the loader is rebuilt every epoch).
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 oversample_foreground: float, iterations: int, seed: int, epoch: int) -> None:
        self.args = (folder, list(case_ids), list(patch_size), batch_size, oversample_foreground)
        self.iterations = iterations
        self.seed = seed
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        sampler = PatchSampler(*self.args, seed=np.random.SeedSequence([self.seed, self.epoch, worker]))
        for _ in range(worker, self.iterations, workers):
            images, labels, _ = sampler.sample()
            yield torch.from_numpy(images), torch.from_numpy(labels)


@dataclass(frozen=True)
class DataSettings:
    preprocessed_dataset: Path  # <preprocessed>/<Dataset>
    data_identifier: str
    patch_size: list[int]
    batch_size: int
    deep_supervision_scales: list[list[float]]
    fold: int | Literal["all"] = 0
    oversample_foreground: float = 0.33
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    num_workers: int = 2
    seed: int = 12345
    regions: list[list[int]] | None = None  # region-based datasets: targets are one channel per region
    same_patches_every_epoch: bool = False  # debug=overfit: one fixed set of batches


class SegmentationDataModule(L.LightningDataModule):
    def __init__(self, settings: DataSettings, augmentation: AugmentationSettings) -> None:
        super().__init__()
        self.settings = settings
        geometry = spatial_augmentation_geometry(settings.patch_size)
        self.initial_patch_size = geometry.initial_patch_size
        axes = tuple(a for a in augmentation.mirror_axes if a < len(settings.patch_size))
        self.augmentation = replace(augmentation, rotation=geometry.rotation, dummy_2d=geometry.dummy_2d,
                                    mirror_axes=axes)
        self.generator: torch.Generator | None = None
        self._generator_epoch = -1
        self.train_cases: list[str] = []
        self.val_cases: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        s = self.settings
        folder = s.preprocessed_dataset / s.data_identifier
        cases = completed_cases(folder)
        if not cases:
            raise UserError(f"{folder}: no preprocessed cases; run plan.py on the dataset first (preprocess=true)")
        split = fold_cases(load_or_create_splits(s.preprocessed_dataset, cases), s.fold, cases)
        self.train_cases, self.val_cases = split["train"], split["val"]
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        self.batch_size, self.oversample = rank_batch_and_oversampling(s.batch_size, world, rank,
                                                                       s.oversample_foreground)
        self.rank = rank

    @property
    def epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _loader(self, cases: list[str], patch: Sequence[int], iterations: int, seed_offset: int) -> DataLoader:
        s = self.settings
        batches = _PatchBatches(s.preprocessed_dataset / s.data_identifier, cases, patch, self.batch_size,
                                self.oversample, iterations, s.seed + 1000 * self.rank + seed_offset,
                                0 if s.same_patches_every_epoch else self.epoch)
        return DataLoader(batches, batch_size=None, num_workers=s.num_workers, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_cases, self.initial_patch_size, self.settings.iterations_per_epoch, 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_cases, self.settings.patch_size, self.settings.val_iterations_per_epoch, 1)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Augment training batches on the device; validation only maps -1 to 0. Targets per DS output."""
        images, labels = batch
        training = self.trainer is None or self.trainer.training
        if training:
            if self.generator is None or self._generator_epoch != self.epoch:  # one stream per (rank, epoch)
                self.generator = torch.Generator(images.device).manual_seed(
                    int(np.random.SeedSequence([self.settings.seed, self.rank, self.epoch]).generate_state(1)[0]))
                self._generator_epoch = self.epoch
            images, labels = augment(images, labels, self.settings.patch_size, self.augmentation, self.generator)
        else:
            labels = labels.clamp_min(0)
        if self.settings.regions:
            labels = labels_to_regions(labels, self.settings.regions)
        return images, deep_supervision_targets(labels, self.settings.deep_supervision_scales)


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[list[float]]:
    """1 / cumulative product of the strides, one entry per decoder output (nnU-Net's scales)."""
    return [list(s) for s in (1 / np.cumprod(np.vstack(strides), axis=0))[:-1].tolist()]
