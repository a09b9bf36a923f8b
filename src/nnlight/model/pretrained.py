"""Start training from another model's weights (``init_from=``; nnU-Net's ``-pretrained_weights``).

The source is an nnlight checkpoint (``.ckpt``), a trained fold's run folder (its ``final.ckpt``), an nnU-Net
checkpoint (``checkpoint_final.pth``, names mapped) or an nnU-Net fold folder. Every tensor must fit the new
network exactly, except two that a new dataset may change and that are then initialised afresh, each
reported: the segmentation heads (another number of classes) and the first convolution (another number of
input channels). Anything else that differs means another architecture: an error that says how to plan the
target dataset with the source's plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from nnlight.model.checkpoints import load_checkpoint
from nnlight.model.weights import CHECKPOINT_FILES, nnunet_fold_weights, run_network_weights
from nnlight.nets.unet import NetworkName
from nnlight.utils.errors import UserError
from nnlight.utils.folders import ModelFolder, RunFolder

HEAD_MARKER = ".seg_layers."


@dataclass(frozen=True)
class PretrainedWeights:
    source: Path  # the checkpoint file read
    weights: dict[str, torch.Tensor]  # under nnlight's names


def read_pretrained(source: str | Path, network: NetworkName) -> PretrainedWeights:
    """The weights behind ``init_from=<source>``; a path nnlight cannot read is a ``UserError`` saying what works."""
    path = Path(source).expanduser()
    if path.is_dir():
        if RunFolder(path).is_trained_run():
            checkpoint = RunFolder(path).checkpoint("final")
            return PretrainedWeights(checkpoint, run_network_weights(RunFolder(path), "final"))
        if (path / CHECKPOINT_FILES["final"]).is_file():
            path = path / CHECKPOINT_FILES["final"]
        elif ModelFolder(path).runs() or any(path.glob(f"fold_*/{CHECKPOINT_FILES['final']}")):
            raise UserError(f"init_from={source}: a model with several folds; choose one: init_from={path}/fold_0")
        else:
            raise UserError(f"init_from={source}: no trained model in that folder; give a run folder (.../fold_0), "
                            "a .ckpt, or an nnU-Net checkpoint_final.pth (or its fold folder)")
    if not path.is_file():
        raise UserError(f"init_from={source}: no such file or folder")
    if path.suffix == ".pth":
        return PretrainedWeights(path, nnunet_fold_weights(path, network))
    state = load_checkpoint(path).get("state_dict", {})
    weights = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}
    if not weights:
        raise UserError(f"init_from={source}: {path} holds no network weights (not an nnlight training checkpoint)")
    return PretrainedWeights(path, weights)


def check_fits(pretrained: PretrainedWeights, target: Mapping[str, torch.Tensor]) -> list[str]:
    """What will be initialised afresh (one line each), or a ``UserError`` when the architectures differ."""
    weights = pretrained.weights
    first_conv = next(iter(target))  # the encoder's first convolution weight: (features, channels, *kernel)
    missing, unexpected = sorted(set(target) - set(weights)), sorted(set(weights) - set(target))
    if missing or unexpected:
        raise UserError(f"init_from={pretrained.source}: another architecture (missing here: {missing[:3]}, "
                        f"unknown here: {unexpected[:3]}); plan this dataset with the source's plans first: "
                        "nnlight-plan dataset=<target> plans_from=<source dataset>")
    fresh, heads = [], []
    for key, tensor in target.items():
        shape, source_shape = tuple(tensor.shape), tuple(weights[key].shape)
        if shape == source_shape:
            continue
        if HEAD_MARKER in key:
            heads.append(key)
        elif key == first_conv and shape[:1] + shape[2:] == source_shape[:1] + source_shape[2:]:
            fresh.append(f"{key}: first convolution initialised afresh ({source_shape[1]} input channels in the "
                         f"source, {shape[1]} here)")
        else:
            raise UserError(f"init_from={pretrained.source}: {key} has shape {list(source_shape)} there but "
                            f"{list(shape)} here (another architecture); plan this dataset with the source's plans: "
                            "nnlight-plan dataset=<target> plans_from=<source dataset>")
    if heads:
        outputs = weights[heads[0]].shape[0], target[heads[0]].shape[0]
        fresh.append(f"segmentation heads initialised afresh ({len(heads)} tensors: {outputs[0]} outputs in the "
                     f"source, {outputs[1]} here)")
    return fresh


def load_pretrained(network: torch.nn.Module, pretrained: PretrainedWeights) -> list[str]:
    """Copy every fitting tensor into ``network``; returns what was initialised afresh instead."""
    target = network.state_dict()
    fresh = check_fits(pretrained, target)
    merged = {k: pretrained.weights[k] if pretrained.weights[k].shape == v.shape else v for k, v in target.items()}
    network.load_state_dict(merged)
    return fresh
