"""init_from: which weights are taken, which are initialised afresh (and said), which differences are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnlight.model.pretrained import PretrainedWeights, check_fits, load_pretrained, read_pretrained
from nnlight.nets import build_network
from nnlight.utils.errors import UserError

ARGS = {"n_stages": 3, "features_per_stage": [4, 8, 16], "kernel_sizes": [[3, 3]] * 3,
        "strides": [[1, 1], [2, 2], [2, 2]], "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2]}


def _net(channels: int = 1, classes: int = 3, **changes: object) -> torch.nn.Module:
    return build_network("PlainConvUNet", input_channels=channels, num_classes=classes, **{**ARGS, **changes})


def _source(network: torch.nn.Module) -> PretrainedWeights:
    return PretrainedWeights(Path("source.ckpt"), {k: v.clone() for k, v in network.state_dict().items()})


def test_same_network_loads_every_tensor() -> None:
    source, target = _net(), _net()
    assert load_pretrained(target, _source(source)) == []
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(),
                                                 strict=True))


def test_other_classes_and_channels_reinitialise_heads_and_first_conv_and_say_so() -> None:
    source, target = _net(channels=2, classes=5), _net(channels=1, classes=3)
    fresh_before = {k: v.clone() for k, v in target.state_dict().items()}
    notes = load_pretrained(target, _source(source))
    assert any("first convolution" in n and "2 input channels in the source, 1 here" in n for n in notes)
    assert any("segmentation heads" in n and "5 outputs in the source, 3 here" in n for n in notes)
    state = target.state_dict()
    first = "encoder_stages.0.convs.0.conv.weight"
    assert torch.equal(state[first], fresh_before[first])  # kept as initialised
    second = "encoder_stages.1.convs.0.conv.weight"
    assert torch.equal(state[second], source.state_dict()[second])


@pytest.mark.parametrize("changes", [{"features_per_stage": [4, 8, 32]},
                                     {"n_stages": 4, "features_per_stage": [4, 8, 16, 16], "kernel_sizes": [[3, 3]] * 4,
                                      "strides": [[1, 1], [2, 2], [2, 2], [2, 2]], "n_conv_per_stage": [2] * 4,
                                      "n_conv_per_stage_decoder": [2] * 3}])
def test_another_architecture_is_refused_with_the_plan_transfer_command(changes: dict) -> None:
    with pytest.raises(UserError, match="plans_from="):
        check_fits(_source(_net(**changes)), _net().state_dict())


def test_a_folder_with_several_folds_asks_for_one(tmp_path: Path) -> None:
    for fold in (0, 1):
        (tmp_path / "model" / f"fold_{fold}").mkdir(parents=True)
        (tmp_path / "model" / f"fold_{fold}" / "plan.json").write_text("{}")
    with pytest.raises(UserError, match="fold_0"):
        read_pretrained(tmp_path / "model", "PlainConvUNet")
    with pytest.raises(UserError, match="no such file"):
        read_pretrained(tmp_path / "missing.ckpt", "PlainConvUNet")
