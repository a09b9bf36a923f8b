"""Reading checkpoints without trusting them: ``torch.load(weights_only=True)`` only, errors that name the file.

Low in the package tree on purpose: training resumes with it, inference and model exchange load weights with it,
model selection checks checkpoints are intact with it.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nnlight.utils.errors import UserError


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


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is no usable checkpoint (missing, empty, truncated), or None — cheaply: a ``torch.save`` file is
    a zip archive whose directory sits at its end, so a cut-off file does not open."""
    if not path.is_file():
        return f"{path} is missing"
    try:
        with zipfile.ZipFile(path):
            return None
    except (zipfile.BadZipFile, OSError) as e:
        return f"{path} is truncated or damaged ({e})"
