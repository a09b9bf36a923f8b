"""Per-channel intensity normalization schemes (nnU-Net's names and behaviour)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

EPS = 1e-8


def zscore(image: np.ndarray, seg: np.ndarray | None, use_mask: bool, _: Mapping[str, float]) -> np.ndarray:
    """Per-image mean/std; with ``use_mask`` only inside the non-zero mask (seg >= 0), outside stays as is (0)."""
    image = image.astype(np.float32, copy=True)
    if use_mask and seg is not None:
        mask = seg >= 0
        values = image[mask]
        image[mask] = (values - values.mean()) / max(float(values.std()), EPS)
        return image
    mean, std = image.mean(), image.std()
    image -= mean
    image /= max(float(std), EPS)
    return image


def ct(image: np.ndarray, _seg: np.ndarray | None, _use_mask: bool, stats: Mapping[str, float]) -> np.ndarray:
    """Clip to the dataset's foreground 0.5/99.5 percentiles, then the dataset-global foreground mean/std."""
    image = np.clip(image.astype(np.float32), stats["percentile_00_5"], stats["percentile_99_5"])
    image -= stats["mean"]
    image /= max(float(stats["std"]), EPS)
    return image


def no_normalization(image: np.ndarray, *_: object) -> np.ndarray:
    return image.astype(np.float32, copy=True)


def rescale_to_0_1(image: np.ndarray, *_: object) -> np.ndarray:
    image = image.astype(np.float32, copy=True)
    image -= image.min()
    image /= max(float(image.max()), EPS)
    return image


def rgb_to_0_1(image: np.ndarray, *_: object) -> np.ndarray:
    if image.min() < 0 or image.max() > 255:
        raise ValueError("RGBTo01Normalization expects 8-bit values in [0, 255]; use another channel name")
    return image.astype(np.float32) / 255.0


SCHEMES: dict[str, Callable[..., np.ndarray]] = {
    "ZScoreNormalization": zscore,
    "CTNormalization": ct,
    "NoNormalization": no_normalization,
    "RescaleTo01Normalization": rescale_to_0_1,
    "RGBTo01Normalization": rgb_to_0_1,
}


def normalize(data: np.ndarray, seg: np.ndarray | None, schemes: Sequence[str], use_mask: Sequence[bool],
              intensity_properties: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Normalize each channel of ``(c, ...)`` data with its scheme; returns a new float32 array."""
    if len(schemes) != data.shape[0]:
        raise ValueError(f"{len(schemes)} normalization schemes for {data.shape[0]} channels")
    mask = seg[0] if seg is not None else None
    return np.stack([SCHEMES[scheme](data[c], mask, use_mask[c], intensity_properties.get(str(c), {}))
                     for c, scheme in enumerate(schemes)])
