"""A trained model (one configuration, or what evaluate.py selected) as one file to hand to a colleague.

``<name>.zip`` holds ``nnlight_model.json`` (dataset, members and their folds, the checkpoint, the
post-processing rules) and, per member fold, what inference reads: ``plan.json``, ``inference.json``,
``dataset.json``, the nnU-Net plans copy, provenance and the network weights alone (``checkpoints/<name>.ckpt``
without optimizer state). ``predict.py model=<name>.zip`` predicts from it directly; ``nnlight-model install``
unpacks it under a results folder. Reading never unpickles code (checkpoints load ``weights_only``) and never
writes outside the target folder: entry names are checked before anything is extracted.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from nnlight import __version__
from nnlight.evaluation.postprocessing import PostprocessingRules
from nnlight.evaluation.selection import load_best
from nnlight.inference.predictor import TrainingChoices, find_runs, run_network_weights
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, atomic_write_named, load_json
from nnlight.utils.folders import CheckpointName, DatasetResults, ModelFolder, RunFolder

MANIFEST = "nnlight_model.json"
FORMAT = 1


@dataclass(frozen=True)
class ZipMember:
    model: str  # <configuration>/<experiment>, relative to the dataset's results
    folds: list[str]


@dataclass(frozen=True)
class ModelManifest:
    dataset: str
    members: list[ZipMember]
    checkpoint: CheckpointName
    postprocessing: PostprocessingRules | None
    requires: list[ZipMember] = field(default_factory=list)  # models the members predict with (a cascade's low-res)

    @property
    def folders(self) -> list[ZipMember]:
        return [*self.members, *self.requires]

    def to_json(self) -> dict[str, Any]:
        rules = None if self.postprocessing is None else self.postprocessing.to_json()
        return {"format": FORMAT, "nnlight": __version__, "dataset": self.dataset,
                "members": [{"model": m.model, "folds": m.folds} for m in self.members],
                "requires": [{"model": m.model, "folds": m.folds} for m in self.requires],
                "checkpoint": self.checkpoint, "postprocessing": rules}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> ModelManifest:
        try:
            if int(data["format"]) > FORMAT:
                raise UserError(f"{where}: made by a newer nnlight ({data.get('nnlight')}); update nnlight")
            rules = data["postprocessing"]
            members, requires = ([ZipMember(str(m["model"]), [str(f) for f in m["folds"]])
                                  for m in data.get(key, [])] for key in ("members", "requires"))
            return cls(str(data["dataset"]), members, data["checkpoint"],
                       None if rules is None else PostprocessingRules.from_json(rules), requires)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: not an nnlight model file ({e!r})") from None


_RUN_FILES = ("plan.json", "inference.json", "dataset.json", "fingerprint.json", "provenance.json")


def export_model_zip(results_root: Path, dataset: str, model: str, output: Path,
                     checkpoint: CheckpointName = "final", folds: Sequence[str] | None = None) -> ModelManifest:
    """Write ``output`` (a .zip) for ``model``: a configuration folder (its folds, or ``folds``) or ``best``."""
    dataset_results = results_root / dataset
    if model == "best":
        selected, rules = load_best(dataset_results)
        members = [(ModelFolder(folder), [str(f) for f in member_folds]) for folder, member_folds in selected]
    else:
        folder = Path(model) if Path(model).is_absolute() else dataset_results / model
        if not folder.is_dir():
            raise UserError(f"model={model}: no such model folder under {dataset_results}; give "
                            "<configuration>/<experiment> or best")
        runs = find_runs(folder, folds)
        members = [(ModelFolder(runs[0].path.parent), [r.fold for r in runs])]
        own = members[0][0].postprocessing
        rules = PostprocessingRules.load(own) if own.is_file() else None
    requires = _required_models(dataset_results, [m for m, _ in members])
    manifest = ModelManifest(dataset, [ZipMember(m.name, f) for m, f in members], checkpoint, rules,
                             [ZipMember(m.name, f) for m, f in requires])

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest.to_json(), indent=2))
            for folder, member_folds in [*members, *requires]:
                for fold in member_folds:
                    _write_run(archive, folder.fold(fold), f"{folder.name}/fold_{fold}", checkpoint)

    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_named(output, write)
    return manifest


def _required_models(dataset_results: Path, members: list[ModelFolder]) -> list[tuple[ModelFolder, list[str]]]:
    """The low-res models of the cascade members (all their folds: the cascade predicts with each)."""
    required = []
    for member in members:
        runs = member.runs()
        previous = TrainingChoices.load(runs[0], load_json(runs[0].plan)).previous_stage if runs else None
        if previous and all(previous != m.name for m in members) and all(previous != r.name for r, _ in required):
            folder = ModelFolder(dataset_results / previous)
            required.append((folder, [r.fold for r in folder.runs()]))
    return required


def _write_run(archive: zipfile.ZipFile, run: RunFolder, prefix: str, checkpoint: CheckpointName) -> None:
    if not run.is_trained_run():
        raise UserError(f"{run.path}: not a trained fold (no plan.json)")
    plans_copies = sorted(p.name for p in run.path.glob("*Plans*.json"))
    for name in (*_RUN_FILES, *plans_copies):
        if (run.path / name).is_file():
            archive.write(run.path / name, f"{prefix}/{name}")
    weights = {f"network.{k}": v for k, v in run_network_weights(run, checkpoint).items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": weights}, buffer)
    archive.writestr(zipfile.ZipInfo(f"{prefix}/checkpoints/{checkpoint}.ckpt"), buffer.getvalue(),
                     compress_type=zipfile.ZIP_STORED)  # float weights barely compress


def read_manifest(archive: zipfile.ZipFile, where: str) -> ModelManifest:
    try:
        data = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise UserError(f"{where}: not an nnlight model file (no {MANIFEST}); make one with "
                        "nnlight-model export") from None
    return ModelManifest.from_json(data, where)


def _checked_names(archive: zipfile.ZipFile, manifest: ModelManifest, where: str) -> list[str]:
    """Every entry stays inside one member's folder (no absolute paths, no ``..``, no links)."""
    allowed = tuple(f"{m.model}/" for m in manifest.folders)
    names = []
    for info in archive.infolist():
        name = info.filename
        if name == MANIFEST or info.is_dir():
            continue
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or "\\" in name or not name.startswith(allowed) or \
                (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UserError(f"{where}: entry {name!r} would land outside the model's folders; refusing the file")
        names.append(name)
    return names


def unpack(path: Path, target: Path) -> ModelManifest:
    """Extract the model file's member folders into ``target`` (a dataset's results folder or a scratch folder).
    A member folder that already exists there is refused, never overwritten."""
    with _open(path) as archive:
        manifest = read_manifest(archive, str(path))
        names = _checked_names(archive, manifest, str(path))
        for member in manifest.folders:
            if (target / member.model).exists():
                raise UserError(f"{target / member.model} exists already; delete it to install {path} again, or "
                                f"predict straight from the file: nnlight-predict model={path} ...")
        for name in names:
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            data = archive.read(name)
            atomic_write_named(destination, lambda p, d=data: p.write_bytes(d))
    if manifest.postprocessing is not None and len(manifest.members) == 1:  # where predict.py looks for it
        manifest.postprocessing.save(ModelFolder(target / manifest.members[0].model).postprocessing)
    return manifest


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: cannot be read as a model file (a .zip written by nnlight-model export): {e}"
                        ) from None


def install_model_zip(path: Path, results_root: Path) -> tuple[ModelManifest, list[Path], bool]:
    """Unpack under ``<results_root>/<Dataset>/``; an ensemble also becomes the dataset's ``model=best`` when no
    selection exists there yet. Returns the manifest, the installed model folders and whether it is ``best``."""
    with _open(path) as archive:
        dataset = read_manifest(archive, str(path)).dataset
    dataset_results = results_root / dataset
    manifest = unpack(path, dataset_results)
    best = DatasetResults(dataset_results)
    is_best = len(manifest.members) > 1 and not best.best_configuration.is_file()
    if is_best:
        (manifest.postprocessing or PostprocessingRules()).save(best.postprocessing)
        atomic_write_json(best.best_configuration, {"selected": {
            "name": " + ".join(m.model for m in manifest.members), "installed_from": str(path),
            "members": [{"model": m.model, "folds": m.folds} for m in manifest.members],
            "postprocessing": best.postprocessing.name}})
    return manifest, [dataset_results / m.model for m in manifest.members], is_best
