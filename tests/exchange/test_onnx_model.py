"""An ONNX folder is data: a spec that is not nnlight's, names a file outside the folder or is malformed is refused
with one line before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnlight.exchange.onnx_model import ONNX_FORMAT, onnx_model
from nnlight.utils.errors import UserError

GOOD_INFERENCE = {"tile_size": [8, 8], "mirror_axes": [0, 1]}


def _spec(folder: Path, **changes: object) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "fold_0.onnx").write_bytes(b"not used: the spec is refused first")
    spec = {"format": ONNX_FORMAT, "networks": ["fold_0.onnx"], "plan": {}, "inference": GOOD_INFERENCE,
            "postprocessing": None, **changes}
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


@pytest.mark.parametrize(("changes", "message"), [
    ({"format": "something-else"}, "not an nnlight ONNX model"),
    ({"networks": ["../../etc/passwd"]}, "network file ../../etc/passwd is not a fold_<k>.onnx beside it"),
    ({"networks": ["fold_1.onnx"]}, "network file fold_1.onnx is not a fold_<k>.onnx beside it"),
    ({"networks": []}, "network file (none)"),
    ({"inference": {"tile_size": "big"}}, "malformed"),
    ({"postprocessing": {"keep": True}}, "malformed"),
], ids=["format", "escaping-name", "missing-file", "no-network", "tile", "rules"])
def test_a_wrong_spec_is_refused_naming_it(tmp_path: Path, changes: dict, message: str) -> None:
    folder = _spec(tmp_path / "model", **changes)
    with pytest.raises(UserError, match=r"spec\.json") as error:
        onnx_model(folder)
    assert message in str(error.value)
