"""An ONNX folder is data: a spec that is not nnlight's, names a file outside the folder or is malformed, and a
network file that is not a self-contained ONNX graph, are refused with one line before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnlight.exchange.onnx_model import ONNX_FORMAT, _check_output_folder, onnx_model
from nnlight.planning.plan_configs import configuration_values
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.utils.errors import UserError

pytestmark = pytest.mark.integration

pytest.importorskip("onnxruntime", reason='pip install "nnlight[onnx]"')
GOOD_INFERENCE = {"tile_size": [16, 16], "mirror_axes": [0, 1]}


@pytest.fixture(scope="module")
def good(preprocessed: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A network ``image (b, 2, y, x) -> scores (b, 3, y, x)`` as ONNX and the demo's 2d plan."""
    folder, plans = preprocessed
    plan = configuration_values(plans, plans.configurations["2d"], load_dataset_json(folder / "dataset.json"))
    network = tmp_path_factory.mktemp("onnx") / "fold_0.onnx"
    torch.onnx.export(torch.nn.Conv2d(2, 3, 3, padding=1), (torch.zeros(1, 2, 16, 16),), str(network),
                      input_names=["image"], output_names=["scores"], dynamo=False,
                      dynamic_axes={k: {0: "b", 2: "y", 3: "x"} for k in ("image", "scores")})
    return network, json.loads(json.dumps(plan))


def _model(folder: Path, good: tuple[Path, dict[str, Any]], network: bytes | None = None, **changes: object) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "fold_0.onnx").write_bytes(good[0].read_bytes() if network is None else network)
    spec = {"format": ONNX_FORMAT, "networks": ["fold_0.onnx"], "plan": good[1], "inference": GOOD_INFERENCE,
            "postprocessing": None, **changes}
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


def _plan(good: tuple[Path, dict[str, Any]], **changes: object) -> dict[str, Any]:
    return {**good[1], **changes}


def test_a_good_onnx_folder_predicts(tmp_path: Path, good: tuple[Path, dict[str, Any]]) -> None:
    predictor, rules = onnx_model(_model(tmp_path / "model", good), mirroring=False)
    image = np.random.default_rng(0).normal(size=(2, 1, 20, 18)).astype(np.float32)
    assert predictor.predict(image, (1.0, 1.0, 1.0)).segmentation.shape == (1, 20, 18) and rules is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"format": "something-else"}, "not an nnlight ONNX model"),
    ({"networks": ["../../etc/passwd"]}, "a list of distinct fold_<k>.onnx names"),
    ({"networks": ["fold_1.onnx"]}, "fold_1.onnx is missing or not a file"),
    ({"networks": []}, "networks=[]"),
    ({"networks": ["fold_0.onnx", "fold_0.onnx"]}, "distinct"),
    ({"inference": {"tile_size": "big", "mirror_axes": []}}, "inference.tile_size='big'"),
    ({"inference": {"tile_size": [1 << 20, 16], "mirror_axes": []}}, "inference.tile_size=[1048576, 16]: 2 sizes"),
    ({"inference": {"tile_size": [0, 16], "mirror_axes": []}}, "inference.tile_size=[0, 16]"),
    ({"inference": {"tile_size": [-16, 16], "mirror_axes": []}}, "inference.tile_size=[-16, 16]"),
    ({"inference": {"tile_size": [16, 16, 16], "mirror_axes": []}}, "inference.tile_size=[16, 16, 16]: 2 sizes"),
    ({"inference": {"tile_size": [16, 16], "mirror_axes": [7]}}, "mirror_axes=[7]: distinct axes from 0 to 1"),
    ({"inference": None}, "inference: the tile and mirror axes"),
    ({"postprocessing": {"keep": True}}, "postprocessing is malformed"),
    ({"plan": None}, "plan: the plan is not a mapping"),
], ids=["format", "escaping-name", "missing-file", "no-network", "twice", "tile-text", "tile-huge", "tile-0",
        "tile-negative", "tile-axes", "mirror-axes", "no-inference", "rules", "no-plan"])
