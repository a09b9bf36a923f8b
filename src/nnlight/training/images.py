"""Pictures of what the model predicts while it trains: every N epochs the first validation patch as
image | label | prediction (a few slices for 3D) with its Dice, logged to the loggers that show images
(TensorBoard, W&B). ``logger.images_every_n_epochs`` sets N (the tensorboard and wandb logger configs: 10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from nnlight.inference.export import scores_to_segmentation
from nnlight.raw.labels import LabelLayout
from nnlight.utils.overlays import comparison, foreground_slices

IMAGE_LOGGERS = (TensorBoardLogger, WandbLogger)
TAG = "validation/patch"


def label_map(target: torch.Tensor, layout: LabelLayout) -> torch.Tensor:
    """A training target as one label map: label datasets already are one (``(1, ...)``); region datasets have a
    channel per region (and one for the ignore label, last), painted in the dataset's region order."""
    if not layout.has_regions:
        return target[0].to(torch.int16)
    order = layout.regions_class_order or ()
    return scores_to_segmentation(target[:len(order)].float(), order, probabilities=True)


def patch_dice(reference: np.ndarray, prediction: np.ndarray, values: Sequence[int]) -> float:
    """Mean Dice over the foreground labels present in the patch's reference or prediction (NaN if none is)."""
    scores = []
    for value in values:
        ref, pred = reference == value, prediction == value
        total = ref.sum() + pred.sum()
        if total:
            scores.append(2 * (ref & pred).sum() / total)
    return float(np.mean(scores)) if scores else float("nan")


def patch_picture(image: torch.Tensor, target: torch.Tensor, logits: torch.Tensor, layout: LabelLayout
                  ) -> tuple[np.ndarray, float]:
    """RGB grid (image | label | prediction, up to three slices through the foreground) and the patch's Dice, for
    one sample: ``image`` ``(*spatial)`` (first channel), ``target`` and ``logits`` as the loss sees them."""
    region_order = layout.regions_class_order if layout.has_regions else None
    prediction = scores_to_segmentation(logits.float(), region_order).cpu().numpy()
    reference = label_map(target, layout).cpu().numpy()
    picture = image.float().cpu().numpy()
    if picture.ndim == 2:  # a 2D patch: one slice
        picture, reference, prediction = picture[None], reference[None], prediction[None]
    values = list(region_order) if region_order else layout.foreground_values
    dice = patch_dice(reference, prediction, values)
    return comparison([picture], [reference, prediction], foreground_slices(reference, prediction)), dice


def log_picture(logger: Logger, picture: np.ndarray, caption: str, epoch: int) -> None:
    """Log an RGB picture to a logger that shows images (others are not passed here)."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(TAG, picture, global_step=epoch, dataformats="HWC")
        logger.experiment.add_text(TAG, caption, global_step=epoch)
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=TAG, images=[picture], caption=[caption])


class ValidationImages(L.Callback):
    """Every ``every_n_epochs`` epochs, the first validation batch's first patch, to every image logger."""

    def __init__(self, every_n_epochs: int, layout: LabelLayout) -> None:
        self.every_n_epochs, self.layout = every_n_epochs, layout

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        epoch = trainer.current_epoch
        if batch_idx or trainer.sanity_checking or not trainer.is_global_zero or (epoch + 1) % self.every_n_epochs:
            return
        images, targets = batch
        picture, dice = patch_picture(images[0, 0], targets[0][0], outputs[0], self.layout)
        caption = f"epoch {epoch}: image | label | prediction, patch Dice {dice:.3f}"
        for logger in trainer.loggers:
            if isinstance(logger, IMAGE_LOGGERS):
                log_picture(logger, picture, caption, epoch)
