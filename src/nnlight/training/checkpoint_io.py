"""Checkpoints written atomically and loaded without unpickling arbitrary objects.

A run killed while saving ``last.ckpt`` must leave the previous one intact, so saves go to a temp file
that is renamed over the old one; loading uses ``torch.load(weights_only=True)``. Saving happens in a
background thread on a copy of the tensors, so training goes on while a checkpoint of hundreds of MB is
serialized and written (every epoch: ``last.ckpt``, and ``best.ckpt`` when the pseudo Dice improves).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from nnlight.model.checkpoints import load_checkpoint
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


CHECKPOINT_POLICIES = ("final", "best_and_final", "all")


def check_checkpoint_policy(policy: object) -> str:
    if policy not in CHECKPOINT_POLICIES:
        raise UserError(f"checkpoints={policy}: choose one of {', '.join(CHECKPOINT_POLICIES)} (what the run folder "
                        "keeps once training ends: final.ckpt only, best.ckpt too, or last.ckpt as well)")
    return str(policy)


def keep_checkpoints(final: Path, best: Path, last: Path, policy: str, final_step: int) -> list[Path]:
    """Once ``final`` is written (at training step ``final_step``), keep what ``policy`` asks for and no two files of
    one state: ``last`` is ``final``'s state, and ``best`` is when it was saved at the last step (the epoch counters
    differ: Lightning's ``final`` counts the finished epoch); such a copy becomes a hard link to ``final``. Returns
    the checkpoints kept. ``last`` goes only now: while training, resume needs it."""
    wanted = {"final": (), "best_and_final": (best,), "all": (best, last)}[policy]
    for path in (best, last):
        if not path.is_file():
            continue
        if path not in wanted:
            path.unlink()
        elif path == last or load_checkpoint(path).get("global_step") == final_step:
            _replace_by_link(path, final)
    return [p for p in (final, best, last) if p.is_file()]


def _replace_by_link(path: Path, target: Path) -> None:
    """``path`` becomes a hard link to ``target`` (one file on disk, two names), atomically; where the file system
    has no hard links the copy stays."""
    temporary = path.with_name(f".{path.name}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(target, temporary)
    except OSError:
        return
    os.replace(temporary, path)