def test_a_wrong_spec_is_refused_naming_it(tmp_path: Path, good: tuple[Path, dict[str, Any]], changes: dict,
                                           message: str) -> None:
    folder = _model(tmp_path / "model", good, **changes)
    with pytest.raises(UserError, match=r"spec\.json") as error:
        onnx_model(folder)
    assert message in str(error.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"spacing": [-1.0, 1.0]}, "spacing=[-1.0, 1.0]: 2 or 3 numbers from 1e-06 to 1e+06"),
    ({"spacing": [1e-12, 1.0]}, "spacing=[1e-12, 1.0]"),
    ({"spacing": ["1", "1"]}, "spacing=['1', '1']"),
    ({"spacing": [float("nan"), 1.0]}, "spacing=[nan, 1.0]"),
    ({"labels": {"background": 0}}, "labels: no class besides background"),
    ({"labels": {"background": 0, "a": "one"}}, 'label "a" has value'),
    ({"transpose_forward": [0, 0, 1]}, "transpose_forward=[0, 0, 1]"),
    ({"transpose_backward": [2, 1, 0]}, "its inverse"),
    ({"channel_names": []}, "channel_names=[]"),
    ({"normalization_schemes": ["EvalNormalization", "ZScoreNormalization"]}, "normalization_schemes="),
    ({"use_mask_for_norm": [True]}, "use_mask_for_norm=[True]"),
    ({"dataset": "../../x"}, "not a dataset name"),
    ({"resampling": {"data": {"order": 99}}}, "order and order_z from 0 to 5"),
    ({"instances": {"dims": 7}}, "instances"),
])
def test_a_wrong_plan_in_the_spec_is_refused_naming_the_value(tmp_path: Path, good: tuple[Path, dict[str, Any]],
                                                              changes: dict, message: str) -> None:
    folder = _model(tmp_path / "model", good, plan=_plan(good, **changes))
    with pytest.raises(UserError, match=r"spec\.json: plan: ") as error:
        onnx_model(folder)
    assert message in str(error.value)


def test_network_files_must_be_whole_onnx_graphs_inside_the_folder(tmp_path: Path,
                                                                   good: tuple[Path, dict[str, Any]]) -> None:
    for content, message in ((b"", "0 bytes"), (b"hello, I am a text file\n", "not an ONNX network"),
                             (b"\x08\x07", "not a network nnlight exported")):
        with pytest.raises(UserError, match=message):
            onnx_model(_model(tmp_path / f"m{len(content)}", good, network=content))
    linked = _model(tmp_path / "linked", good)
    (linked / "fold_0.onnx").unlink()
    os.symlink(good[0], linked / "fold_0.onnx")
    with pytest.raises(UserError, match=r"fold_0\.onnx is a link"):
        onnx_model(linked)
    external = _model(tmp_path / "external", good)  # weights kept in a file outside the folder
    import onnx

    model = onnx.load(str(good[0]))
    onnx.save_model(model, str(external / "fold_0.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    graph = onnx.load(str(external / "fold_0.onnx"), load_external_data=False)
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../../etc/passwd"
    onnx.save_model(graph, str(external / "fold_0.onnx"))
    with pytest.raises(UserError, match="keeps weights in external files"):
        onnx_model(external)


def test_an_export_writes_only_into_a_new_empty_or_own_folder(tmp_path: Path,
                                                              good: tuple[Path, dict[str, Any]]) -> None:
    _check_output_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    _check_output_folder(tmp_path / "empty")
    _check_output_folder(_model(tmp_path / "earlier_export", good))
    interrupted = _model(tmp_path / "interrupted", good)
    (interrupted / "spec.json").unlink()  # an export removes its spec first and writes it last
    _check_output_folder(interrupted)
    dataset = tmp_path / "Dataset900_Demo"
    (dataset / "imagesTr").mkdir(parents=True)
    (dataset / "dataset.json").write_text("{}")
    with pytest.raises(UserError, match="holds imagesTr; an ONNX export writes only into a new or empty folder"):
        _check_output_folder(dataset)
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "dataset.json").write_text("{}")
    with pytest.raises(UserError, match="files not written by nnlight-model export"):
        _check_output_folder(tmp_path / "lonely")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="a file; an ONNX export is a folder"):
        _check_output_folder(tmp_path / "file")
