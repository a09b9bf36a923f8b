"""A trained configuration as ONNX: each fold's network as ``fold_<k>.onnx`` and ``spec.json`` with everything
around it, so the model runs where nnlight is not installed (onnxruntime alone), and ``nnlight-predict`` runs it
too, giving the PyTorch model's segmentation.

``spec.json`` holds the run's plan (channels and their normalization with the intensity statistics, target spacing,
the transpose, labels or regions and their order, an instance dataset's conversion), the sliding window's tile,
step and mirror axes, and the post-processing rules. A network takes ``image`` ``(batch, channels, *tile)`` and
gives ``scores`` ``(batch, classes, *tile)``; batch and spatial sizes are dynamic (any size the network's strides
divide). Loading an ONNX folder imports no code: the graph is data.

ONNX cannot carry a cascade (its second stage needs the first one's segmentation as input channels, made by
nnlight's preprocessing): such a model is refused.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlight.evaluation.selection import load_best
from nnlight.inference.model_plan import check_model_plan, mirror_axes_problem, tile_problem
from nnlight.inference.postprocessing import PostprocessingRules
from nnlight.inference.predictor import Predictor, TrainingChoices
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_bytes, atomic_write_json, atomic_write_named, load_json
from nnlight.utils.folders import CheckpointName, ModelFolder

ONNX_FORMAT = "nnlight-onnx-1"
SPEC = "spec.json"
NETWORK_FILE = re.compile(r"^fold_(\d+|all)\.onnx$")
OPSET = 17


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX models need onnx and onnxruntime: pip install \"nnlight[onnx]\"") from None
    return onnxruntime


def _model_to_export(results_root: Path, dataset: str, model: str) -> tuple[ModelFolder, Path | None]:
    """The configuration folder (``best``: the selected one, when it is a single configuration) and its rules."""
    dataset_results = results_root / dataset
    if model != "best":
        folder = ModelFolder(dataset_results / model)
        return folder, folder.postprocessing if folder.postprocessing.is_file() else None
    selected = load_best(dataset_results)
    if len(selected.members) != 1:
        raise UserError(f"model=best of {dataset} is an ensemble of {len(selected.members)} configurations; an ONNX "
                        "folder holds one configuration: export each (--model <configuration>/<experiment>)")
    return ModelFolder(selected.members[0][0]), selected.postprocessing_file


def export_onnx(results_root: Path, dataset: str, model: str, output: Path, checkpoint: CheckpointName = "final",
                folds: list[str] | None = None, trusted_networks: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``output/`` (fold_<k>.onnx, spec.json, dataset.json); every network is checked against PyTorch on a
    random tile before the spec is written. Returns the spec. ``trusted_networks``: modules whose network classes
    the run may name besides nnlight's list (the ONNX folder then needs none of them)."""
    onnxruntime = _onnxruntime()
    _check_output_folder(output)
    folder, postprocessing = _model_to_export(results_root, dataset, model)
    predictor = Predictor.from_model_folder(folder.path, folds, checkpoint, device="cpu", precision="32",
                                            trusted_networks=trusted_networks)
    if predictor.previous_stage is not None:
        raise UserError(f"{folder.path}: a cascade stage; ONNX cannot carry the low-res stage's segmentation as "
                        "input channels: export 3d_fullres or 3d_lowres instead")
    settings = predictor.inference
    (output / SPEC).unlink(missing_ok=True)  # written last: a folder whose export was interrupted is no model
    tile = torch.randn(1, predictor.facts.network_input_channels, *settings.tile_size)
    axes = {key: {0: "batch", **{a: f"axis{a}" for a in range(2, tile.ndim)}} for key in ("image", "scores")}
    names = []
    for network, run in zip(predictor.networks, predictor.model_folders, strict=True):
        name = f"{run.name}.onnx"

        def write(path: Path, network: torch.nn.Module = network) -> None:
            with warnings.catch_warnings():  # the legacy exporter (dynamic shapes without onnxscript) says it is
                warnings.simplefilter("ignore")  # legacy, and that instance norm uses the input's statistics
                torch.onnx.export(network, (tile,), str(path), input_names=["image"], output_names=["scores"],
                                  dynamic_axes=axes, opset_version=OPSET, dynamo=False)

        atomic_write_named(output / name, write)
        session = onnxruntime.InferenceSession(str(output / name), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            expected = network(tile).numpy()
        got = session.run(None, {"image": tile.numpy()})[0]
        if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-3, rtol=1e-3):
            raise UserError(f"{run}: its ONNX network gives other scores than PyTorch (max difference "
                            f"{np.abs(got - expected).max():.3g}); this network cannot be exported to ONNX")
        names.append(name)
    spec = {"format": ONNX_FORMAT, "networks": names, "plan": predictor.plan,
            "inference": {"tile_size": list(settings.tile_size), "mirror_axes": list(settings.mirror_axes),
                          "step_size": 0.5, "gaussian_sigma_scale": 1 / 8, "input": "image", "output": "scores",
                          "ensemble": "mean of the folds' softmax (sigmoid for regions)" if len(names) > 1 else None},
            "postprocessing": load_json(postprocessing) if postprocessing is not None else None}
    dataset_json = (predictor.model_folders[0] / "dataset.json").read_bytes()
    atomic_write_bytes(output / "dataset.json", dataset_json)
    atomic_write_json(output / SPEC, spec)
    return spec


