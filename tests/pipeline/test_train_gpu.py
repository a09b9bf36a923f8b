"""train.py on real GPUs: mixed precision, torch.compile, DDP. Skipped on machines without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import Roots, planned_demo, run_script

pytestmark = [pytest.mark.gpu, pytest.mark.cli,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")]


@pytest.fixture(scope="module")
def planned_roots(planned_demo_template: Roots, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return planned_demo(planned_demo_template, tmp_path_factory.mktemp("train_gpu"))


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


def test_training_batches_arrive_pinned_and_inference_autocasts_on_the_gpu(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned host batches (a non-blocking copy) and mixed-precision prediction with batched tiles."""
    import lightning as L
    from benchmarks._common import planned_dataset

    from nnlight.inference.predictor import InferenceSettings, choose_tile_batch, predict_preprocessed
    from nnlight.pipeline.cli import compose_config
    from nnlight.pipeline.train import build_data
    from nnlight.pipeline.train_config import parse
    from nnlight.pipeline.train_setup import prepare

    for root in ("RAW", "PREPROCESSED", "RESULTS"):
        monkeypatch.setenv(f"NNLIGHT_{root}", str(tmp_path / root))
    name = planned_dataset(tmp_path, None, [24, 48, 40], 2, 5, "Pinned")
    setup = prepare(parse(compose_config(Path(__file__).parents[2] / "configs", "train",
                                         [f"plan={name}/3d_fullres", "data.num_workers=1", "trainer=gpu"])))
    data = build_data(setup)
    data.trainer = L.Trainer(accelerator="gpu", devices=1, logger=False)
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    assert images.is_pinned() and labels.is_pinned()

    network = torch.nn.Conv3d(2, 3, 3, padding=1).cuda().eval()
    settings = InferenceSettings(tile_size=[16, 32, 32], num_outputs=3, transpose_backward=[0, 1, 2],
                                 precision="16-mixed", mirror_axes=(0, 1, 2))
    assert choose_tile_batch(network, 2, settings, torch.device("cuda")) >= 2  # a tiny network: several tiles
    image = torch.randn(2, 24, 48, 40)
    exact, _ = predict_preprocessed([network], image.numpy(), InferenceSettings(
        **{**settings.__dict__, "precision": "32", "tile_batch": 1}), torch.device("cuda"))
    mixed, _ = predict_preprocessed([network], image.numpy(), InferenceSettings(
        **{**settings.__dict__, "tile_batch": 4}), torch.device("cuda"))
    assert not torch.equal(exact, mixed) and (exact.argmax(0) == mixed.argmax(0)).float().mean() > 0.999
