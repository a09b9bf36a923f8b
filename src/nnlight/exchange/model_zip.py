"""A trained model (one configuration, or what evaluate.py selected) as one file to hand to a colleague.

``<name>.zip`` holds ``nnlight_model.json`` (dataset, members and their folds, the checkpoint, the
post-processing rules, and the size of every entry) and, per member fold, what inference reads: ``plan.json``,
``inference.json``, ``dataset.json``, the nnU-Net plans copy, provenance and the network weights alone
(``checkpoints/<name>.ckpt`` without optimizer state). ``predict.py model=<name>.zip`` predicts from it directly;
``nnlight-model install`` unpacks it under a results folder.

A model file may come from a stranger, so reading one trusts nothing in it: every name that becomes a path is a
plain name (``DatasetXXX_Name``, ``<configuration>/<experiment>``, ``fold_k``, a known file name); entries
nnlight does not know, links and anything that would land outside its folder are refused; entries are streamed
with their sizes bounded by what the manifest declares (no zip bomb fills memory or disk); each checkpoint must
load ``weights_only`` (a pickle that needs code is refused at once, naming the entry). Everything is unpacked into
a hidden staging folder beside the target and moved into place only once all of it verified.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from nnlight import __version__
from nnlight.evaluation.selection import load_best
from nnlight.inference.postprocessing import PostprocessingRules
from nnlight.inference.predictor import TrainingChoices, find_runs, load_run_network, run_plan
from nnlight.model.checkpoints import load_checkpoint
from nnlight.model.weights import run_network_weights
from nnlight.utils.errors import UserError
from nnlight.utils.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_named,
    check_free_space,
    load_json,
    nested_deeper_than,
)
from nnlight.utils.folders import CHECKPOINT_NAMES, CheckpointName, DatasetResults, ModelFolder, RunFolder
from nnlight.utils.names import dataset_name, fold_name, inside, model_name

MANIFEST = "nnlight_model.json"
FORMAT = 2  # 2: the manifest lists every entry's size (format 1 files are still read)
MAX_MANIFEST_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20
# What each entry may declare, before a byte is read: plans and inference files are kilobytes; a fingerprint lists
# every case (~2 MB for 10,000); together the JSON files of one model file stay far below what could fill a disk
MAX_ENTRY_BYTES = {"plan.json": 4 << 20, "inference.json": 1 << 20, "provenance.json": 1 << 20,
                   "dataset.json": 16 << 20, "fingerprint.json": 32 << 20, "plans": 4 << 20}
MAX_JSON_TOTAL_BYTES = 64 << 20
MAX_CHECKPOINT_BYTES = 16 << 30  # a checkpoint is stored uncompressed: the file itself is this large
MAX_FOLDS = 64  # per member; nnU-Net trains 5
_STAGING = re.compile(r"^\.nnlight-unpack-(\d+)-[0-9a-f]+$")


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
    files: dict[str, int] | None = None  # every entry and its size in bytes (None: a format 1 file)

    @property
    def folders(self) -> list[ZipMember]:
        return [*self.members, *self.requires]

    def to_json(self) -> dict[str, Any]:
        rules = None if self.postprocessing is None else self.postprocessing.to_json()
        return {"format": FORMAT, "nnlight": __version__, "dataset": self.dataset,
                "members": [{"model": m.model, "folds": m.folds} for m in self.members],
                "requires": [{"model": m.model, "folds": m.folds} for m in self.requires],
                "checkpoint": self.checkpoint, "postprocessing": rules, "files": self.files}

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelManifest:
        """The manifest with every name checked: what becomes a path is a plain name, never ``..`` or ``/``."""
        try:
            if int(data["format"]) > FORMAT:
                raise UserError(f"{where}: made by a newer nnlight ({data.get('nnlight')}); update nnlight")
            rules = data["postprocessing"]
            members, requires = ([ZipMember(model_name(m["model"], f"{where}: member"),
                                            [fold_name(f, f"{where}: fold") for f in m["folds"]])
                                  for m in data.get(key, [])] for key in ("members", "requires"))
            checkpoint = data["checkpoint"]
            if checkpoint not in CHECKPOINT_NAMES:
                raise UserError(f"{where}: checkpoint {checkpoint!r} is not one of {', '.join(CHECKPOINT_NAMES)}")
            files = data.get("files")
            if files is not None:
                files = {str(k): int(v) for k, v in files.items()}
                if any(v < 0 for v in files.values()):
                    raise ValueError("negative size")
            if not members:
                raise ValueError("no members")
            listed = [m.model for m in (*members, *requires)]
            if len(set(listed)) != len(listed) or any(len(set(m.folds)) != len(m.folds) or len(m.folds) > MAX_FOLDS
                                                      or not m.folds for m in (*members, *requires)):
                raise ValueError(f"each member once, with 1 to {MAX_FOLDS} distinct folds")
            return cls(dataset_name(data["dataset"], f"{where}: dataset"), members, checkpoint,
                       None if rules is None else PostprocessingRules.from_json(rules), requires, files)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{where}: not an nnlight model file ({e!r})") from None


_RUN_FILES = ("plan.json", "inference.json", "dataset.json", "fingerprint.json", "provenance.json")
_PLANS_COPY = re.compile(r"^[A-Za-z0-9_.-]*Plans[A-Za-z0-9_.-]*\.json$")  # nnUNetPlans.json, a preset's plans


def export_model_zip(results_root: Path, dataset: str, model: str, output: Path,
                     checkpoint: CheckpointName = "final", folds: Sequence[str] | None = None) -> ModelManifest:
    """Write ``output`` (a .zip) for ``model``: a configuration folder (its folds, or ``folds``) or ``best``."""
    dataset_results = results_root / dataset
    rules: PostprocessingRules | None
    if model == "best":
        selected = load_best(dataset_results)
        rules = selected.postprocessing
        members = [(ModelFolder(folder), [str(f) for f in member_folds]) for folder, member_folds in selected.members]
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

    def write(path: Path) -> None:
        sizes: dict[str, int] = {}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for folder, member_folds in [*members, *requires]:
                for fold in member_folds:
                    sizes |= _write_run(archive, folder.fold(fold), f"{folder.name}/fold_{fold}", checkpoint)
            manifest = ModelManifest(dataset, [ZipMember(m.name, f) for m, f in members], checkpoint, rules,
                                     [ZipMember(m.name, f) for m, f in requires], sizes)
            archive.writestr(MANIFEST, json.dumps(manifest.to_json(), indent=2))

    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_named(output, write)
    with zipfile.ZipFile(output) as archive:  # what was written, verified as a reader will see it
        return read_manifest(archive, str(output))


def _required_models(dataset_results: Path, members: list[ModelFolder]) -> list[tuple[ModelFolder, list[str]]]:
    """The low-res models of the cascade members (all their folds: the cascade predicts with each)."""
    required: list[tuple[ModelFolder, list[str]]] = []
    for member in members:
        runs = member.runs()
        # read as data: exporting never imports the network class the run names
        previous = load_json(runs[0].inference).get("previous_stage") if runs else None
        if previous and all(previous != m.name for m in members) and all(previous != r.name for r, _ in required):
            folder = ModelFolder(dataset_results / previous)
            required.append((folder, [r.fold for r in folder.runs()]))
    return required


def _write_run(archive: zipfile.ZipFile, run: RunFolder, prefix: str, checkpoint: CheckpointName) -> dict[str, int]:
    """One fold's inference files into ``archive``; returns each entry's size."""
    if not run.is_trained_run():
        raise UserError(f"{run.path}: not a trained fold (no plan.json)")
    plans_copies = sorted(p.name for p in run.path.glob("*Plans*.json") if _PLANS_COPY.match(p.name))
    sizes = {}
    for name in (*_RUN_FILES, *plans_copies):
        if (run.path / name).is_file():
            archive.write(run.path / name, f"{prefix}/{name}")
            sizes[f"{prefix}/{name}"] = (run.path / name).stat().st_size
    weights = {f"network.{k}": v for k, v in run_network_weights(run, checkpoint).items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": weights}, buffer)
    entry = f"{prefix}/checkpoints/{checkpoint}.ckpt"
    archive.writestr(zipfile.ZipInfo(entry), buffer.getvalue(),
                     compress_type=zipfile.ZIP_STORED)  # float weights barely compress
    return sizes | {entry: len(buffer.getvalue())}


def read_manifest(archive: zipfile.ZipFile, where: str) -> ModelManifest:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise UserError(f"{where}: not an nnlight model file (no {MANIFEST}); make one with "
                        "nnlight-model export") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise UserError(f"{where}: its {MANIFEST} declares {info.file_size} bytes (at most {MAX_MANIFEST_BYTES}); "
                        "not a model file nnlight wrote")
    try:
        with archive.open(info) as f:
            data = json.loads(f.read(MAX_MANIFEST_BYTES + 1))
    except (ValueError, RecursionError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{where}: {MANIFEST} cannot be read ({e}); not a model file nnlight wrote") from None
    if nested_deeper_than(data, 8):
        raise UserError(f"{where}: {MANIFEST} is nested too deeply; not a model file nnlight wrote")
    return ModelManifest.from_json(data, where)


def _entry_problem(info: zipfile.ZipInfo, manifest: ModelManifest) -> str | None:
    """Why an entry may not be unpacked, or None: only the files nnlight writes, inside a member fold."""
    name = info.filename
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "is a symbolic link"
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ".." in parts or len(parts) < 4:
        return "would land outside the model's folders"
    model, fold, rest = "/".join(parts[:2]), parts[2], "/".join(parts[3:])
    member = next((m for m in manifest.folders if m.model == model), None)
    if member is None or fold not in {f"fold_{k}" for k in member.folds}:
        return "would land outside the model's folders"
    if rest not in (*_RUN_FILES, f"checkpoints/{manifest.checkpoint}.ckpt") and not _PLANS_COPY.match(rest):
        return "is not a file nnlight-model export writes"
    return None


def _storage_problem(info: zipfile.ZipInfo) -> str | None:
    """How an entry is stored: nnlight writes plain deflated or stored entries, never encrypted ones."""
    if info.flag_bits & 0x1:
        return "is encrypted (nnlight-model export never encrypts)"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"uses compression method {info.compress_type} (nnlight-model export stores or deflates)"
    return None


def _size_problem(info: zipfile.ZipInfo, manifest: ModelManifest) -> str | None:
    """Declared sizes are bounded before a byte is read: each kind of JSON file by what such a file holds
    (:data:`MAX_ENTRY_BYTES`), a checkpoint is stored uncompressed (so it cannot expand), and with a format 2
    manifest every size is the one it declares."""
    if manifest.files is not None and manifest.files.get(info.filename) != info.file_size:
        return (f"declares {info.file_size} bytes, the manifest {manifest.files.get(info.filename, 'none')}")
    name = PurePosixPath(info.filename).name
    limit = MAX_ENTRY_BYTES.get(name, MAX_ENTRY_BYTES["plans"]) if name.endswith(".json") else MAX_CHECKPOINT_BYTES
    if info.file_size > limit:
        return f"declares {info.file_size} bytes, more than a {name} nnlight writes may have ({limit >> 20} MiB)"
    if info.filename.endswith(".ckpt") and (info.compress_type != zipfile.ZIP_STORED or
                                            info.file_size != info.compress_size):
        return "is a compressed checkpoint (nnlight stores them uncompressed; it could expand without bound)"
    return None


_REQUIRED_RUN_FILES = ("plan.json", "inference.json", "dataset.json")


def _checked_entries(archive: zipfile.ZipFile, manifest: ModelManifest, where: str) -> list[zipfile.ZipInfo]:
    """Every entry checked (names, links, sizes) before anything is extracted."""
    entries = []
    names = [info.filename for info in archive.infolist()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{where}: entry {twice[0]!r} appears more than once (which one counts is not clear); "
                        "refusing the file")
    for info in archive.infolist():
        if info.filename == MANIFEST or info.is_dir():
            continue
        problem = _entry_problem(info, manifest) or _storage_problem(info) or _size_problem(info, manifest)
        if problem:
            raise UserError(f"{where}: entry {info.filename!r} {problem}; refusing the file")
        entries.append(info)
    json_bytes = sum(e.file_size for e in entries if e.filename.endswith(".json"))
    if json_bytes > MAX_JSON_TOTAL_BYTES:
        raise UserError(f"{where}: its JSON entries declare {json_bytes >> 20} MiB together, more than a model file "
                        f"nnlight writes holds ({MAX_JSON_TOTAL_BYTES >> 20} MiB); refusing the file")
    present = {e.filename for e in entries}
    needed = [f"{m.model}/fold_{k}/{name}" for m in manifest.folders for k in m.folds
              for name in (*_REQUIRED_RUN_FILES, f"checkpoints/{manifest.checkpoint}.ckpt")]
    missing = sorted({*(n for n in needed if n not in present), *(set(manifest.files or {}) - present)})
    if missing:
        raise UserError(f"{where}: entry {missing[0]!r} is missing; the file is incomplete — export it again")
    return entries


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, where: str) -> None:
    """Stream one entry to ``destination`` (never read whole), stopping at its declared size."""
    def copy(f: Any) -> None:
        written = 0
        with archive.open(info) as source:
            while chunk := source.read(_COPY_CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise UserError(f"{where}: entry {info.filename!r} holds more than the {info.file_size} bytes it "
                                    "declares; refusing the file")
                f.write(chunk)
        if written != info.file_size:
            raise UserError(f"{where}: entry {info.filename!r} holds {written} of the {info.file_size} bytes it "
                            "declares; the file is damaged — export it again")
    try:
        atomic_write(destination, copy)
    except (zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{where}: entry {info.filename!r} is damaged ({e}); export the model file again") from None
    if destination.suffix == ".ckpt":
        load_checkpoint(destination, shown_as=f"{where}: entry {info.filename}")


def unpack(path: Path, target: Path, trusted_networks: Sequence[str] = ()) -> ModelManifest:
    """Extract the model file's member folders into ``target`` (a dataset's results folder or a scratch folder).
    A member folder that already exists there is refused, never overwritten; nothing appears in ``target`` until
    every entry is unpacked and verified: each fold's checkpoint loads ``weights_only`` into the network its run
    names (a class of nnlight's list or of ``trusted_networks``). Staging folders that killed installs left behind
    are removed first."""
    where = str(path)
    with _open(path) as archive:
        manifest = read_manifest(archive, where)
        entries = _checked_entries(archive, manifest, where)
        for member in manifest.folders:
            if (target / member.model).exists():
                raise UserError(f"{target / member.model} exists already; delete it to install {path} again, or "
                                f"predict straight from the file: nnlight-predict model={path} ...")
        created = [p for p in (target, *target.parents) if not p.exists()]  # removed again if the file is refused
        target.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(target)
        staging = target / f".nnlight-unpack-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            check_free_space(target, sum(e.file_size for e in entries), f"unpacking {path}")
            for info in entries:
                _extract(archive, info, inside(staging, staging / info.filename, where), where)
            _verify_runs(staging, manifest, where, trusted_networks)
            if manifest.postprocessing is not None and len(manifest.members) == 1:  # where predict.py looks for it
                manifest.postprocessing.save(ModelFolder(staging / manifest.members[0].model).postprocessing)
            _move_into_place(staging, target, [m.model for m in manifest.folders])
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in created:  # innermost first; a folder something else wrote into stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _verify_runs(staging: Path, manifest: ModelManifest, where: str, trusted_networks: Sequence[str]) -> None:
    """Every listed fold is a model: its plan checks, its network can be built and its checkpoint's weights fit it
    exactly. Messages name the model file's entry, never the staging folder."""
    for member in manifest.folders:
        for fold in member.folds:
            run = RunFolder(staging / member.model / f"fold_{fold}")
            try:
                plan = run_plan(run)
                load_run_network(run, plan, TrainingChoices.load(run, plan, trusted_networks), manifest.checkpoint)
            except UserError as e:
                problem = str(e).replace(f"{staging}/", "")
                raise UserError(f"{where}: {member.model}/fold_{fold} is not a usable model ({problem})") from None


def _remove_stale_staging(target: Path) -> None:
    """Staging folders of installs whose process no longer runs (killed midway) are removed."""
    for folder in target.iterdir():
        match = _STAGING.match(folder.name)
        if match and folder.is_dir() and not _process_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _move_into_place(staging: Path, target: Path, models: list[str]) -> None:
    """Rename each verified member folder from the staging folder to its place (same file system: atomic)."""
    moved: list[Path] = []
    try:
        for model in models:
            destination = inside(target, target / model, "model file member")
            destination.parent.mkdir(parents=True, exist_ok=True)
            (staging / model).mkdir(parents=True, exist_ok=True)
            os.rename(staging / model, destination)
            moved.append(destination)
    except BaseException:
        for folder in moved:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: cannot be read as a model file (a .zip written by nnlight-model export): {e}"
                        ) from None