_TEMP_FILE = re.compile(r"^\.(spec\.json|dataset\.json|fold_(\d+|all)\.onnx)\..+\.tmp(\.onnx)?$")


def _check_output_folder(output: Path) -> None:
    """An export writes only into a new or empty folder, or over an export of its own: a folder holding nothing but
    what an export writes, with its spec (or, interrupted before the spec, its networks). Never over other files."""
    if output.exists() and not output.is_dir():
        raise UserError(f"output={output}: a file; an ONNX export is a folder (name a new one)")
    entries = list(output.iterdir()) if output.is_dir() else []
    if not entries:
        return
    foreign = [e.name for e in entries if e.is_symlink() or not e.is_file() or not (
        e.name in (SPEC, "dataset.json") or NETWORK_FILE.match(e.name) or _TEMP_FILE.match(e.name))]
    spec = output / SPEC
    own = (spec.is_file() and _spec_format(spec) == ONNX_FORMAT) or \
        (not spec.exists() and any(NETWORK_FILE.match(e.name) for e in entries))
    if foreign or not own:
        shown = ", ".join(sorted(foreign)[:3]) or "files not written by nnlight-model export"
        raise UserError(f"output={output}: holds {shown}; an ONNX export writes only into a new or empty folder, or "
                        "over an earlier ONNX export — name a new folder")


def _spec_format(path: Path) -> object:
    try:
        spec = load_json(path)
    except UserError:
        return None
    return spec.get("format") if isinstance(spec, dict) else None


def is_onnx_model(folder: Path) -> bool:
    return (folder / SPEC).is_file()


