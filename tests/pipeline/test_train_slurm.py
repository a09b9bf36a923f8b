"""Training as a multi-node SLURM job, simulated on the CPU (issue 35, item 2): two tasks with SLURM's variables
(2 nodes x 1 process, gloo) train one run; SLURM's end-of-job signal makes the first task requeue the job (a
stand-in ``scontrol`` records it), the job is killed as SLURM kills it, and the requeued tasks resume and end with
the weights of an uninterrupted run."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, Roots, planned_demo

pytestmark = pytest.mark.cli

ARGS = ["plan=Dataset900_Demo/2d", "debug=limit", "trainer=ddp_sim", "trainer.devices=1", "trainer.num_nodes=2",
        "trainer.max_epochs=6", "data.iterations_per_epoch=3", "validation.enabled=false"]
JOB_ID = "4242"


@pytest.fixture(scope="module")
def planned_roots(planned_demo_template: Roots, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return planned_demo(planned_demo_template, tmp_path_factory.mktemp("slurm"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fake_scontrol(folder: Path) -> Path:
    """``scontrol`` that records its arguments (what SLURM would requeue)."""
    folder.mkdir(exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {folder / "requeued"}\n')
    script.chmod(0o755)
    return folder


def _start_job(roots: Roots, fake_bin: Path, log: Path) -> list[subprocess.Popen]:
    """The job's two tasks, as srun starts them: one per node, each with its rank in SLURM's variables."""
    port = str(_free_port())
    tasks = []
    for rank in (0, 1):
        env = {**roots.env(), "SLURM_JOB_ID": JOB_ID, "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "2",
               "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0",
               "SLURM_NODEID": str(rank), "SLURM_NODELIST": "127.0.0.1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
        env.pop("LOCAL_RANK", None)
        with (log.parent / f"{log.name}.{rank}").open("a") as out:
            tasks.append(subprocess.Popen([sys.executable, str(REPO / "train.py"), *ARGS], cwd=REPO, env=env,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    return tasks


def _finish(tasks: list[subprocess.Popen], log: Path) -> None:
    for rank, task in enumerate(tasks):
        assert task.wait(timeout=600) == 0, (log.parent / f"{log.name}.{rank}").read_text()[-3000:]


def _run_folder(roots: Roots) -> Path:
    folders = list((roots.results / "Dataset900_Demo" / "2d").glob("*/fold_0"))
    assert len(folders) == 1, folders
    return folders[0]


@pytest.mark.slow  # 50-90 s on a 2-core Xeon: the default suite keeps its 15 minutes
def test_a_requeued_multi_node_run_ends_with_the_weights_of_an_uninterrupted_one(planned_roots: Roots,
                                                                                  tmp_path: Path) -> None:
    fake_bin = _fake_scontrol(tmp_path / "bin")
    uninterrupted = dataclasses.replace(planned_roots, results=tmp_path / "uninterrupted")
    _finish(_start_job(uninterrupted, fake_bin, tmp_path / "uninterrupted.log"), tmp_path / "uninterrupted.log")

    tasks = _start_job(planned_roots, fake_bin, tmp_path / "job.log")
    try:
        deadline = time.time() + 300
        last = None
        while time.time() < deadline and all(t.poll() is None for t in tasks):
            folders = list((planned_roots.results / "Dataset900_Demo" / "2d").glob("*/fold_0/checkpoints/last.ckpt"))
            if folders:
                last = folders[0]
                break
            time.sleep(0.1)
        assert last is not None, (tmp_path / "job.log.0").read_text()[-3000:]
        for task in tasks:  # SLURM's warning goes to every task of the job
            os.kill(task.pid, signal.SIGUSR1)
        while time.time() < deadline and not (fake_bin / "requeued").is_file():
            time.sleep(0.1)
    finally:
        for task in tasks:  # then SLURM ends the job it requeued
            os.killpg(task.pid, signal.SIGKILL)
            task.wait()
    assert (fake_bin / "requeued").read_text().split() == ["requeue", JOB_ID]  # once, by the first task only
    run = _run_folder(planned_roots)
    assert not (run / "checkpoints" / "final.ckpt").exists(), "the run finished before the signal: nothing resumed"
    interrupted_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert "job 4242 requeued; it resumes from checkpoints/last.ckpt" in (tmp_path / "job.log.0").read_text()

    _finish(_start_job(planned_roots, fake_bin, tmp_path / "job.log"), tmp_path / "job.log")  # the requeued job
    assert "Resuming from" in (tmp_path / "job.log.0").read_text()
    resumed = torch.load(run / "checkpoints" / "final.ckpt", weights_only=True)
    reference = torch.load(_run_folder(uninterrupted) / "checkpoints" / "final.ckpt", weights_only=True)
    assert interrupted_at < resumed["epoch"] == reference["epoch"] == 6
    assert resumed["global_step"] == reference["global_step"] == 6 * 3
    for name, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
    assert sorted(p.name for p in run.glob("*.ckpt")) == []  # no mid-epoch checkpoint of Lightning's own
