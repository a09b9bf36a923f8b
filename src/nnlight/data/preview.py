"""A PNG grid of augmented training patches, so a user can see what the network is trained on
(``nnlight-preview-augmentation``: :mod:`nnlight.pipeline.preview`).

Each row is one sampled patch: the patch without augmentation, the augmented patch, and the augmented
patch with its labels overlaid (middle slice for 3D, first channel).
"""

from __future__ import annotations

import numpy as np
import torch

from nnlight.data.datamodule import SegmentationDataModule

PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255
    return np.repeat(scaled[..., None], 3, axis=-1)


def _overlay(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    colours = PALETTE[1:][(labels.astype(int) - 1) % (len(PALETTE) - 1)]
    return np.where(labels[..., None] > 0, 0.5 * gray + 0.5 * colours, gray)


def _middle(volume: np.ndarray) -> np.ndarray:
    return volume[volume.shape[0] // 2] if volume.ndim == 3 else volume


def preview_grid(module: SegmentationDataModule, samples: int, seed: int) -> np.ndarray:
    """An RGB uint8 grid ``(rows * h, 3 * w, 3)`` of unaugmented / augmented / overlay patches."""
    torch.manual_seed(seed)
    images, labels = next(iter(module.train_dataloader()))
    patch = module.patch_size
    crop = tuple(slice((i - o) // 2, (i - o) // 2 + o) for i, o in zip(images.shape[2:], patch, strict=True))
    plain = images[(slice(None), 0, *crop)].numpy()
    augmented, targets = module.on_after_batch_transfer((images, labels), 0)
    rows = []
    for b in range(min(samples, images.shape[0])):
        aug = _gray(_middle(augmented[b, 0].numpy()))
        rows.append(np.concatenate([_gray(_middle(plain[b])), aug, _overlay(aug, _middle(targets[0][b, 0].numpy()))],
                                   axis=1))
    return np.concatenate(rows, axis=0).astype(np.uint8)
