"""Trained weights under the network's own names: a run folder's checkpoint, an nnU-Net checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlight.model.checkpoints import load_checkpoint, safe_torch_load
from nnlight.nets.nnunet_names import from_nnunet_state_dict
from nnlight.nets.unet import NetworkName
from nnlight.utils.errors import UserError
from nnlight.utils.folders import CheckpointName, RunFolder

CHECKPOINT_FILES: dict[CheckpointName, str] = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth",
                                               "last": "checkpoint_latest.pth"}
_NUMPY_SCALARS = [np.dtype, *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_))]


def run_network_weights(run: RunFolder, checkpoint: CheckpointName) -> dict[str, torch.Tensor]:
    """The network weights of one trained fold's checkpoint (``weights_only``), under the network's own names."""
    path = run.checkpoint(checkpoint)
    if not path.is_file():
        present = sorted(p.stem for p in run.checkpoints.glob("*.ckpt"))
        hint = (f"choose checkpoint={present[0]}; a run keeps only final.ckpt unless trained with "
                "checkpoints=best_and_final or checkpoints=all" if present
                else "the run has not finished an epoch; train it first")
        raise UserError(f"{path}: checkpoint not found ({hint})")
    state = load_checkpoint(path)["state_dict"]
    return {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}


def _numpy_scalar_reconstructor() -> Any:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    return core.multiarray.scalar


def load_nnunet_checkpoint(path: Path) -> dict[str, Any]:
    """An nnU-Net ``checkpoint_*.pth`` read without unpickling code: tensors, plain containers, numpy scalars."""
    checkpoint = safe_torch_load(path, allowed=[*_NUMPY_SCALARS, _numpy_scalar_reconstructor()])
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise UserError(f"{path}: not an nnU-Net v2 checkpoint (no 'network_weights')")
    return checkpoint


def nnunet_fold_weights(path: Path, network: NetworkName) -> dict[str, torch.Tensor]:
    """The network weights of one nnU-Net checkpoint, under nnlight's names (``init_from``)."""
    return from_nnunet_state_dict(load_nnunet_checkpoint(path)["network_weights"], network)
