"""SegmentationTask trains with Lightning on the preprocessed demo data (CPU)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import DataSettings, SegmentationDataModule, deep_supervision_scales
from nnlight.training.task import SegmentationTask


def _setup(preprocessed, configuration: str, **task_overrides):
    folder, plans = preprocessed
    plan = plans.configurations[configuration]
    data = SegmentationDataModule(DataSettings(
        preprocessed_dataset=folder, data_identifier=plan.data_identifier, patch_size=plan.patch_size,
        batch_size=plan.batch_size, deep_supervision_scales=deep_supervision_scales(plan.architecture.strides),
        iterations_per_epoch=2, val_iterations_per_epoch=1, num_workers=0), AugmentationSettings())
    task = SegmentationTask(plan.architecture.network, plan.architecture.network_kwargs(), input_channels=2,
                            num_classes=3, batch_dice=plan.batch_dice, max_epochs=3, **task_overrides)
    return data, task


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_fit_two_epochs_logs_loss_and_pseudo_dice(preprocessed, configuration: str, tmp_path) -> None:
    data, task = _setup(preprocessed, configuration)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, gradient_clip_val=12, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])
    assert 0.0 <= float(metrics["val/pseudo_dice"]) <= 1.0
    ema = 0.9 * task.pseudo_dice_history[0] + 0.1 * task.pseudo_dice_history[1]
    assert task.pseudo_dice_ema == pytest.approx(ema)
    # poly over the task's 3 configured epochs, stepped once per epoch: after 2 epochs lr = 0.01 * (1/3)^0.9
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * (1 / 3) ** 0.9)


def test_a_few_steps_on_one_batch_reduce_the_loss(preprocessed) -> None:
    data, task = _setup(preprocessed, "3d_fullres", optimizer="adam", lr=3e-3)
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    optimizer = task.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(8):
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
