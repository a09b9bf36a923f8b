"""train.py on real GPUs: mixed precision, torch.compile, DDP. Skipped on machines without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import Roots, planned_demo, run_script

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")]


@pytest.fixture(scope="module")
def planned_roots(demo_3d: Path, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return planned_demo(demo_3d, tmp_path_factory.mktemp("train_gpu"))


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_trains_and_validates(planned_roots: Roots, precision: str) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/3d_fullres", "trainer=gpu", "debug=limit",
                        f"trainer.precision={precision}", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation Dice" in result.stdout


def test_default_precision_on_gpu_is_16_mixed_and_compile_runs(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "trainer=gpu", "debug=limit", "trainer.compile=true",
                        roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Automatic Mixed Precision" in result.stdout + result.stderr  # 16-mixed is the GPU default
    assert "ignored on the CPU" not in result.stdout


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="real DDP needs 2 GPUs")
def test_ddp_on_two_gpus(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/3d_fullres", "trainer=ddp", "trainer.devices=2",
                        "debug=limit", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Training done") == 1  # one summary, from rank 0
