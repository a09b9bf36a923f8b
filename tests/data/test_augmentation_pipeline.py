"""The augmentation pipeline as an ordered list: nnU-Net's default and DA5 give the same numbers as before it
became one (a reference computed with the previous implementation), and a user's transform runs where listed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from nnlight.data.augmentation import BUILT_IN_STAGES, AugmentationSettings, augment, spatial_augmentation_geometry
from nnlight.data.transforms import BatchTransform
from nnlight.pipeline.config_values import plain, typed
from nnlight.utils.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# augment()'s outputs for seed 7 before the pipeline became `order` (commit "loss group opened", its script:
# tests/data/fixtures/make_augmentation_reference.py)
REFERENCE = Path(__file__).parent / "fixtures" / "augmentation_reference.npz"


def _settings(option: str, *overrides: str) -> AugmentationSettings:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        node = compose(overrides=[f"+augmentation={option}", *overrides]).augmentation
    return typed(AugmentationSettings, plain(node), "augmentation")


def _run(settings: AugmentationSettings, patch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    geometry = spatial_augmentation_geometry(patch, settings)
    g = torch.Generator().manual_seed(7)
    images = torch.randn((3, 2, *geometry.initial_patch_size), generator=g)
    labels = torch.randint(-1, 3, (3, 1, *geometry.initial_patch_size), generator=g).to(torch.int16)
    return augment(images, labels, patch, settings, geometry, g, mask_channels=(1,))


@pytest.mark.parametrize("option", ["default", "da5"])
@pytest.mark.parametrize("patch", [[10, 12, 12], [16, 14]])
def test_the_default_and_da5_pipelines_give_the_previous_numbers(option: str, patch: list[int]) -> None:
    images, labels = _run(_settings(option), patch)
    reference = np.load(REFERENCE)
    key = f"{option}_{len(patch)}d"
    # the same random draws and operations; float32 kernels differ in their last bits between CPUs (the
    # reference came from an Intel Xeon; an AMD EPYC's interpolation differs by ~2e-6), so images to 1e-5
    np.testing.assert_allclose(images.numpy(), reference[f"{key}_images"], rtol=1e-5, atol=1e-5)
    assert np.array_equal(labels.numpy(), reference[f"{key}_labels"])


class Invert(BatchTransform):
    """Test transform: negates the chosen samples' images, counts its calls."""

    calls = 0

    def apply(self, images, labels, generator):
        Invert.calls += 1
        return -images, labels


def test_a_users_transform_runs_where_it_is_listed_and_other_orders_are_checked() -> None:
    order = "[spatial,invert,rot90_transpose,noise,blur,additive_brightness,brightness,contrast,low_resolution," \
            "gamma_inverted,gamma,mirror,blank_rectangles,brightness_gradient,local_gamma,sharpen]"
    target = f"{__name__}.Invert"
    settings = _settings("none", f"+augmentation.transforms.invert={{_target_: {target}, p: 1.0}}",
                         f"augmentation.order={order}")
    plain = _settings("none")
    images, _ = _run(settings, [16, 14])
    reference, _ = _run(plain, [16, 14])
    assert Invert.calls == 1 and torch.equal(images[:, :1], -reference[:, :1])  # channel 1 is masked outside
    with pytest.raises(UserError, match=r"transforms\.invert is not in order"):
        _settings("none", f"+augmentation.transforms.invert={{_target_: {target}, p: 1.0}}")
    with pytest.raises(UserError, match="each stage once, starting with spatial"):
        _settings("none", "augmentation.order=[noise,spatial]")
    with pytest.raises(UserError, match=r"order: twirl is neither a built-in stage"):
        _settings("none", "augmentation.order=[spatial,twirl]")
    assert list(_settings("default").order) == list(BUILT_IN_STAGES)


def test_a_transform_that_is_not_a_batch_transform_or_changes_the_shape_is_named() -> None:
    bad = dataclasses.replace(AugmentationSettings(), order=("spatial", "x"),
                              transforms={"x": {"_target_": "torch.nn.Identity"}})
    with pytest.raises(UserError, match=r"augmentation\.transforms\.x\._target_='torch\.nn\.Identity' is not a "
                                        r"nnlight\.data\.transforms\.BatchTransform"):
        _run(bad, [16, 14])


class Shrink(BatchTransform):
    def apply(self, images, labels, generator):
        return images[..., :-1], labels[..., :-1]


def test_a_transform_that_changes_the_shape_is_refused_before_training() -> None:
    from nnlight.data.augmentation import check_transforms

    settings = dataclasses.replace(AugmentationSettings(), order=("spatial", "shrink"),
                                   transforms={"shrink": {"_target_": f"{__name__}.Shrink", "p": 0.1}})
    with pytest.raises(UserError, match=r"augmentation\.transforms\.shrink failed on a dummy batch .* returned images "
                                        r"\[2, 1, 16, 13\] .*it must keep the shapes"):
        check_transforms(settings, 1, [16, 14])
