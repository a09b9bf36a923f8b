"""Training as a SLURM job that may be preempted or reach its time limit: requeued, it resumes exactly.

SLURM warns a job before it ends it (``sbatch --signal=USR1@300``: SIGUSR1 five minutes before). Lightning's own
answer saves a checkpoint in the middle of an epoch, which nnlight could not resume batch for batch. Here the
first process requeues the job instead (``scontrol requeue``) and SLURM ends it; the requeued job resumes from
``last.ckpt``, written at the end of every epoch, so the run ends with the weights an uninterrupted run ends with
(the interrupted epoch is trained again). Where a job launcher (submitit) answers the signal already, it is left to
it: submitit requeues the same way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from types import FrameType

import lightning as L
from lightning.pytorch.plugins.environments import SLURMEnvironment

from nnlight.utils.errors import UserError

REQUEUE_SIGNAL = signal.SIGUSR1


def slurm_environment() -> SLURMEnvironment | None:
    """Lightning's SLURM environment (ranks and addresses from SLURM's variables) without its mid-epoch requeue
    checkpoint, when this process is a SLURM task; None otherwise. A job script Lightning cannot run (``--ntasks``
    without ``--ntasks-per-node``) is refused with Lightning's hint."""
    if not SLURMEnvironment.detect():
        return None
    try:
        return SLURMEnvironment(auto_requeue=False)
    except RuntimeError as e:
        raise UserError(f"SLURM job: {e} (one task per GPU on each node, as trainer.devices says)") from None


def slurm_job_id() -> str | None:
    """This job's id as ``scontrol`` names it (``<array job>_<task>`` for an array job)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}" if array_job else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9]+(_[0-9]+)?", job) else None


class SlurmRequeue(L.Callback):
    """On SLURM's warning signal, the first process requeues the job (see the module's description)."""

    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None
        self.requeued = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(REQUEUE_SIGNAL) in (signal.SIG_DFL, None):
            signal.signal(REQUEUE_SIGNAL, self._requeue)

    def _requeue(self, signum: int, frame: FrameType | None) -> None:
        if self.requeued or self.trainer is None or not self.trainer.is_global_zero:
            return
        self.requeued = True
        job = slurm_job_id()
        epoch = self.trainer.current_epoch
        if job is None:
            print(f"SLURM's end-of-job signal arrived in epoch {epoch}, but no SLURM job id is set to requeue")
            return
        try:
            done = subprocess.run(["scontrol", "requeue", job], check=False, capture_output=True, text=True)
        except OSError as e:
            print(f"SLURM's end-of-job signal arrived in epoch {epoch}; requeueing job {job} failed: {e}")
            return
        if done.returncode == 0:
            print(f"SLURM's end-of-job signal arrived in epoch {epoch}: job {job} requeued; it resumes from "
                  "checkpoints/last.ckpt (the last finished epoch)", flush=True)
        else:
            print(f"SLURM's end-of-job signal arrived in epoch {epoch}; scontrol requeue {job} failed: "
                  f"{done.stderr.strip() or done.returncode}. Submit the same command again to resume", flush=True)
