"""Label pictures: colours by label value, slices through the foreground, image | label | prediction grids."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np

from nnlight.utils.overlays import (
    GAP,
    LEGEND_BAND,
    TITLE_BAND,
    comparison,
    foreground_slices,
    label_colour,
    overlay,
    panel_scale,
    titled_png,
)


def test_labels_are_coloured_over_a_grayscale_image() -> None:
    image = np.linspace(0, 1, 20 * 30).reshape(20, 30)
    labels = np.zeros((20, 30), np.int8)
    labels[5:10, 5:10], labels[12:15, 20:25] = 1, 2
    rgb = overlay(image, labels)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    background = rgb[labels == 0]
    assert (background[:, 0] == background[:, 1]).all() and (background[:, 1] == background[:, 2]).all()  # gray
    one, two = rgb[7, 7].astype(int), rgb[13, 22].astype(int)
    assert np.ptp(one) > 20 and np.ptp(two) > 20 and not np.array_equal(one, two)  # coloured, one colour per label


def test_a_label_value_keeps_its_colour_whatever_else_is_present() -> None:
    """A prediction that misses label 1 still draws label 2 in label 2's colour (as in the reference)."""
    image = np.full((10, 10), 0.5)
    both, only_two = np.zeros((10, 10), np.int8), np.zeros((10, 10), np.int8)
    both[:2], both[5:7] = 1, 2
    only_two[5:7] = 2
    assert np.array_equal(overlay(image, both)[6, 6], overlay(image, only_two)[6, 6])


def test_slices_are_spread_over_the_reference_foreground_first() -> None:
    reference, prediction = np.zeros((20, 4, 4), np.int8), np.zeros((20, 4, 4), np.int8)
    reference[5:10, 1, 1], prediction[12:15, 2, 2] = 1, 1
    assert foreground_slices(reference, prediction, count=3) == [6, 7, 8]
    assert foreground_slices(np.zeros_like(reference), prediction, count=3) == [12, 13, 14]  # no reference
    assert foreground_slices(np.zeros((9, 4, 4)), count=3) == [2, 4, 6]  # no foreground: the middle slices
    assert foreground_slices(np.zeros((1, 4, 4))) == [0]  # a 2D image


def test_the_picture_has_a_row_per_slice_and_three_columns() -> None:
    image = np.random.default_rng(0).random((6, 32, 40))
    labels = np.zeros((6, 32, 40), np.int8)
    labels[2:4, 10:20, 10:20] = 1
    grid = comparison([image], [labels, labels], [2, 3])
    side = panel_scale((32, 40))
    assert grid.shape == (2 * 32 * side + GAP, 3 * 40 * side + 2 * GAP, 3)
    png = matplotlib.image.imread(io.BytesIO(titled_png(grid, "case  Dice 1.000")), format="png")
    assert png.shape[:2] == (grid.shape[0] + TITLE_BAND, grid.shape[1])
    assert np.allclose(png[TITLE_BAND:, :, :3], grid / 255, atol=1 / 255)  # the panels unchanged below the title


def test_every_channel_gets_a_column_and_the_legend_names_each_colour() -> None:
    rng = np.random.default_rng(0)
    channels = [rng.random((1, 32, 40)), rng.random((1, 32, 40)) * 100]  # two channels of a 2D image
    labels = np.zeros((1, 32, 40), np.int8)
    labels[0, 10:20, 10:20], labels[0, 25:30, 5:9] = 1, 2
    grid = comparison(channels, [labels, labels], [0], labels_over=1)
    side = panel_scale((32, 40))
    assert grid.shape == (32 * side, 4 * 40 * side + 3 * GAP, 3)  # T1 | T2 | label | prediction
    label_panel = grid[:, 2 * (40 * side + GAP):3 * 40 * side + 2 * GAP]
    over_second = overlay(channels[1][0], labels[0]).repeat(side, 0).repeat(side, 1)
    assert np.array_equal(label_panel[:, :40 * side], over_second)  # the label drawn over the chosen channel
    png = matplotlib.image.imread(io.BytesIO(titled_png(grid, "case", ("T1", "T2", "label", "prediction"),
                                                        {"tumour": 1, "oedema": 2})), format="png")
    assert png.shape[:2] == (grid.shape[0] + TITLE_BAND + LEGEND_BAND, grid.shape[1])
    legend_band = png[:TITLE_BAND + LEGEND_BAND, :, :3]
    for value in (1, 2):  # each label's colour is drawn in the band above the panels
        assert (np.abs(legend_band - np.array(label_colour(value))).max(-1) < 0.05).sum() > 10
