"""A network named in a run folder or model file: only listed or trusted classes, built from plain arguments that
cannot make the constructor download, read or write anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnlight.model.network import FILE_NETWORKS, NetworkChoice, file_argument_problem
from nnlight.utils.errors import UserError

SEGRESNET = {"target": "monai.networks.nets.SegResNet", "arguments": {"init_filters": 8},
             "from_plan": {"spatial_dims": "spatial_dims", "in_channels": "input_channels",
                           "out_channels": "num_classes"}}


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where torch.hub would download to: must stay empty."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return home


@pytest.mark.parametrize(("data", "trusted", "message"), [
    # a MONAI class whose arguments download: not on the list, and refused for its argument even when trusted
    ({"target": "monai.networks.nets.HoVerNet", "arguments": {"pretrained_url": "file:///etc/passwd"}}, (),
     r"monai\.networks\.nets\.HoVerNet, not one of the networks nnlight builds from a file by itself"),
    ({"target": "monai.networks.nets.HoVerNet", "arguments": {"pretrained_url": "http://example.org/w.pth"}},
     ("monai.networks.nets",), r"network argument pretrained_url='http://example.org/w.pth' names a URL or a path"),
    ({"target": "monai.networks.nets.DenseNet121", "arguments": {"pretrained": True}}, ("monai",),
     "network argument pretrained=True asks for a download or a file"),
    ({**SEGRESNET, "arguments": {"norm": ["group", {"num_groups": "../../x"}]}}, (),
     "names a URL or a path"),
    # the spelled path says nnlight, the class is torch's: trust follows the class's own module
    ({"target": "nnlight.nets.unet.torch.nn.Identity"}, (), "not one of the networks nnlight builds from a file"),
    ({"target": "nnlight.nets.unet.torch.nn.Identity"}, ("nnlight.nets",),
     r"is the class torch\.nn\.modules\.linear\.Identity, defined outside the trusted module\(s\) nnlight\.nets"),
    ({"target": "nnlight.nets.PlanUNet.__init__.__globals__"}, ("nnlight",), "defined outside|no such class|not a"),
])
def test_a_network_from_a_file_is_refused_naming_why(data: dict, trusted: tuple[str, ...], message: str,
                                                     torch_home: Path) -> None:
    pytest.importorskip("monai", reason='pip install "nnlight[monai]"')
    with pytest.raises(UserError, match=message):
        NetworkChoice.from_json(data, "run/inference.json", trusted)
    assert not torch_home.exists()  # nothing fetched


def test_listed_networks_and_trusted_modules_load() -> None:
    pytest.importorskip("monai", reason='pip install "nnlight[monai]"')
    assert NetworkChoice.from_json(SEGRESNET, "x").network_class.__name__ == "SegResNet"
    unet = {"target": "nnlight.nets.PlanUNet", "arguments": {"norm": "instance", "deep_supervision": True},
            "from_plan": {"input_channels": "input_channels", "num_classes": "num_classes",
                          "architecture": "architecture"}}
    assert NetworkChoice.from_json(unet, "x").is_plan_unet
    # a MONAI class off the list loads when the user trusts MONAI's networks, with plain arguments
    basic = {"target": "monai.networks.nets.BasicUNet", "arguments": {"features": [8, 8, 16, 32, 64, 8]},
             "from_plan": {"spatial_dims": "spatial_dims", "in_channels": "input_channels",
                           "out_channels": "num_classes"}}
    with pytest.raises(UserError, match=r"trusted_networks=\[monai\.networks\.nets\]"):
        NetworkChoice.from_json(basic, "x")
    assert NetworkChoice.from_json(basic, "x", ("monai.networks.nets",)).short_name == "BasicUNet"
    assert all(t.count(".") >= 2 for t in FILE_NETWORKS)


@pytest.mark.parametrize(("name", "value", "refused"), [
    ("pretrained", True, True), ("pretrained", False, False), ("pretrained", None, False),
    ("weights_path", "w.pth", True), ("load_from", "x", True), ("download", 1, True),
    ("dropout_path_rate", 0.1, False),  # a rate, not a path
    ("norm_name", "instance", False), ("act", ["leakyrelu", {"negative_slope": 0.01}], False),
    ("norm", "~/evil", True), ("mode", "s3://bucket/w", True), ("kernel_size", [3, 3], False),
])
def test_file_argument_problem(name: str, value: object, refused: bool) -> None:
    assert (file_argument_problem(name, value) is not None) is refused
