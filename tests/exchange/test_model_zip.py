"""A model file from a stranger: nothing in it may write outside its folder, fill memory or disk, or run code."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from nnlight.exchange import model_zip
from nnlight.exchange.model_zip import install_model_zip, unpack
from nnlight.inference.predictor import TrainingChoices
from nnlight.model.network import plan_facts, plan_unet
from nnlight.utils.errors import UserError
from tests.conftest import REPO, run_entry

MODEL = "3d_fullres/baseline"
FOLD = f"{MODEL}/fold_0"


# a 2D plan of the demo's kind with a tiny U-Net (what a run folder's plan.json holds)
PLAN = {"dataset": "Dataset900_Demo", "configuration": "3d_fullres", "plans_name": "nnUNetPlans",
        "data_identifier": "nnUNetPlans_3d_fullres", "spacing": [1.0, 1.0], "patch_size": [16, 16], "batch_size": 2,
        "batch_dice": True, "median_image_size_in_voxels": [16.0, 16.0], "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2], "channel_names": ["channel0"],
        "labels": {"background": 0, "blob": 1}, "regions_class_order": None,
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "foreground_intensity_properties_per_channel": {"0": {"mean": 1.0, "std": 1.0}},
        "resampling": {k: {"is_seg": k == "seg", "order": 1, "order_z": 0, "force_separate_z": None}
                       for k in ("data", "seg", "probabilities")},
        "architecture": {"network": "PlainConvUNet", "n_stages": 2, "features_per_stage": [2, 4],
                         "kernel_sizes": [[3, 3], [3, 3]], "strides": [[1, 1], [2, 2]], "blocks_per_stage": [1, 1],
                         "n_conv_per_stage_decoder": [1], "conv_bias": True},
        "next_stage": None, "previous_stage": None}


def _weights() -> dict[str, torch.Tensor]:
    network = plan_unet().build(plan_facts(PLAN, PLAN["patch_size"]))
    return {f"network.{k}": v for k, v in network.state_dict().items()}


def _checkpoint(extra: dict[str, Any] | None = None, weights: dict[str, torch.Tensor] | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": _weights() if weights is None else weights, **(extra or {})}, buffer)
    return buffer.getvalue()


def _fold(prefix: str = FOLD, checkpoint: bytes | None = None, **files: bytes) -> dict[str, bytes]:
    """One trained fold's entries: a plan, its network's choices, a dataset.json and a checkpoint that fits."""
    inference = TrainingChoices([16, 16], (0, 1), plan_unet()).to_json()
    entries = {"plan.json": json.dumps(PLAN).encode(), "inference.json": json.dumps(inference).encode(),
               "dataset.json": json.dumps({"labels": PLAN["labels"]}).encode(),
               "checkpoints/final.ckpt": checkpoint if checkpoint is not None else _checkpoint(), **files}
    return {f"{prefix}/{name}": data for name, data in entries.items()}


def _model_file(path: Path, dataset: str = "Dataset900_Demo", model: str = MODEL, folds: tuple[str, ...] = ("0",),
                entries: dict[str, bytes] | None = None, checkpoint: bytes | None = None,
                postprocessing: dict | None = None, sizes: bool = True, compress_checkpoint: bool = False,
                extra: dict[str, bytes] | None = None) -> Path:
    """A model file as ``nnlight-model export`` writes it (format 2), or crafted by changing one part."""
    files = {**(entries if entries is not None else _fold(checkpoint=checkpoint)), **(extra or {})}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            stored = name.endswith(".ckpt") and not compress_checkpoint
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        archive.writestr(model_zip.MANIFEST, json.dumps({
            "format": 2, "dataset": dataset, "members": [{"model": model, "folds": list(folds)}], "requires": [],
            "checkpoint": "final", "postprocessing": postprocessing,
            "files": {name: len(data) for name, data in files.items()} if sizes else None}))
    return path


def _everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_good_model_file_installs_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    results = tmp_path / "results"
    manifest, folders, _ = install_model_zip(_model_file(tmp_path / "m.zip", postprocessing={
        "keep_largest_foreground": True, "keep_largest_per_label": []}), results)
    assert folders == [results / "Dataset900_Demo" / MODEL] and manifest.files is not None
    assert _everything_under(results / "Dataset900_Demo") == [
        "3d_fullres", "3d_fullres/baseline", "3d_fullres/baseline/fold_0", "3d_fullres/baseline/fold_0/checkpoints",
        "3d_fullres/baseline/fold_0/checkpoints/final.ckpt", "3d_fullres/baseline/fold_0/dataset.json",
        "3d_fullres/baseline/fold_0/inference.json", "3d_fullres/baseline/fold_0/plan.json",
        "3d_fullres/baseline/postprocessing.json"]


@pytest.mark.parametrize(("crafted", "message"), [
    ({"dataset": "../../site-packages"}, "not a dataset name"),
    ({"dataset": "/tmp/Dataset900_Demo"}, "not a dataset name"),
    ({"model": "3d_fullres/../../../../outside"}, "not a model name"),
    ({"model": "../outside"}, "not a configuration name"),
    ({"model": "/abs/olute"}, "not a model name"),
    ({"folds": ("../../x",)}, "not a fold"),
    ({"extra": {f"{FOLD}/../../../../escaped.txt": b"boo"}}, "outside the model's folders"),
    ({"extra": {"/etc/escaped.txt": b"boo"}}, "outside the model's folders"),
    ({"extra": {f"{FOLD}/sitecustomize.py": b"import os"}}, "not a file nnlight-model export writes"),
    ({"extra": {f"{MODEL}/fold_1/plan.json": b"{}"}}, "outside the model's folders"),
])
def test_names_from_the_file_are_plain_names(tmp_path: Path, crafted: dict, message: str) -> None:
    """Every name that becomes a path part is validated before anything is written: no absolute path or ``..``
    lands a file outside the results folder (for instance in a site-packages folder, where Python would run it)."""
    results = tmp_path / "a" / "b" / "results"
    with pytest.raises(UserError, match=message):
        install_model_zip(_model_file(tmp_path / "evil.zip", **crafted), results)
    assert not results.exists() and _everything_under(tmp_path) == ["evil.zip"]


def test_a_member_outside_the_folder_is_refused_before_predict_writes_its_postprocessing(tmp_path: Path) -> None:
    """``predict model=x.zip`` unpacks into a scratch folder; a member that points outside it used to receive the
    post-processing rules before the file was refused."""
    scratch = tmp_path / "scratch" / "deeper"
    scratch.mkdir(parents=True)
    crafted = _model_file(tmp_path / "evil.zip", model="../../outside", entries={},
                          postprocessing={"keep_largest_foreground": True, "keep_largest_per_label": []})
    with pytest.raises(UserError, match="not a model name"):
        unpack(crafted, scratch)
    assert _everything_under(tmp_path) == ["evil.zip", "scratch", "scratch/deeper"]


def test_a_symbolic_link_entry_is_refused(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "link.zip")
    with zipfile.ZipFile(path, "a") as archive:
        link = zipfile.ZipInfo(f"{FOLD}/provenance.json")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(UserError, match="symbolic link"):
        install_model_zip(path, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_sizes_are_bounded_before_anything_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip bomb: an entry that expands far beyond what the manifest declares is refused from its declared size,
    and entries are streamed, never read whole into memory."""
    def no_whole_reads(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("an entry was read whole into memory")
    monkeypatch.setattr(zipfile.ZipFile, "read", no_whole_reads)
    bomb = _fold(**{"plan.json": bytes(64 << 20)})
    path = _model_file(tmp_path / "bomb.zip", entries=bomb)
    assert path.stat().st_size < 1 << 20  # 64 MiB of zeros in a file of a few hundred KB
    with pytest.raises(UserError, match=r"more than a plan\.json nnlight writes may have"):
        install_model_zip(path, tmp_path / "results")
    # the manifest declares every entry's size; an entry that disagrees is refused
    lying = _model_file(tmp_path / "lying.zip")
    with zipfile.ZipFile(lying, "a") as archive:
        archive.writestr(f"{FOLD}/provenance.json", b"{}" + b" " * 1000)
    with pytest.raises(UserError, match="the manifest none"):
        install_model_zip(lying, tmp_path / "results")
    # a checkpoint is stored uncompressed by nnlight: a compressed one could expand without bound
    with pytest.raises(UserError, match="compressed checkpoint"):
        install_model_zip(_model_file(tmp_path / "packed.zip", compress_checkpoint=True), tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_a_model_file_larger_than_the_free_disk_is_refused_before_unpacking(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnlight.utils.files.free_bytes", lambda folder: 1000)
    with pytest.raises(UserError, match="no space left on the device"):
        install_model_zip(_model_file(tmp_path / "m.zip"), tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_a_checkpoint_that_needs_code_is_refused_at_install_naming_the_entry(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "pickle.zip", checkpoint=_checkpoint({"hook": os.getcwd}))
    with pytest.raises(UserError) as refused:
        install_model_zip(path, tmp_path / "results")
    message = str(refused.value)
    assert f"{path}: entry {FOLD}/checkpoints/final.ckpt: contains Python code or objects" in message
    assert "did not load it" in message and "weights_only=False" not in message and "will likely succeed" not in message
    assert not (tmp_path / "results").exists()  # no member, no staging folder, no folder made for them


@pytest.mark.cli
def test_predict_from_a_model_file_with_a_pickled_checkpoint_names_the_entry(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "pickle.zip", checkpoint=_checkpoint({"hook": os.getcwd}))
    (tmp_path / "in").mkdir()
    result = run_entry([str(REPO / "predict.py"), f"model={path}", f"input={tmp_path / 'in'}",
                        f"output={tmp_path / 'out'}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"entry {FOLD}/checkpoints/final.ckpt: contains Python code" in result.stderr
    assert "Traceback" not in result.stderr and "nnlight-model-" not in result.stderr  # no vanished temp path
    assert not (tmp_path / "out").exists()


@pytest.mark.cli
def test_nnlight_model_install_refuses_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "evil.zip", dataset="../../../../tmp/x")
    result = run_entry(["-m", "nnlight.exchange.model_cli", "install", str(path), f"results={tmp_path / 'results'}"],
                       cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "not a dataset name" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_many_folds_of_inflated_json_are_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    """The issue's 2 MB file that filled 2 GB: folds each declaring a far too large plan.json (250 MiB there; 5 MiB
    here, past the limit of 4). Refused from the declared sizes: each kind of entry has a realistic limit, and the
    JSON entries together one too."""
    big = {name: data for k in range(8) for name, data in
           _fold(f"{MODEL}/fold_{k}", **{"plan.json": bytes(5 << 20)}).items()}
    path = _model_file(tmp_path / "fill.zip", folds=tuple(str(k) for k in range(8)), entries=big)
    with pytest.raises(UserError, match=r"plan\.json' declares 5242880 bytes, more than a plan\.json nnlight "
                                        r"writes may have \(4 MiB\)"):
        install_model_zip(path, tmp_path / "results")
    many = {name: data for k in range(3) for name, data in
            _fold(f"{MODEL}/fold_{k}", **{"fingerprint.json": bytes(30 << 20)}).items()}
    path = _model_file(tmp_path / "many.zip", folds=tuple(str(k) for k in range(3)), entries=many)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(UserError, match="its JSON entries declare 90 MiB together"):
        install_model_zip(path, tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("entries", "message"), [
    ({k: v for k, v in _fold().items() if not k.endswith(".ckpt")}, r"fold_0/checkpoints/final\.ckpt' is missing"),
    ({k: v for k, v in _fold().items() if not k.endswith("inference.json")}, r"inference\.json' is missing"),
    (_fold(checkpoint=_checkpoint(weights={"network.w": torch.ones(3)})), "weights do not fit the network"),
    (_fold(**{"plan.json": json.dumps({**PLAN, "spacing": [-1, 1]}).encode()}), r"spacing=\[-1, 1\]"),
    (_fold(**{"inference.json": json.dumps({"tile_size": [16, 16], "mirror_axes": [], "network": {
        "target": "monai.networks.nets.HoVerNet", "arguments": {"pretrained_url": "file:///etc/passwd"}}}).encode()}),
     "HoVerNet, not one of the networks nnlight builds from a file by itself"),
], ids=["no-checkpoint", "no-inference", "foreign-weights", "bad-plan", "downloading-network"])
def test_a_model_file_installs_only_when_every_fold_is_a_usable_model(tmp_path: Path, entries: dict,
                                                                      message: str) -> None:
    path = _model_file(tmp_path / "incomplete.zip", entries=entries, sizes=False)
    with pytest.raises(UserError, match=message) as refused:
        install_model_zip(path, tmp_path / "results")
    assert ".nnlight-unpack" not in str(refused.value)  # the model file's entries are named, not the staging folder
    assert not (tmp_path / "results").exists()  # the name stays free


def test_an_entry_listed_twice_is_refused(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "twice.zip")
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr(f"{FOLD}/plan.json", json.dumps({**PLAN, "labels": {"background": 0, "x": 1}}))
    with pytest.raises(UserError, match="appears more than once"):
        install_model_zip(path, tmp_path / "results")
    manifest_twice = tmp_path / "members.zip"
    with zipfile.ZipFile(_model_file(tmp_path / "one.zip")) as source, \
            zipfile.ZipFile(manifest_twice, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == model_zip.MANIFEST:
                manifest = json.loads(data)
                manifest["members"] *= 2
                data = json.dumps(manifest).encode()
            archive.writestr(info, data)
    with pytest.raises(UserError, match="each member once"):
        install_model_zip(manifest_twice, tmp_path / "results")


def test_a_killed_install_leaves_no_staging_folder_behind_for_long(tmp_path: Path) -> None:
    """A staging folder of a process that no longer runs is removed by the next install; a live one is kept."""
    dataset_results = tmp_path / "results" / "Dataset900_Demo"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = dataset_results / f".nnlight-unpack-{dead.pid}-deadbeef"
    live = dataset_results / f".nnlight-unpack-{os.getpid()}-0badcafe"
    for folder in (stale, live):
        (folder / "3d_fullres").mkdir(parents=True)
        (folder / "3d_fullres" / "weights.ckpt").write_bytes(bytes(1000))
    install_model_zip(_model_file(tmp_path / "m.zip"), tmp_path / "results")
    assert not stale.exists() and live.exists()


def test_entries_stored_in_a_way_nnlight_never_writes_are_refused(tmp_path: Path) -> None:
    bzip = tmp_path / "bzip2.zip"
    with zipfile.ZipFile(_model_file(tmp_path / "good.zip")) as source, zipfile.ZipFile(bzip, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("plan.json"):
                info.compress_type = zipfile.ZIP_BZIP2
            archive.writestr(info, data)
    with pytest.raises(UserError, match=r"plan\.json' uses compression method 12"):
        install_model_zip(bzip, tmp_path / "results")
    encrypted = tmp_path / "encrypted.zip"  # the encryption flag set in plan.json's central directory record
    data = bytearray(_model_file(tmp_path / "good.zip").read_bytes())
    record = data.index(b"PK\x01\x02")
    while not data[record + 46:].startswith(f"{FOLD}/plan.json".encode()):
        record = data.index(b"PK\x01\x02", record + 4)
    data[record + 8] |= 0x1
    encrypted.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"plan\.json' is encrypted"):
        install_model_zip(encrypted, tmp_path / "results")
    assert not (tmp_path / "results").exists()
