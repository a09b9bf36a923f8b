"""nnU-Net's U-Nets (``PlainConvUNet``, ``ResidualEncoderUNet``) with the same topology, parameter counts
and feature-map-size estimate as the ``dynamic-network-architectures`` package.

Constructor arguments are exactly the planner's output (stages, features, kernels, strides, blocks),
so the planner's memory estimate and training use one class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from nnlight.nets.blocks import (
    NORMS,
    NormName,
    StackedConvBlocks,
    StackedResidualBlocks,
    feature_map_size,
    segmentation_head,
    transposed_conv,
)


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
            total += feature_map_size(stage, size)
            total += int(np.prod([self.features_per_stage[-(s + 2)], *size], dtype=np.int64))
            if self.deep_supervision or s == len(self.stages) - 1:
                total += int(np.prod([self.num_classes, *size], dtype=np.int64))
        return total


def _plain_encoder(dim: int, input_channels: int, features_per_stage: Sequence[int],
                   kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]], blocks: Sequence[int],
                   conv_bias: bool, norm: NormName) -> tuple[nn.Module | None, nn.Sequential]:
    """PlainConvUNet's encoder: ``blocks[s]`` conv blocks per stage, the first strided; no stem."""
    stages, channels = [], input_channels
    for s, features in enumerate(features_per_stage):
        stages.append(StackedConvBlocks(dim, blocks[s], channels, features, kernel_sizes[s], strides[s], conv_bias,
                                        norm))
        channels = features
    return None, nn.Sequential(*stages)


def _residual_encoder(dim: int, input_channels: int, features_per_stage: Sequence[int],
                      kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]], blocks: Sequence[int],
                      conv_bias: bool, norm: NormName) -> tuple[nn.Module | None, nn.Sequential]:
    """ResEnc's encoder: a conv stem, then ``blocks[s]`` ResNet-D basic blocks per stage."""
    stem = StackedConvBlocks(dim, 1, input_channels, features_per_stage[0], kernel_sizes[0], [1] * dim, conv_bias,
                             norm)
    stages, channels = [], features_per_stage[0]
    for s, features in enumerate(features_per_stage):
        stages.append(StackedResidualBlocks(dim, blocks[s], channels, features, kernel_sizes[s], strides[s],
                                            conv_bias, norm))
        channels = features
    return stem, nn.Sequential(*stages)


_ENCODERS = {"PlainConvUNet": _plain_encoder, "ResidualEncoderUNet": _residual_encoder}
_BLOCKS_ARGUMENT = {"PlainConvUNet": "n_conv_per_stage", "ResidualEncoderUNet": "n_blocks_per_stage"}
NetworkName = Literal["PlainConvUNet", "ResidualEncoderUNet"]


class _UNetBase(nn.Module):
    """An encoder of the plan's kind and nnU-Net's decoder, under dynamic-network-architectures' weight names."""

    def __init__(self, encoder: NetworkName, input_channels: int, num_classes: int, n_stages: int,
                 features_per_stage: Sequence[int], kernel_sizes: Sequence[Sequence[int]],
                 strides: Sequence[Sequence[int]], blocks_per_stage: Sequence[int],
                 n_conv_per_stage_decoder: Sequence[int], conv_bias: bool, deep_supervision: bool,
                 norm: NormName) -> None:
        super().__init__()
        _check_lengths(n_stages, features_per_stage=features_per_stage, kernel_sizes=kernel_sizes, strides=strides,
                       **{_BLOCKS_ARGUMENT[encoder]: blocks_per_stage},
                       n_conv_per_stage_decoder=n_conv_per_stage_decoder)
        dim = len(strides[0])
        self.strides = [list(s) for s in strides]
        self.encoder_stem, self.encoder_stages = _ENCODERS[encoder](
            dim, input_channels, features_per_stage, kernel_sizes, strides, blocks_per_stage, conv_bias, norm)
        self.decoder = UNetDecoder(dim, features_per_stage, kernel_sizes, strides, n_conv_per_stage_decoder,
                                   num_classes, conv_bias, deep_supervision, norm)

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
        total = feature_map_size(self.encoder_stem, size) if self.encoder_stem is not None else 0
        for stage, stride in zip(self.encoder_stages, self.strides, strict=True):
            total += feature_map_size(stage, size)
            size = [i // s for i, s in zip(size, stride, strict=True)]
        return int(total + self.decoder.compute_conv_feature_map_size(patch_size))


class PlainConvUNet(_UNetBase):
    """nnU-Net's default U-Net: ``n_conv_per_stage`` conv blocks per encoder stage, strided-conv downsampling."""

    def __init__(self, input_channels: int, num_classes: int, n_stages: int, features_per_stage: Sequence[int],
                 kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]],
                 n_conv_per_stage: Sequence[int], n_conv_per_stage_decoder: Sequence[int],
                 conv_bias: bool = True, deep_supervision: bool = True, norm: NormName = "instance") -> None:
        super().__init__("PlainConvUNet", input_channels, num_classes, n_stages, features_per_stage, kernel_sizes,
                         strides, n_conv_per_stage, n_conv_per_stage_decoder, conv_bias, deep_supervision, norm)


class ResidualEncoderUNet(_UNetBase):
    """nnU-Net ResEnc: a conv stem, ResNet-D basic blocks in the encoder, the plain decoder."""

    def __init__(self, input_channels: int, num_classes: int, n_stages: int, features_per_stage: Sequence[int],
                 kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]],
                 n_blocks_per_stage: Sequence[int], n_conv_per_stage_decoder: Sequence[int],
                 conv_bias: bool = True, deep_supervision: bool = True, norm: NormName = "instance") -> None:
        super().__init__("ResidualEncoderUNet", input_channels, num_classes, n_stages, features_per_stage,
                         kernel_sizes, strides, n_blocks_per_stage, n_conv_per_stage_decoder, conv_bias,
                         deep_supervision, norm)


class PlanUNet(_UNetBase):
    """The network option ``network=default``: the U-Net the plan describes (``architecture``, the plan's
    ``network`` PlainConvUNet or ResidualEncoderUNet with its stages, kernels, strides and blocks), with the same
    modules and weight names as that class, so nnU-Net's weights load into it and export from it unchanged."""

    # for prediction: the heads keep their weights, only the full-size output is computed
    inference_arguments: ClassVar[dict[str, Any]] = {"deep_supervision": False}

    def __init__(self, input_channels: int, num_classes: int, architecture: Mapping[str, Any],
                 deep_supervision: bool = True, norm: NormName = "instance") -> None:
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: choose one of {', '.join(NORMS)}")
        if architecture.get("network") not in _ENCODERS:
            raise ValueError(f"architecture.network={architecture.get('network')!r}: choose one of "
                             f"{', '.join(_ENCODERS)}")
        super().__init__(architecture["network"], input_channels, num_classes, architecture["n_stages"],
                         architecture["features_per_stage"], architecture["kernel_sizes"], architecture["strides"],
                         architecture["blocks_per_stage"], architecture["n_conv_per_stage_decoder"],
                         architecture.get("conv_bias", True), deep_supervision, norm)


NETWORKS: dict[str, type[_UNetBase]] = {"PlainConvUNet": PlainConvUNet, "ResidualEncoderUNet": ResidualEncoderUNet}


def build_network(name: NetworkName, **kwargs: Any) -> _UNetBase:
    """Instantiate a network by its plan name (a fixed registry — never an import path from a config)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    return NETWORKS[name](**kwargs)
