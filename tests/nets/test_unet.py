"""Parity with nnU-Net's own architectures (the ``dynamic-network-architectures`` package).

The reference numbers below were computed once with dynamic-network-architectures 0.4.4 (installed with
nnunetv2 2.8.1 in a separate environment, not a dependency of nnlight) by building PlainConvUNet /
ResidualEncoderUNet with conv_bias=True, InstanceNorm(eps=1e-5, affine=True), LeakyReLU(inplace=True),
2 convs per stage (plain) or (1, 3, 4, 6, 6, 6, 6) residual blocks and 1 decoder conv (ResEnc), and
reading ``sum(p.numel() for p in net.parameters())`` and ``net.compute_conv_feature_map_size(patch)``.
"""

from __future__ import annotations

import pytest
import torch

from nnlight.nets import PlainConvUNet, ResidualEncoderUNet, build_network

PLANS = {
    # the Hippocampus golden plan of NNUNET_REFERENCE.md (3 classes)
    "hippocampus_3d": dict(input_channels=1, num_classes=3, features_per_stage=[32, 64, 128, 256],
                           kernel_sizes=[[3, 3, 3]] * 4, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
                           patch=[40, 56, 40]),
    "hippocampus_2d": dict(input_channels=1, num_classes=3, features_per_stage=[32, 64, 128, 256],
                           kernel_sizes=[[3, 3]] * 4, strides=[[1, 1], [2, 2], [2, 2], [2, 2]], patch=[56, 40]),
    # a 7-stage anisotropic plan: in-plane-only pooling and 1x3x3 kernels at the top
    "aniso_7stage": dict(input_channels=2, num_classes=4, features_per_stage=[32, 64, 128, 256, 320, 320, 320],
                         kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                         strides=[[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]],
                         patch=[20, 320, 256]),
}

# (plan, network, deep_supervision) -> (parameters, compute_conv_feature_map_size)
REFERENCE = {
    ("hippocampus_3d", "plain", False): (5603177, 19174400),
    ("hippocampus_3d", "plain", True): (5603177, 19212200),
    ("hippocampus_3d", "resenc", False): (25895593, 23609600),
    ("hippocampus_3d", "resenc", True): (25895593, 23647400),
    ("hippocampus_2d", "plain", False): (1928489, 651840),
    ("hippocampus_2d", "plain", True): (1928489, 653940),
    ("hippocampus_2d", "resenc", False): (8728681, 1001280),
    ("hippocampus_2d", "resenc", True): (8728681, 1003380),
    ("aniso_7stage", "plain", False): (44579896, 484953600),
    ("aniso_7stage", "plain", True): (44579896, 487060800),
    ("aniso_7stage", "resenc", False): (140404728, 707974400),
    ("aniso_7stage", "resenc", True): (140404728, 710081600),
}


def _build(plan_name: str, kind: str, deep_supervision: bool) -> tuple[torch.nn.Module, list[int]]:
    plan = dict(PLANS[plan_name])
    patch = plan.pop("patch")
    n = len(plan["features_per_stage"])
    with torch.device("meta"):
        if kind == "plain":
            net = PlainConvUNet(n_stages=n, n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1),
                                deep_supervision=deep_supervision, **plan)
        else:
            net = ResidualEncoderUNet(n_stages=n, n_blocks_per_stage=[1, 3, 4, 6, 6, 6, 6][:n],
                                      n_conv_per_stage_decoder=[1] * (n - 1), deep_supervision=deep_supervision,
                                      **plan)
    return net, patch


@pytest.mark.parametrize(("plan_name", "kind", "deep_supervision"), sorted(REFERENCE))
def test_parameters_and_feature_map_size_match_nnunet(plan_name: str, kind: str, deep_supervision: bool) -> None:
    net, patch = _build(plan_name, kind, deep_supervision)
    params = sum(p.numel() for p in net.parameters())
    assert (params, net.compute_conv_feature_map_size(patch)) == REFERENCE[(plan_name, kind, deep_supervision)]


@pytest.mark.parametrize("kind", ["plain", "resenc"])
def test_forward_shapes_with_deep_supervision(kind: str) -> None:
    plan = dict(PLANS["hippocampus_2d"])
    plan.pop("patch")
    net = build_network("PlainConvUNet" if kind == "plain" else "ResidualEncoderUNet", n_stages=4,
                        **{"n_conv_per_stage" if kind == "plain" else "n_blocks_per_stage": [1, 1, 1, 1]},
                        n_conv_per_stage_decoder=[1, 1, 1], deep_supervision=True, **plan)
    outputs = net(torch.randn(2, 1, 32, 24))
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 32, 24), (2, 3, 16, 12), (2, 3, 8, 6)]
    net.decoder.deep_supervision = False
    assert tuple(net(torch.randn(1, 1, 32, 24)).shape) == (1, 3, 32, 24)


def test_unknown_network_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown network"):
        build_network("UNetFromSomewhere")  # type: ignore[arg-type]
