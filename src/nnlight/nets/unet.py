"""nnU-Net's U-Nets (``PlainConvUNet``, ``ResidualEncoderUNet``) with the same topology, parameter counts
and feature-map-size estimate as the ``dynamic-network-architectures`` package.

Constructor arguments are exactly the planner's output (stages, features, kernels, strides, blocks),
so the planner's memory estimate and training use one class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from nnlight.nets.blocks import (
    NORMS,
    NormName,
    StackedConvBlocks,
    StackedResidualBlocks,
    segmentation_head,
    transposed_conv,
)

NetworkName = Literal["PlainConvUNet", "ResidualEncoderUNet"]


def _check_lengths(n_stages: int, **per_stage: Sequence) -> None:
    for name, values in per_stage.items():
        expected = n_stages - 1 if name == "n_conv_per_stage_decoder" else n_stages
        if len(values) != expected:
            raise ValueError(f"{name} needs {expected} entries for {n_stages} stages, got {len(values)}")


class UNetDecoder(nn.Module):
    """Transposed conv up, concatenate the skip, conv blocks; a 1x1 segmentation head per stage."""

    def __init__(self, dim: int, features_per_stage: Sequence[int], kernel_sizes: Sequence[Sequence[int]],
                 strides: Sequence[Sequence[int]], n_conv_per_stage: Sequence[int], num_classes: int,
                 conv_bias: bool, deep_supervision: bool, norm: NormName = "instance") -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.num_classes = num_classes
        self.features_per_stage = list(features_per_stage)
        self.strides = [list(s) for s in strides]
        n = len(features_per_stage)
        self.transpconvs = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.seg_layers = nn.ModuleList()
        for s in range(1, n):
            below, skip = features_per_stage[-s], features_per_stage[-(s + 1)]
            self.transpconvs.append(transposed_conv(dim, below, skip, strides[-s], conv_bias))
            self.stages.append(StackedConvBlocks(dim, n_conv_per_stage[s - 1], 2 * skip, skip,
                                                 kernel_sizes[-(s + 1)], [1] * dim, conv_bias, norm))
            self.seg_layers.append(segmentation_head(dim, skip, num_classes))

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        outputs = []
        for s, (up, stage) in enumerate(zip(self.transpconvs, self.stages, strict=True)):
            x = stage(torch.cat((up(x), skips[-(s + 2)]), dim=1))
            if self.deep_supervision:
                outputs.append(self.seg_layers[s](x))
            elif s == len(self.stages) - 1:
                outputs.append(self.seg_layers[-1](x))
        outputs.reverse()  # highest resolution first
        return outputs if self.deep_supervision else outputs[0]

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """``input_size`` is the encoder's input size."""
        skip_sizes = []
        size = list(input_size)
        for stride in self.strides[:-1]:
            size = [i // s for i, s in zip(size, stride, strict=True)]
            skip_sizes.append(size)
        total = 0
        for s, stage in enumerate(self.stages):
            size = skip_sizes[-(s + 1)]
            total += stage.compute_conv_feature_map_size(size)
            total += int(np.prod([self.features_per_stage[-(s + 2)], *size], dtype=np.int64))
            if self.deep_supervision or s == len(self.stages) - 1:
                total += int(np.prod([self.num_classes, *size], dtype=np.int64))
        return total


class _UNetBase(nn.Module):
    encoder_stem: nn.Module | None
    encoder_stages: nn.Sequential
    decoder: UNetDecoder
    strides: list[list[int]]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.encoder_stem is not None:
            x = self.encoder_stem(x)
        skips = []
        for stage in self.encoder_stages:
            x = stage(x)
            skips.append(x)
        return self.decoder(skips)

    def compute_conv_feature_map_size(self, patch_size: Sequence[int]) -> int:
        """nnU-Net's activation-memory proxy: output elements of every conv for one sample of ``patch_size``."""
        if len(patch_size) != len(self.strides[0]):
            raise ValueError(f"patch_size {patch_size} must have {len(self.strides[0])} spatial axes")
        size = [int(i) for i in patch_size]
        total = self.encoder_stem.compute_conv_feature_map_size(size) if self.encoder_stem is not None else 0
        for stage, stride in zip(self.encoder_stages, self.strides, strict=True):
            total += stage.compute_conv_feature_map_size(size)
            size = [i // s for i, s in zip(size, stride, strict=True)]
        return int(total + self.decoder.compute_conv_feature_map_size(patch_size))


class PlainConvUNet(_UNetBase):
    """nnU-Net's default U-Net: ``n_conv_per_stage`` conv blocks per encoder stage, strided-conv downsampling."""

    def __init__(self, input_channels: int, num_classes: int, n_stages: int, features_per_stage: Sequence[int],
                 kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]],
                 n_conv_per_stage: Sequence[int], n_conv_per_stage_decoder: Sequence[int],
                 conv_bias: bool = True, deep_supervision: bool = True, norm: NormName = "instance") -> None:
        super().__init__()
        _check_lengths(n_stages, features_per_stage=features_per_stage, kernel_sizes=kernel_sizes,
                       strides=strides, n_conv_per_stage=n_conv_per_stage,
                       n_conv_per_stage_decoder=n_conv_per_stage_decoder)
        dim = len(strides[0])
        self.strides = [list(s) for s in strides]
        self.encoder_stem = None
        stages, channels = [], input_channels
        for s in range(n_stages):
            stages.append(StackedConvBlocks(dim, n_conv_per_stage[s], channels, features_per_stage[s],
                                            kernel_sizes[s], strides[s], conv_bias, norm))
            channels = features_per_stage[s]
        self.encoder_stages = nn.Sequential(*stages)
        self.decoder = UNetDecoder(dim, features_per_stage, kernel_sizes, strides, n_conv_per_stage_decoder,
                                   num_classes, conv_bias, deep_supervision, norm)


