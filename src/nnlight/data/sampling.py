"""Patch sampling from the case store with nnU-Net's foreground oversampling.

Workers only read and crop here (a memory-mapped slice per patch); all augmentation runs batched on the
training device afterwards. Patches are drawn at the *initial* patch size, larger than the network's
patch so that rotation and scaling on the device never sample outside real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from nnlight.preprocessing.store import PatchSource, load_arrays, load_class_locations

Oversampling = Literal["last_in_batch", "random", "random_at_batch_rate"]


def forced_foreground(sample_index: int, batch_size: int, oversample_foreground: float) -> bool:
    """The last ``1 - round(bs * (1 - p))`` samples of every batch are forced to contain foreground."""
    return not sample_index < round(batch_size * (1 - oversample_foreground))


def batch_rate(batch_size: int, oversample_foreground: float) -> float:
    """The fraction of a batch ``last_in_batch`` forces (0.5 for a batch of 2 at 0.33)."""
    return float(np.mean([forced_foreground(j, batch_size, oversample_foreground) for j in range(batch_size)]))


def rank_batch_and_oversampling(global_batch_size: int, world_size: int, rank: int,
                                oversample_foreground: float) -> tuple[int, float]:
    """Split a global batch over DDP ranks so the forced-foreground samples stay the same as one process's."""
    if global_batch_size < world_size:
        raise ValueError(f"batch size {global_batch_size} is smaller than the {world_size} processes")
    sizes = [global_batch_size // world_size + (1 if (global_batch_size // world_size) * world_size + i
                                                  < global_batch_size else 0) for i in range(world_size)]
    low, high = sum(sizes[:rank]), sum(sizes[: rank + 1])
    forced = [forced_foreground(i, global_batch_size, oversample_foreground) for i in range(global_batch_size)]
    if high / global_batch_size < 1 - oversample_foreground:
        return sizes[rank], 0.0
    if low / global_batch_size > 1 - oversample_foreground:
        return sizes[rank], 1.0
    return sizes[rank], sum(forced[low:high]) / sizes[rank]


def rank_sampling(global_batch_size: int, world_size: int, rank: int, oversample_foreground: float,
                  mode: Oversampling) -> tuple[int, float]:
    """This rank's batch size and foreground probability.

    ``last_in_batch`` (nnU-Net): the last samples of every batch are forced, split over ranks as one process
    would; ``random``: each sample independently with ``oversample_foreground``; ``random_at_batch_rate``
    (nnUNetTrainer_probabilisticOversampling): independently, at the rate ``last_in_batch`` forces.
    """
    size, forced = rank_batch_and_oversampling(global_batch_size, world_size, rank, oversample_foreground)
    rates = {"last_in_batch": forced, "random": oversample_foreground,
             "random_at_batch_rate": batch_rate(global_batch_size, oversample_foreground)}
    return size, rates[mode]