def install_model_zip(path: Path, results_root: Path, trusted_networks: Sequence[str] = ()
                      ) -> tuple[ModelManifest, list[Path], bool]:
    """Unpack under ``<results_root>/<Dataset>/``; an ensemble also becomes the dataset's ``model=best`` (a
    comparison ``installed_<file name>``) when no selection exists there yet. Returns the manifest, the installed
    model folders and whether it is ``best``."""
    with _open(path) as archive:
        dataset = read_manifest(archive, str(path)).dataset
    dataset_results = results_root / dataset
    manifest = unpack(path, dataset_results, trusted_networks)
    results = DatasetResults(dataset_results)
    is_best = len(manifest.members) > 1 and not results.latest_comparison.is_file() and \
        not results.legacy_best_configuration.is_file()
    if is_best:
        comparison = results.comparison("installed_" + re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("."))
        (manifest.postprocessing or PostprocessingRules()).save(comparison.postprocessing)
        atomic_write_json(comparison.best_configuration, {"comparison": comparison.name, "selected": {
            "name": " + ".join(m.model for m in manifest.members), "installed_from": str(path),
            "members": [{"model": m.model, "folds": m.folds} for m in manifest.members],
            "postprocessing": str(comparison.postprocessing.relative_to(dataset_results))}})
        atomic_write_json(results.latest_comparison, {"name": comparison.name})
    return manifest, [dataset_results / m.model for m in manifest.members], is_best
