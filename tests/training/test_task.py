"""SegmentationTask trains with Lightning on the preprocessed demo data (CPU)."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch

from nnlight.data.datamodule import plan_datamodule
from nnlight.model.network import checked_plan_unet
from nnlight.training.losses import LossSettings
from nnlight.training.schedules import PolyLR
from nnlight.training.task import SegmentationTask

pytestmark = pytest.mark.integration


def _setup(preprocessed, configuration: str, optimizer=None, norm: str = "instance", deep_supervision: bool = True):
    folder, plans = preprocessed
    plan = plans.configurations[configuration]
    data = plan_datamodule(folder, plan, iterations_per_epoch=2)
    network = checked_plan_unet(plan.architecture, 2, data.layout.num_outputs, plan.patch_size, norm, deep_supervision)
    assert network.deep_supervision_scales == (data.deep_supervision_scales if deep_supervision else None)
    if not deep_supervision:
        data.deep_supervision_scales = [[1.0] * len(plan.patch_size)]
    task = SegmentationTask(network, data.layout, LossSettings(batch_dice=plan.batch_dice),
                            optimizer or functools.partial(torch.optim.SGD, lr=0.01, momentum=0.99, nesterov=True),
                            functools.partial(PolyLR, max_epochs=3))
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
    # poly over the scheduler's 3 configured epochs, stepped once per epoch: after 2 epochs lr = 0.01 * (1/3)^0.9
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * (1 / 3) ** 0.9)


@pytest.mark.parametrize(("norm", "deep_supervision"), [("instance", True), ("batch", True), ("instance", False)])
def test_a_few_steps_on_one_batch_reduce_the_loss(preprocessed, norm: str, deep_supervision: bool) -> None:
    data, task = _setup(preprocessed, "3d_fullres", functools.partial(torch.optim.Adam, lr=3e-3), norm,
                        deep_supervision)
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    strides = task.checked_network.facts["strides"]
    assert len(task(batch[0])) == (len(strides) - 1 if deep_supervision else 1)
    optimizer = task.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(8):
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_batch_norm_is_built_when_asked() -> None:
    from nnlight.planning.plans import Architecture
    from nnlight.raw.labels import LabelLayout

    architecture = Architecture("PlainConvUNet", 2, [4, 8], [[3, 3], [3, 3]], [[1, 1], [2, 2]], [1, 1], [1])
    layout = LabelLayout.from_mapping({"background": 0, "a": 1})
    network = checked_plan_unet(architecture, 1, layout.num_outputs, [8, 8], norm="batch")
    norms = {type(m).__name__ for m in SegmentationTask(network, layout, LossSettings(), torch.optim.SGD,
                                                       PolyLR).modules()}
    assert "BatchNorm2d" in norms and "InstanceNorm2d" not in norms