def crop_and_pad(array: PatchSource, lower: Sequence[int], size: Sequence[int], pad_value: float) -> np.ndarray:
    """``array[:, lower:lower+size]`` per spatial axis, padding with ``pad_value`` where the box leaves the array."""
    out = np.full((array.shape[0], *size), pad_value, dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for lo, n, extent in zip(lower, size, array.shape[1:], strict=True):
        a, b = max(lo, 0), min(lo + n, extent)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - lo, a - lo + max(b - a, 0)))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws training batches of (image, label) patches from a case store folder.

    For a 2d plan on 3D data, patches are ``(1, x, y)`` slabs (a random slice, or the slice of a chosen
    foreground voxel), returned without the slice axis.
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 oversample_foreground: float = 0.33, seed: int | np.random.SeedSequence | None = None,
                 probabilistic: bool = False, annotated_key: str | None = None,
                 previous_stage: Path | None = None) -> None:
        """``probabilistic``: each sample is forced with probability ``oversample_foreground`` instead of the
        batch's last ones; ``annotated_key``: with an ignore label, the class-location key of the annotated
        area, where unforced patches are centred (nnU-Net never centres a patch on ignored voxels);
        ``previous_stage`` (the cascade): a folder of ``<case>.npy`` low-res segmentations on this grid, cropped
        with the labels as their second channel."""
        self.folder = folder
        self.previous_stage = previous_stage
        self.probabilistic = probabilistic
        self.annotated_key = annotated_key
        self.case_ids = list(case_ids)
        self.is_2d = len(patch_size) == 2
        self.patch_size = [1, *patch_size] if self.is_2d else list(patch_size)
        self.batch_size = batch_size
        self.oversample_foreground = oversample_foreground
        self.rng = np.random.default_rng(seed)
        self._locations: dict[str, dict[str, np.ndarray]] = {}
        # memory maps, opened once per case: the image, its labels (and the previous stage's segmentation)
        self._arrays: dict[str, tuple[PatchSource, tuple[PatchSource, ...]]] = {}

    def class_locations(self, case_id: str) -> dict[str, np.ndarray]:
        if case_id not in self._locations:
            self._locations[case_id] = load_class_locations(self.folder, case_id)
        return self._locations[case_id]

    def patch_origin(self, shape: Sequence[int], force_fg: bool, locations: dict[str, np.ndarray]) -> list[int]:
        """Lower corner of the patch: random within the padded range, or centred on a foreground voxel."""
        need_to_pad = [max(p - s, 0) for p, s in zip(self.patch_size, shape, strict=True)]
        lower = [-n // 2 for n in need_to_pad]
        upper = [s + n // 2 + n % 2 - p for s, n, p in zip(shape, need_to_pad, self.patch_size, strict=True)]
        if force_fg:
            present = [k for k, v in locations.items() if len(v)]
            if len(present) > 1 and self.annotated_key in present:  # foreground first, the annotated area last
                present.remove(self.annotated_key)
        else:
            present = [self.annotated_key] if self.annotated_key and len(locations.get(self.annotated_key, ())) else []
        if not present:
            return [int(self.rng.integers(lo, up + 1)) for lo, up in zip(lower, upper, strict=True)]
        voxels = locations[present[self.rng.integers(len(present))]]
        voxel = voxels[self.rng.integers(len(voxels))]
        return [max(lo, int(v) - p // 2) for lo, v, p in zip(lower, voxel[1:], self.patch_size, strict=True)]

    def sample(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """A batch: float32 images ``(b, c, *patch)``, int16 labels ``(b, 1, *patch)`` (-1 = padding/outside;
        ``(b, 2, *patch)`` with the previous stage's segmentation)."""
        keys = [self.case_ids[i] for i in self.rng.integers(len(self.case_ids), size=self.batch_size)]
        images, labels = [], []
        for j, case_id in enumerate(keys):
            if case_id not in self._arrays:
                data, seg = load_arrays(self.folder, case_id)
                previous = () if self.previous_stage is None else \
                    (np.load(self.previous_stage / f"{case_id}.npy", mmap_mode="r"),)
                self._arrays[case_id] = data, (seg, *previous)
            data, segs = self._arrays[case_id]
            force = self.rng.random() < self.oversample_foreground if self.probabilistic else \
                forced_foreground(j, self.batch_size, self.oversample_foreground)
            needs_locations = force or self.annotated_key is not None
            origin = self.patch_origin(data.shape[1:], force, self.class_locations(case_id) if needs_locations else {})
            images.append(crop_and_pad(data, origin, self.patch_size, 0.0))
            labels.append(np.concatenate([crop_and_pad(x, origin, self.patch_size, -1).astype(np.int16)
                                          for x in segs]))
        image_batch, label_batch = np.stack(images), np.stack(labels)
        if self.is_2d:
            image_batch, label_batch = image_batch[:, :, 0], label_batch[:, :, 0]
        return image_batch, label_batch, keys
