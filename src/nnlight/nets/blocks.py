"""Building blocks of nnU-Net's U-Nets: conv-norm-nonlin stacks and ResNet-D residual blocks.

Each block reports ``compute_conv_feature_map_size``: the number of output elements of its convolutions
for a given input size, nnU-Net's proxy for activation memory used by the planner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, cast

import numpy as np
import torch
from torch import nn

# torch types each class for its own dimension (an int or a 2- or 3-tuple); here one call builds either
_CONV: dict[int, Callable[..., nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED_CONV: dict[int, Callable[..., nn.Module]] = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
NormName = Literal["instance", "batch"]
# nnU-Net uses instance norm; nnUNetTrainerBN swaps in batch norm (same eps, affine)
NORMS: dict[str, dict[int, type[nn.Module]]] = {"instance": {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
                                               "batch": {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}}
_AVG_POOL: dict[int, Callable[..., nn.Module]] = {2: nn.AvgPool2d, 3: nn.AvgPool3d}


class FeatureMapSized(Protocol):
    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int: ...


def feature_map_size(block: nn.Module, size: Sequence[int]) -> int:
    """A block's ``compute_conv_feature_map_size`` (every block of these networks has one; a container's items
    are typed as plain modules)."""
    return cast(FeatureMapSized, block).compute_conv_feature_map_size(size)


def _elements(channels: int, size: Sequence[int]) -> int:
    return int(np.prod([channels, *size], dtype=np.int64))


def _strided(size: Sequence[int], stride: Sequence[int]) -> list[int]:
    return [int(i) // int(s) for i, s in zip(size, stride, strict=True)]


class ConvNormNonlin(nn.Module):
    """Conv (same padding) → norm (instance or batch, affine) → LeakyReLU; the nonlinearity is optional."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], conv_bias: bool, nonlin: bool = True, norm_eps: float = 1e-5,
                 norm: NormName = "instance") -> None:
        super().__init__()
        self.stride = list(stride)
        self.out_channels = out_channels
        self.conv = _CONV[dim](in_channels, out_channels, list(kernel_size), list(stride),
                               padding=[(k - 1) // 2 for k in kernel_size], bias=conv_bias)
        self.norm = NORMS[norm][dim](out_channels, eps=norm_eps, affine=True)
        self.nonlin = nn.LeakyReLU(inplace=True) if nonlin else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.norm(self.conv(x)))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        return _elements(self.out_channels, _strided(input_size, self.stride))


class StackedConvBlocks(nn.Module):
    """``n`` ConvNormNonlin blocks; only the first one is strided."""

    def __init__(self, dim: int, num_convs: int, in_channels: int, out_channels: int,
                 kernel_size: Sequence[int], first_stride: Sequence[int], conv_bias: bool,
                 norm: NormName = "instance") -> None:
        super().__init__()
        ones = [1] * dim
        self.first_stride = list(first_stride)
        self.convs = nn.Sequential(*[
            ConvNormNonlin(dim, in_channels if i == 0 else out_channels, out_channels, kernel_size,
                           first_stride if i == 0 else ones, conv_bias, norm=norm)
            for i in range(num_convs)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        total = feature_map_size(self.convs[0], input_size)
        size = _strided(input_size, self.first_stride)
        return total + sum(feature_map_size(c, size) for c in list(self.convs)[1:])


class BasicBlockD(nn.Module):
    """ResNet-D basic block: two convs; the skip average-pools (if strided) then projects with a 1x1 conv."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], conv_bias: bool, norm: NormName = "instance") -> None:
        super().__init__()
        self.stride = list(stride)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv1 = ConvNormNonlin(dim, in_channels, out_channels, kernel_size, stride, conv_bias, norm=norm)
        self.conv2 = ConvNormNonlin(dim, out_channels, out_channels, kernel_size, [1] * dim, conv_bias,
                                    nonlin=False, norm=norm)
        self.nonlin2 = nn.LeakyReLU(inplace=True)
        has_stride = any(s != 1 for s in stride)
        skip: list[nn.Module] = []
        if has_stride:
            skip.append(_AVG_POOL[dim](list(stride), list(stride)))
        if in_channels != out_channels:
            skip.append(ConvNormNonlin(dim, in_channels, out_channels, [1] * dim, [1] * dim, False, nonlin=False,
                                       norm=norm))
        self.skip = nn.Sequential(*skip) if skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin2(self.conv2(self.conv1(x)) + self.skip(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        size = _strided(input_size, self.stride)
        projected = self.in_channels != self.out_channels or list(size) != list(input_size)
        return _elements(self.out_channels, size) * (3 if projected else 2)


class StackedResidualBlocks(nn.Module):
    def __init__(self, dim: int, num_blocks: int, in_channels: int, out_channels: int,
                 kernel_size: Sequence[int], first_stride: Sequence[int], conv_bias: bool,
                 norm: NormName = "instance") -> None:
        super().__init__()
        self.first_stride = list(first_stride)
        self.blocks = nn.Sequential(*[
            BasicBlockD(dim, in_channels if i == 0 else out_channels, out_channels, kernel_size,
                        first_stride if i == 0 else [1] * dim, conv_bias, norm)
            for i in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        total = feature_map_size(self.blocks[0], input_size)
        size = _strided(input_size, self.first_stride)
        return total + sum(feature_map_size(b, size) for b in list(self.blocks)[1:])


def transposed_conv(dim: int, in_channels: int, out_channels: int, stride: Sequence[int],
                    bias: bool) -> nn.Module:
    return _TRANSPOSED_CONV[dim](in_channels, out_channels, list(stride), list(stride), bias=bias)


def segmentation_head(dim: int, in_channels: int, num_classes: int) -> nn.Module:
    return _CONV[dim](in_channels, num_classes, 1, 1, 0, bias=True)
