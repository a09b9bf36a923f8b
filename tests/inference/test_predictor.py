"""Fold ensembles average probabilities; one model's scores are its logits."""

from __future__ import annotations

import pytest
import torch

from nnlight.inference.predictor import InferenceSettings, predict_preprocessed

pytestmark = pytest.mark.integration


def test_fold_ensemble_averages_probabilities_and_a_single_model_gives_logits() -> None:
    torch.manual_seed(0)
    networks = [torch.nn.Conv3d(2, 3, 1) for _ in range(2)]
    image = torch.randn(2, 4, 8, 8)
    settings = InferenceSettings(tile_size=[4, 8, 8], num_outputs=3, transpose_backward=[0, 1, 2])
    with torch.no_grad():
        logits = [n(image[None])[0] for n in networks]
    single, single_are_probabilities = predict_preprocessed(networks[:1], image.numpy(), settings, torch.device("cpu"))
    assert not single_are_probabilities and torch.allclose(single, logits[0], atol=1e-5)
    ensemble, are_probabilities = predict_preprocessed(networks, image.numpy(), settings, torch.device("cpu"))
    expected = (logits[0].softmax(0) + logits[1].softmax(0)) / 2
    assert are_probabilities and torch.allclose(ensemble, expected, atol=1e-5)


def test_region_ensembles_average_sigmoids() -> None:
    networks = [torch.nn.Conv3d(1, 2, 1) for _ in range(3)]
    image = torch.randn(1, 4, 4, 4)
    settings = InferenceSettings(tile_size=[4, 4, 4], num_outputs=2, transpose_backward=[0, 1, 2],
                                 region_class_order=[1, 2])
    with torch.no_grad():
        expected = sum(n(image[None])[0].sigmoid() for n in networks) / 3
    ensemble, _ = predict_preprocessed(networks, image.numpy(), settings, torch.device("cpu"))
    assert torch.allclose(ensemble, expected, atol=1e-5)


def test_out_of_memory_falls_back_to_a_cpu_accumulator(monkeypatch) -> None:
    import nnlight.inference.predictor as predictor_module

    calls: list[torch.device] = []
    real = predictor_module.sliding_window_predict_many

    def first_call_runs_out_of_memory(network, images, *args, **kwargs):
        calls.append(images[0].device)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("simulated")
        return real(network, images, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "sliding_window_predict_many", first_call_runs_out_of_memory)
    network = torch.nn.Conv3d(1, 2, 1)
    settings = InferenceSettings(tile_size=[4, 4, 4], num_outputs=2, transpose_backward=[0, 1, 2])
    scores, _ = predict_preprocessed([network], torch.randn(1, 4, 4, 4).numpy(), settings, torch.device("cpu"))
    assert len(calls) == 2 and calls[1].type == "cpu" and scores.shape == (2, 4, 4, 4)


def test_inference_precision_follows_training_on_a_gpu_and_is_float32_on_the_cpu() -> None:
    from nnlight.inference.predictor import inference_precision

    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert inference_precision("auto", "bf16-mixed", gpu) == "bf16-mixed"
    assert inference_precision("auto", "32", gpu) == "32"  # trained in float32: predicted in float32
    assert inference_precision("auto", None, gpu) == "16-mixed"  # not recorded (older runs): nnU-Net's fp16
    assert inference_precision("auto", "16-mixed", cpu) == "32"
    assert inference_precision("bf16-mixed", "32", cpu) == "bf16-mixed"  # asked for explicitly


def test_unknown_precision_names_the_valid_ones() -> None:
    import pytest

    from nnlight.utils.errors import UserError

    with pytest.raises(UserError, match="16-mixed"):
        InferenceSettings(tile_size=[4, 4], num_outputs=2, transpose_backward=[0, 1, 2], precision="fp8")


def test_batched_tiles_give_the_same_scores_as_one_at_a_time() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1))
    image = torch.randn(1, 12, 20, 20)
    one = InferenceSettings(tile_size=[8, 8, 8], num_outputs=2, transpose_backward=[0, 1, 2], tile_batch=1,
                            mirror_axes=(0, 2))
    four = InferenceSettings(**{**one.__dict__, "tile_batch": 4})
    expected, _ = predict_preprocessed([network], image.numpy(), one, torch.device("cpu"))
    batched, _ = predict_preprocessed([network], image.numpy(), four, torch.device("cpu"))
    assert torch.allclose(expected, batched, atol=1e-5)


def test_lightning_precision_names_map_to_one_autocast_each() -> None:
    """A model trained with trainer.precision=16 or bf16 predicts with the matching autocast, not an error."""
    import pytest

    from nnlight.inference.predictor import canonical_precision
    from nnlight.utils.errors import UserError

    assert [canonical_precision(p) for p in (16, "bf16", "bf16-true", "32-true", "16-mixed")] == \
        ["16-mixed", "bf16-mixed", "bf16-mixed", "32", "16-mixed"]
    with pytest.raises(UserError, match="choose one of 32, 16-mixed, bf16-mixed"):
        canonical_precision("transformer-engine")


def test_small_images_share_forward_passes_and_get_the_scores_they_get_alone() -> None:
    """Images of different sizes (smaller than a tile, and one of several tiles) predicted together: fewer forward
    passes, and each image's scores equal its own sliding window's."""
    from nnlight.inference.predictor import predict_preprocessed_many

    torch.manual_seed(0)
    convolution = torch.nn.Conv2d(2, 3, 3, padding=1)
    passes: list[int] = []

    def network(tiles: torch.Tensor) -> torch.Tensor:
        passes.append(len(tiles))
        return convolution(tiles)

    images = [torch.randn(2, 1, 10, 12).numpy(), torch.randn(2, 1, 16, 16).numpy(), torch.randn(2, 1, 5, 7).numpy(),
              torch.randn(2, 1, 16, 30).numpy()]  # the last: 3 tiles along x
    settings = InferenceSettings(tile_size=[16, 16], num_outputs=3, transpose_backward=[0, 1, 2], tile_batch=3,
                                 mirror_axes=(1,))
    alone = [predict_preprocessed([network], image, settings, torch.device("cpu"))[0] for image in images]
    passes_alone = len(passes)
    together = predict_preprocessed_many([network], images, settings, torch.device("cpu"))
    assert passes_alone == 4 * 2  # one batch per image, mirrored
    assert passes[passes_alone:] == [3, 3, 3, 3]  # the 6 tiles in 2 batches of 3, mirrored
    for expected, (scores, are_probabilities), image in zip(alone, together, images, strict=True):
        assert scores.shape == (3, *image.shape[1:]) and not are_probabilities
        assert torch.allclose(expected, scores, atol=1e-6)
