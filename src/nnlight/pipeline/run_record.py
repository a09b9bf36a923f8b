"""What a run folder says about itself: the configuration it was trained with (its identity), how it ended
(``run_stats.json`` when finished, ``failure.json`` when it failed), and the refusal to mix runs.

The identity is the resolved training config less the keys that by design do not change what is trained
(where files go, worker counts, devices, loggers: the keys left out of the run's name in
``configs/hydra/train.yaml``). A run folder only ever continues the run it was made for: a checkpoint written
under another plan, experiment or value is never resumed, whatever folder it was put in.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L

from nnlight.model.checkpoints import load_checkpoint
from nnlight.pipeline.identity import config_hash, current_identity
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, load_json
from nnlight.utils.folders import CHECKPOINT_NAMES, RunFolder
from nnlight.utils.locks import held_by, process_lock


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: was {old}, now {new}"]


def check_same_run(run_folder: RunFolder, identity: Mapping[str, Any]) -> None:
    """Refuse to continue (or overwrite) a folder that holds another run; ``UserError`` naming the differences."""
    record = run_folder.run_config
    if record.is_file():
        stored = load_json(record)
        if stored.get("config_hash") == config_hash(identity):
            return
        if config_hash(current_identity(stored.get("config", {}))) == config_hash(identity):
            _migrate(run_folder, stored, identity)
            return
        changes = sorted(_differences(current_identity(stored.get("config", {})), dict(identity)),
                         key=lambda c: not c.startswith(("plan.dataset:", "plan.configuration:", "experiment_name:")))
        shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
        raise UserError(f"{run_folder.path} holds a run trained with another configuration ({shown or 'differs'}); "
                        "a run never continues another run's checkpoints. Change an override so this run gets "
                        "its own folder, or delete that folder to start it again")
    leftovers = [run_folder.checkpoint(n) for n in CHECKPOINT_NAMES if run_folder.checkpoint(n).is_file()]
    if leftovers:
        raise UserError(f"{run_folder.path} has checkpoints ({leftovers[0].name}) but no {record.name} saying how "
                        "they were made (an older nnlight, or copied by hand); nnlight will not resume them. Delete "
                        f"{run_folder.checkpoints} to train this run from the start")


def _migrate(run_folder: RunFolder, stored: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    """A run recorded under an earlier identity rule (evaluation-only settings inside it) is the same run: its
    record is rewritten under today's rule, the earlier hash kept so its checkpoints still resume."""
    earlier = [*stored.get("earlier_config_hashes", []), stored.get("config_hash")]
    atomic_write_json(run_folder.run_config, {**stored, "config_hash": config_hash(identity), "config": identity,
                                              "earlier_config_hashes": [h for h in earlier if h]})
    print(f"{run_folder.run_config}: recorded under today's identity rule (evaluation-only settings are no part of "
          "a run's identity any more); the run is the same")


def run_hashes(run_folder: RunFolder) -> list[str]:
    """Every config hash this run's checkpoints may carry: today's and those of earlier identity rules."""
    stored = load_json(run_folder.run_config) if run_folder.run_config.is_file() else {}
    return [h for h in [stored.get("config_hash"), *stored.get("earlier_config_hashes", [])] if h]


def write_run_config(run_folder: RunFolder, identity: Mapping[str, Any], debug: str | None,
                     search: str | None = None) -> None:
    """``search``: the ``hparams_search`` this run is a trial of (model selection leaves trials out)."""
    earlier = load_json(run_folder.run_config).get("earlier_config_hashes", []) if run_folder.run_config.is_file() \
        else []
    atomic_write_json(run_folder.run_config, {"config_hash": config_hash(identity), "debug": debug, "search": search,
                                              "config": identity, **({"earlier_config_hashes": earlier}
                                                                     if earlier else {})})


def finished_stats(run_folder: RunFolder) -> dict[str, Any] | None:
    """``run_stats.json`` of a run that trained (and validated) to the end, else None."""
    return load_json(run_folder.stats) if run_folder.stats.is_file() else None


def write_stats(run_folder: RunFolder, stats: Mapping[str, Any]) -> None:
    atomic_write_json(run_folder.stats, {**stats, "finished_at": _now()})
    run_folder.failure.unlink(missing_ok=True)


@contextmanager
def recording_failure(run_folder: RunFolder) -> Iterator[None]:
    """A run that raises leaves ``failure.json`` (the error and its traceback) for suites and for the user."""
    try:
        yield
    except BaseException as e:  # KeyboardInterrupt too: the record says the run did not finish
        if run_folder.path.is_dir():
            with contextlib.suppress(UserError):  # a full disk may refuse the record too: the error still goes out
                atomic_write_json(run_folder.failure, {
                    "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(), "failed_at": _now()})
        raise


def is_first_process() -> bool:
    """False in the extra processes a multi-GPU run starts (Lightning's DDP launcher reruns the command with
    ``LOCAL_RANK``; torchrun sets ``RANK``/``NODE_RANK``, SLURM ``SLURM_PROCID`` in each of a job's tasks): only
    the first one owns the run folder."""
    return all(os.environ.get(v, "0") == "0" for v in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


@contextmanager
def run_lock(run_folder: RunFolder) -> Iterator[None]:
    """Hold the run folder's lock for the duration: a second process training the same run (a sweep launched
    twice, two SLURM jobs on one fold) is refused with who holds it (:func:`process_lock`)."""
    if not is_first_process():
        yield
        return
    with process_lock(run_folder.lock, lambda holder: (
            f"{run_folder.path} is being trained by {held_by(holder)}; wait for it to finish (or stop it), then run "
            "the same command again")):
        yield


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunIdentity(L.Callback):
    """Carries the run's config hash inside every checkpoint (see :func:`check_checkpoint`)."""

    def __init__(self, run_hash: str) -> None:
        self.run_hash = run_hash

    def state_dict(self) -> dict[str, Any]:
        return {"config_hash": self.run_hash}


def check_checkpoint(path: Path, run_hash: str, earlier_hashes: Sequence[str] = ()) -> None:
    """Before resuming: the checkpoint was written by this run (not copied in from another one by hand), under
    today's identity rule or an earlier one (``earlier_hashes``: what the run's record kept)."""
    checkpoint = load_checkpoint(path)
    stored = next((state.get("config_hash") for key, state in checkpoint.get("callbacks", {}).items()
                   if key.startswith(RunIdentity.__name__)), None)
    if stored != run_hash and stored not in earlier_hashes:
        raise UserError(f"{path}: the checkpoint being resumed was made by another run (config hash {stored}, this "
                        f"run {run_hash}); nnlight does not continue another run's training. Delete "
                        f"{path.parent} to train this run from the start")
