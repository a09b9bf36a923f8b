"""Checkpoints written atomically and loaded without unpickling arbitrary objects.

A run killed while saving ``last.ckpt`` must leave the previous one intact, so saves go to a temp file
that is renamed over the old one; loading uses ``torch.load(weights_only=True)``. Saving happens in a
background thread on a copy of the tensors, so training goes on while a checkpoint of hundreds of MB is
serialized and written (every epoch: ``last.ckpt``, and ``best.ckpt`` when the pseudo Dice improves).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        return load_checkpoint(Path(path))


def checkpoint_plugin() -> AsyncCheckpointIO:
    """The Trainer's checkpoint IO: atomic writes in a background thread (``teardown()`` waits for them)."""
    return AsyncCheckpointIO(AtomicCheckpointIO())


def safe_torch_load(path: Path, shown_as: str | None = None, allowed: Sequence[Any] = ()) -> Any:
    """``torch.load(weights_only=True)`` (plus the ``allowed`` globals); every failure is a ``UserError`` naming
    ``shown_as`` (default: the path). A pickle that needs code to load is named as such — never with PyTorch's hint
    to load it with ``weights_only=False``."""
    name = shown_as or str(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            culprit = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", str(e))
            raise UserError(f"{name}: contains Python code or objects ({culprit.group(1) if culprit else 'unknown'}) "
                            "besides weights; nnlight did not load it. A checkpoint that needs code to load can run "
                            "anything on your machine: ask its author for one saved with weights only") from None
        raise _unreadable(name, e) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise _unreadable(name, e) from None


def _unreadable(name: str, error: Exception) -> UserError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"{name}: cannot be read as a checkpoint ({reason}); it is truncated, corrupt or not written "
                     "by nnlight — use another checkpoint (checkpoint=best|last|final) or train again")


def load_checkpoint(path: Path, shown_as: str | None = None) -> dict[str, Any]:
    """A checkpoint's contents (``weights_only``); a truncated, foreign or code-carrying file is a ``UserError``
    naming it (or ``shown_as``: a model file's entry)."""
    checkpoint = safe_torch_load(path, shown_as)
    if not isinstance(checkpoint, dict):
        raise UserError(f"{shown_as or path}: not a checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def resume_checkpoint(checkpoints: Sequence[Path]) -> Path | None:
    """The newest intact checkpoint among ``checkpoints`` (last, best): a damaged one is skipped, saying so."""
    intact, damaged = [], []
    for path in (p for p in checkpoints if p.is_file()):
        try:
            intact.append((int(load_checkpoint(path).get("epoch", -1)), path))
        except UserError as e:
            damaged.append(str(e))
    if damaged and not intact:
        raise UserError(f"{damaged[0]}. No intact checkpoint is left to resume from; delete "
                        f"{checkpoints[0].parent} to start the run over")
    newest = max(intact)[1] if intact else None
    for message in damaged:
        print(f"Skipped: {message}\n  resuming from {newest} instead")
    return newest
