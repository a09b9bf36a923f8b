"""Parameter names of nnlight's U-Nets vs. ``dynamic-network-architectures`` (what nnU-Net checkpoints hold).

The two have the same layers in the same order; only the names differ. nnU-Net's state dicts also name
every conv and norm twice (``conv`` and ``all_modules.0``, ``norm`` and ``all_modules.1``) and the whole
encoder a second time inside the decoder (``decoder.encoder.*``): those aliases are dropped on import and
written back on export, so nnU-Net's ``load_state_dict`` finds every key it expects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from nnlight.nets.unet import NetworkName

_CONV_OR_NORM = re.compile(r"^(?P<block>.+)\.(?P<layer>conv|norm)\.(?P<param>[A-Za-z_]+)$")
_ALIAS_INDEX = {"conv": 0, "norm": 1}  # position in nnU-Net's all_modules (no dropout in nnU-Net's plans)
_OWN_STAGE = re.compile(r"^encoder_stages\.(\d+)\.")
_NNUNET_STAGE = re.compile(r"^encoder\.stages\.(\d+)\.")


def _stage_suffix(network: NetworkName) -> str:
    """A plain U-Net stage is ``nn.Sequential(StackedConvBlocks)`` in nnU-Net (``stages.<s>.0.``); a ResEnc
    stage is the residual stack itself."""
    return ".0." if network == "PlainConvUNet" else "."


def to_nnunet_state_dict(state: Mapping[str, torch.Tensor], network: NetworkName) -> dict[str, torch.Tensor]:
    """nnlight names → nnU-Net's, aliases included (the same tensors under each name)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key.replace("encoder_stem.", "encoder.stem.", 1) if key.startswith("encoder_stem.") else key
        name = _OWN_STAGE.sub(lambda m: f"encoder.stages.{m.group(1)}{_stage_suffix(network)}", name, count=1)
        renamed[name] = tensor
        match = _CONV_OR_NORM.match(name)
        if match:
            renamed[f"{match['block']}.all_modules.{_ALIAS_INDEX[match['layer']]}.{match['param']}"] = tensor
    encoder = {f"decoder.{k}": v for k, v in renamed.items() if k.startswith("encoder.")}
    return {**renamed, **encoder}


def from_nnunet_state_dict(state: Mapping[str, torch.Tensor], network: NetworkName) -> dict[str, torch.Tensor]:
    """nnU-Net names → nnlight's: aliases dropped, a DDP/compile prefix (``module.``, ``_orig_mod.``) removed.
    Keys it does not know stay as they are, so ``load_state_dict`` names them."""
    suffix = _stage_suffix(network)
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key.removeprefix("module.").removeprefix("_orig_mod.")
        if name.startswith("decoder.encoder.") or ".all_modules." in name:
            continue
        if name.startswith("encoder.stem."):
            name = "encoder_stem." + name.removeprefix("encoder.stem.")
        else:
            match = _NNUNET_STAGE.match(name)
            if match and name.startswith(f"encoder.stages.{match.group(1)}{suffix}"):
                name = f"encoder_stages.{match.group(1)}." + name[len(f"encoder.stages.{match.group(1)}{suffix}"):]
        renamed[name] = tensor
    return renamed
