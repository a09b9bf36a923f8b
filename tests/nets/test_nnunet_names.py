"""nnlight's U-Net parameter names vs. dynamic-network-architectures' (the names in nnU-Net checkpoints).

The expected names and counts were read off dynamic-network-architectures 0.4 (installed with nnU-Net 2.8.1)
for the same networks; nnU-Net's model built with them gave the same outputs as nnlight's with mapped weights.
"""

from __future__ import annotations

import pytest
import torch

from nnlight.nets import build_network
from nnlight.nets.nnunet_names import from_nnunet_state_dict, to_nnunet_state_dict

ARGS = {"n_stages": 3, "features_per_stage": [4, 8, 16], "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True}
BLOCKS = {"PlainConvUNet": {"n_conv_per_stage": [2, 2, 2]}, "ResidualEncoderUNet": {"n_blocks_per_stage": [1, 2, 2]}}
# (network, norm) -> key count in nnU-Net's state dict for ARGS with 2 channels in, 3 classes out
NNUNET_KEY_COUNTS = {("PlainConvUNet", "instance"): 136, ("ResidualEncoderUNet", "instance"): 240,
                     ("PlainConvUNet", "batch"): 232, ("ResidualEncoderUNet", "batch"): 420}
NNUNET_NAMES = {
    "PlainConvUNet": ["encoder.stages.0.0.convs.0.conv.weight", "encoder.stages.0.0.convs.0.all_modules.0.weight",
                      "encoder.stages.2.0.convs.1.all_modules.1.bias", "decoder.encoder.stages.1.0.convs.0.norm.weight",
                      "decoder.transpconvs.0.weight", "decoder.stages.1.convs.1.all_modules.0.bias",
                      "decoder.seg_layers.1.weight"],
    "ResidualEncoderUNet": ["encoder.stem.convs.0.conv.weight", "encoder.stem.convs.0.all_modules.1.weight",
                            "encoder.stages.1.blocks.0.conv1.all_modules.0.weight",
                            "encoder.stages.1.blocks.0.skip.1.conv.weight",
                            "encoder.stages.2.blocks.1.conv2.norm.bias",
                            "decoder.encoder.stages.1.blocks.0.skip.1.all_modules.1.weight",
                            "decoder.seg_layers.0.bias"],
}


def _network(name: str, norm: str) -> torch.nn.Module:
    return build_network(name, input_channels=2, num_classes=3, norm=norm, deep_supervision=False,
                         **ARGS, **BLOCKS[name])


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("name", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_names_map_to_nnunets_and_back(name: str, norm: str) -> None:
    network = _network(name, norm)
    own = network.state_dict()
    theirs = to_nnunet_state_dict(own, name)
    assert len(theirs) == NNUNET_KEY_COUNTS[(name, norm)]
    assert set(NNUNET_NAMES[name]) <= set(theirs)
    back = from_nnunet_state_dict(theirs, name)
    assert back.keys() == own.keys()
    assert all(back[k] is own[k] for k in own)


def test_ddp_and_compile_prefixes_are_removed_and_unknown_keys_are_kept_to_be_named() -> None:
    theirs = to_nnunet_state_dict(_network("PlainConvUNet", "instance").state_dict(), "PlainConvUNet")
    wrapped = {f"module._orig_mod.{k}": v for k, v in theirs.items()} | {"module.extra.weight": torch.zeros(1)}
    back = from_nnunet_state_dict(wrapped, "PlainConvUNet")
    assert "extra.weight" in back and "encoder_stages.0.convs.0.conv.weight" in back