class ResidualEncoderUNet(_UNetBase):
    """nnU-Net ResEnc: a conv stem, ResNet-D basic blocks in the encoder, the plain decoder."""

    def __init__(self, input_channels: int, num_classes: int, n_stages: int, features_per_stage: Sequence[int],
                 kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]],
                 n_blocks_per_stage: Sequence[int], n_conv_per_stage_decoder: Sequence[int],
                 conv_bias: bool = True, deep_supervision: bool = True, norm: NormName = "instance") -> None:
        super().__init__()
        _check_lengths(n_stages, features_per_stage=features_per_stage, kernel_sizes=kernel_sizes,
                       strides=strides, n_blocks_per_stage=n_blocks_per_stage,
                       n_conv_per_stage_decoder=n_conv_per_stage_decoder)
        dim = len(strides[0])
        self.strides = [list(s) for s in strides]
        self.encoder_stem = StackedConvBlocks(dim, 1, input_channels, features_per_stage[0], kernel_sizes[0],
                                              [1] * dim, conv_bias, norm)
        stages, channels = [], features_per_stage[0]
        for s in range(n_stages):
            stages.append(StackedResidualBlocks(dim, n_blocks_per_stage[s], channels, features_per_stage[s],
                                                kernel_sizes[s], strides[s], conv_bias, norm))
            channels = features_per_stage[s]
        self.encoder_stages = nn.Sequential(*stages)
        self.decoder = UNetDecoder(dim, features_per_stage, kernel_sizes, strides, n_conv_per_stage_decoder,
                                   num_classes, conv_bias, deep_supervision, norm)


@dataclass(frozen=True)
class NetworkOptions:
    """The ``network`` group: network choices the plan leaves open (nnUNetTrainerBN, nnUNetTrainerNoDeepSupervision).

    Inference rebuilds the network with the same ``norm`` (it is saved in the run folder's inference.json).
    """

    norm: NormName = "instance"
    deep_supervision: bool = True  # a loss on every decoder resolution (weights 1/2^i, the lowest 0)

    def __post_init__(self) -> None:  # also guards values read back from a run folder's inference.json
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: choose one of {', '.join(NORMS)}")


NETWORKS: dict[str, type[_UNetBase]] = {"PlainConvUNet": PlainConvUNet, "ResidualEncoderUNet": ResidualEncoderUNet}


def build_network(name: NetworkName, **kwargs: object) -> _UNetBase:
    """Instantiate a network by its plan name (a fixed registry — never an import path from a config)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    return NETWORKS[name](**kwargs)