class OnnxNetwork(torch.nn.Module):
    """An exported network run by onnxruntime, in the place of the PyTorch one (tiles in, scores out)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.session = _onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        scores = self.session.run(None, {"image": tiles.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(scores).to(tiles.device)


def onnx_model(folder: Path, mirroring: bool = True, step_size: float = 0.5
               ) -> tuple[Predictor, PostprocessingRules | None]:
    """An ONNX folder as a predictor (nnlight's preprocessing, sliding window and export around onnxruntime) and
    its post-processing rules. The spec is checked first like a plan (schema and bounds), and each network as a
    regular file beside it holding an ONNX graph with its weights inside (external data could name any file)."""
    where = str(folder / SPEC)
    spec = load_json(folder / SPEC)
    if not isinstance(spec, dict) or spec.get("format") != ONNX_FORMAT:
        raise UserError(f"{where}: not an nnlight ONNX model (format {ONNX_FORMAT!r}); export one with "
                        "nnlight-model export format=onnx")
    names, inference = spec.get("networks"), spec.get("inference")
    if not (isinstance(names, list) and names and all(isinstance(n, str) and NETWORK_FILE.match(n) for n in names)
            and len(set(names)) == len(names)):
        raise UserError(f"{where}: networks={names!r}: a list of distinct fold_<k>.onnx names; export the model again")
    check_model_plan(spec.get("plan"), f"{where}: plan")
    dims = len(spec["plan"]["spacing"])
    if not isinstance(inference, dict):
        raise UserError(f"{where}: inference: the tile and mirror axes; export the model again")
    problem = tile_problem(inference.get("tile_size"), dims, "inference.tile_size") or \
        mirror_axes_problem(inference.get("mirror_axes"), dims)
    if problem:
        raise UserError(f"{where}: {problem}; export the model again")
    try:
        rules = PostprocessingRules.from_json(spec["postprocessing"]) if spec.get("postprocessing") else None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{where}: postprocessing is malformed ({e!r}); export the model again") from None
    choices = TrainingChoices(list(inference["tile_size"]), tuple(inference["mirror_axes"]), network=None)
    networks = [_onnx_network(folder / name, where) for name in names]
    return Predictor(networks, spec["plan"], choices, mirroring, step_size, torch.device("cpu"), [folder],
                     precision="32"), rules


MAX_ONNX_BYTES = 2 << 30  # protobuf's limit for one file


def _onnx_network(path: Path, where: str) -> OnnxNetwork:
    """One exported network, refused unless it is a regular file holding a whole ONNX graph from ``image`` to
    ``scores`` whose weights are all inside it."""
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX models need onnx and onnxruntime: pip install \"nnlight[onnx]\"") from None
    if path.is_symlink() or not path.is_file():
        raise UserError(f"{where}: {path.name} is {'a link' if path.is_symlink() else 'missing or not a file'}; an "
                        "ONNX model's networks are regular files beside its spec (export the model again)")
    if not 0 < path.stat().st_size <= MAX_ONNX_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes; not an ONNX network nnlight exported")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise UserError(f"{path}: not an ONNX network ({type(e).__name__}); export the model again") from None
    inputs = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if not graph.node or inputs != ["image"] or [o.name for o in graph.output] != ["scores"]:
        raise UserError(f"{path}: not a network nnlight exported (inputs {inputs}, outputs "
                        f"{[o.name for o in graph.output]}; expected image -> scores)")
    if _uses_external_data(graph):
        raise UserError(f"{path}: keeps weights in external files; nnlight reads only networks whose weights are "
                        "inside the .onnx file (export the model again)")
    try:
        return OnnxNetwork(path)
    except Exception as e:  # onnxruntime's own exception types: the graph does not load
        problem = " ".join(str(e).split())[:300]
        raise UserError(f"{path}: onnxruntime cannot load it ({problem}); export the model again") from None


def _uses_external_data(graph: Any) -> bool:
    """Whether any tensor of ``graph`` (initializers, constants, subgraphs) points at data outside the file."""
    from onnx import AttributeProto, TensorProto

    graphs, tensors = [graph], []
    while graphs:
        current = graphs.pop()
        tensors += [*current.initializer, *(s.values for s in current.sparse_initializer)]
        for node in current.node:
            for attribute in node.attribute:
                if attribute.type == AttributeProto.TENSOR:
                    tensors.append(attribute.t)
                tensors += list(attribute.tensors)
                graphs += [*([attribute.g] if attribute.type == AttributeProto.GRAPH else []), *attribute.graphs]
    return any(t.data_location == TensorProto.EXTERNAL or len(t.external_data) > 0 for t in tensors)
