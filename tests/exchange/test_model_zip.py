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
from nnlight.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
MODEL = "3d_fullres/baseline"
FOLD = f"{MODEL}/fold_0"


def _checkpoint(extra: dict[str, Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"network.w": torch.ones(3)}, **(extra or {})}, buffer)
    return buffer.getvalue()


def _model_file(path: Path, dataset: str = "Dataset900_Demo", model: str = MODEL, folds: tuple[str, ...] = ("0",),
                entries: dict[str, bytes] | None = None, checkpoint: bytes | None = None,
                postprocessing: dict | None = None, sizes: bool = True, compress_checkpoint: bool = False) -> Path:
    """A model file as ``nnlight-model export`` writes it (format 2), or crafted by changing one part."""
    files = entries if entries is not None else {
        f"{FOLD}/plan.json": b'{"dataset": "Dataset900_Demo"}', f"{FOLD}/inference.json": b"{}",
        f"{FOLD}/checkpoints/final.ckpt": checkpoint if checkpoint is not None else _checkpoint()}
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
        "3d_fullres/baseline/fold_0/checkpoints/final.ckpt", "3d_fullres/baseline/fold_0/inference.json",
        "3d_fullres/baseline/fold_0/plan.json", "3d_fullres/baseline/postprocessing.json"]


@pytest.mark.parametrize(("crafted", "message"), [
    ({"dataset": "../../site-packages"}, "not a dataset name"),
    ({"dataset": "/tmp/Dataset900_Demo"}, "not a dataset name"),
    ({"model": "3d_fullres/../../../../outside"}, "not a model name"),
    ({"model": "../outside"}, "not a configuration name"),
    ({"model": "/abs/olute"}, "not a model name"),
    ({"folds": ("../../x",)}, "not a fold"),
    ({"entries": {f"{FOLD}/../../../../escaped.txt": b"boo"}}, "outside the model's folders"),
    ({"entries": {"/etc/escaped.txt": b"boo"}}, "outside the model's folders"),
    ({"entries": {f"{FOLD}/sitecustomize.py": b"import os"}}, "not a file nnlight-model export writes"),
    ({"entries": {f"{MODEL}/fold_1/plan.json": b"{}"}}, "outside the model's folders"),
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
    bomb = {f"{FOLD}/plan.json": bytes(64 << 20), f"{FOLD}/checkpoints/final.ckpt": _checkpoint()}
    path = _model_file(tmp_path / "bomb.zip", entries=bomb)
    assert path.stat().st_size < 1 << 20  # 64 MiB of zeros in a file of a few hundred KB
    monkeypatch.setattr(model_zip, "MAX_JSON_BYTES", 1 << 20)
    with pytest.raises(UserError, match="more than a JSON file nnlight reads may have"):
        install_model_zip(path, tmp_path / "results")
    # the manifest declares every entry's size; an entry that disagrees is refused
    lying = _model_file(tmp_path / "lying.zip")
    with zipfile.ZipFile(lying, "a") as archive:
        archive.writestr(f"{FOLD}/dataset.json", b"{}" + b" " * 1000)
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


def test_predict_from_a_model_file_with_a_pickled_checkpoint_names_the_entry(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "pickle.zip", checkpoint=_checkpoint({"hook": os.getcwd}))
    (tmp_path / "in").mkdir()
    result = subprocess.run([sys.executable, str(REPO / "predict.py"), f"model={path}", f"input={tmp_path / 'in'}",
                             f"output={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"entry {FOLD}/checkpoints/final.ckpt: contains Python code" in result.stderr
    assert "Traceback" not in result.stderr and "nnlight-model-" not in result.stderr  # no vanished temp path
    assert not (tmp_path / "out").exists()


def test_nnlight_model_install_refuses_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "evil.zip", dataset="../../../../tmp/x")
    result = subprocess.run([sys.executable, "-m", "nnlight.exchange.cli", "install", str(path), "--results",
                             str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a dataset name" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()
