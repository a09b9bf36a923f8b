"""``progress.png`` in the run folder, redrawn every epoch: losses, pseudo Dice and its EMA, LR, epoch time."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import lightning as L
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed
from matplotlib.ticker import MaxNLocator

from nnlight.utils.files import atomic_write_bytes
from nnlight.utils.folders import RunFolder

SERIES = ("train_loss", "val_loss", "pseudo_dice", "pseudo_dice_ema", "lr", "epoch_seconds")


class ProgressPlot(L.Callback):
    """``filename`` is relative to the trainer's root folder (the run folder) unless absolute; by default the
    run folder's progress plot."""

    def __init__(self, filename: str | Path | None = None) -> None:
        self.filename = Path(filename) if filename is not None else None
        self.path = self.filename
        self.history: dict[str, list[float]] = {k: [] for k in SERIES}
        self._start = 0.0
        self._lr = float("nan")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        root = Path(trainer.default_root_dir)
        self.path = root / self.filename if self.filename is not None else RunFolder(root).progress_plot

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])  # the rate this epoch trains with

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics

        def value(key: str) -> float:
            return float(metrics[key]) if key in metrics else float("nan")

        for name, key in (("train_loss", "train/loss"), ("val_loss", "val/loss"),
                          ("pseudo_dice", "val/pseudo_dice"), ("pseudo_dice_ema", "val/pseudo_dice_ema")):
            self.history[name].append(value(key))
        self.history["lr"].append(self._lr)
        self.history["epoch_seconds"].append(time.perf_counter() - self._start)
        if trainer.is_global_zero:
            self.draw()

    def draw(self) -> None:
        """Three panels with titles, epochs as integers, one legend for losses and Dice outside the curves."""
        h = self.history
        epochs = list(range(len(h["train_loss"])))
        fig = Figure(figsize=(10, 11))
        ax_loss, ax_lr, ax_time = fig.subplots(3, 1)
        lines = ax_loss.plot(epochs, h["train_loss"], color="b", marker=".", label="train loss")
        lines += ax_loss.plot(epochs, h["val_loss"], color="r", marker=".", label="val loss")
        ax_dice = ax_loss.twinx()
        lines += ax_dice.plot(epochs, h["pseudo_dice"], color="g", linestyle=":", marker=".", label="pseudo Dice")
        lines += ax_dice.plot(epochs, h["pseudo_dice_ema"], color="g", label="pseudo Dice (EMA)")
        ax_loss.set(ylabel="loss", title="Losses and pseudo Dice (validation patches)")
        ax_dice.set(ylabel="pseudo Dice", ylim=(0, 1))
        ax_loss.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.12),
                       ncol=4, frameon=False)  # below the axes: it never hides a curve
        ax_lr.plot(epochs, h["lr"], color="b", marker=".")
        ax_lr.set(ylabel="learning rate", title="Learning rate")
        ax_time.plot(epochs, h["epoch_seconds"], color="b", marker=".")
        ax_time.set(ylabel="seconds", title="Epoch time")
        for ax in (ax_loss, ax_lr, ax_time):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        if self.path is not None:  # set up by the trainer (or given absolute)
            atomic_write_bytes(self.path, buffer.getvalue())

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
