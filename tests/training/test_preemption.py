"""The SLURM job a run requeues, and when nnlight answers SLURM's signal itself."""

from __future__ import annotations

import signal

import pytest

from nnlight.training.preemption import REQUEUE_SIGNAL, SlurmRequeue, slurm_environment, slurm_job_id
from nnlight.utils.errors import UserError


@pytest.mark.parametrize(("variables", "expected"), [
    ({"SLURM_JOB_ID": "4242"}, "4242"),
    ({"SLURM_JOB_ID": "4243", "SLURM_ARRAY_JOB_ID": "4200", "SLURM_ARRAY_TASK_ID": "3"}, "4200_3"),
    ({"SLURM_JOB_ID": "42; rm -rf /"}, None),  # never handed to a command unless it is a job id
    ({}, None),
])
def test_the_job_to_requeue_is_this_job_or_its_array_task(monkeypatch: pytest.MonkeyPatch,
                                                          variables: dict[str, str], expected: str | None) -> None:
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert slurm_job_id() == expected


def test_outside_slurm_there_is_no_slurm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_environment() is None
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    with pytest.raises(UserError, match=r"SLURM job: .*--ntasks-per-node=2"):  # a job script Lightning cannot run
        slurm_environment()
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    environment = slurm_environment()
    assert environment is not None and not environment.auto_requeue  # no mid-epoch checkpoint of Lightning's


def test_a_launchers_own_handler_is_left_in_place() -> None:
    """submitit answers SLURM's signal itself (it requeues the same way): nnlight does not take it over."""
    def launchers(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(REQUEUE_SIGNAL, launchers)
    try:
        SlurmRequeue().setup(None, None, "fit")  # type: ignore[arg-type]  # the hook reads neither
        assert signal.getsignal(REQUEUE_SIGNAL) is launchers
        signal.signal(REQUEUE_SIGNAL, signal.SIG_DFL)
        callback = SlurmRequeue()
        callback.setup(None, None, "fit")  # type: ignore[arg-type]
        assert signal.getsignal(REQUEUE_SIGNAL) == callback._requeue
    finally:
        signal.signal(REQUEUE_SIGNAL, previous)
