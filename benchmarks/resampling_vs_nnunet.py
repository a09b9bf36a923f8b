"""Agreement and speed of nnlight's resampling against nnU-Net's on the same arrays.

Needs nnunetv2 importable next to nnlight (it is not an nnlight dependency), e.g. from a separate
environment: ``PYTHONPATH=src /path/to/nnunet-env/bin/python benchmarks/resampling_vs_nnunet.py``.
Prints, per spacing change, the max |difference| of the resampled images and the voxels whose label differs,
and the candidate that was not chosen for images: torch trilinear interpolation (faster, but not nnU-Net's
cubic spline).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
from scipy.ndimage import gaussian_filter

from nnlight.planning.rules import compute_new_shape
from nnlight.preprocessing.resampling import resample_image, resample_segmentation

CASES = {  # current spacing -> target spacing
    "isotropic, no separate z": ([1.0, 1.0, 1.0], [1.3, 0.8, 0.9]),
    "anisotropic, separate z (down)": ([4.0, 0.8, 0.8], [3.0, 1.1, 1.0]),
    "anisotropic, separate z (in-plane up)": ([5.0, 0.7, 0.7], [5.0, 0.5, 0.5]),
}


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _trilinear(image: np.ndarray, shape: list[int]) -> np.ndarray:
    return F.interpolate(torch.from_numpy(image)[None], size=shape, mode="trilinear", align_corners=False)[0].numpy()


def main() -> None:
    rng = np.random.default_rng(0)
    image = (gaussian_filter(rng.normal(size=(2, 40, 160, 140)), 2) * 10).astype(np.float32)
    seg = np.zeros((1, *image.shape[1:]), np.int16)
    seg[0][image[0] > 0.5] = 1
    seg[0][image[0] > 2] = 2
    seg[0, :, :4] = -1
    print(f"image {image.shape}, labels -1/0/1/2")
    for name, (current, target) in CASES.items():
        shape = compute_new_shape(image.shape[1:], current, target)
        ref_img, t_ref_img = _timed(resample_data_or_seg_to_shape, image, shape, current, target, False, 3, 0, None)
        ref_seg, t_ref_seg = _timed(resample_data_or_seg_to_shape, seg, shape, current, target, True, 1, 0, None)
        img, t_img = _timed(resample_image, image, shape, current, target)
        lab, t_lab = _timed(resample_segmentation, seg, shape, current, target)
        trilinear, t_tri = _timed(_trilinear, image, shape)
        print(f"{name}: -> {shape}\n  image  max|diff| {np.abs(img - ref_img).max():.2e} "
              f"(nnU-Net {t_ref_img:.2f} s, nnlight {t_img:.2f} s); torch trilinear candidate max|diff| "
              f"{np.abs(trilinear - ref_img).max():.2e} in {t_tri:.3f} s\n  labels differing "
              f"{int((lab != ref_seg).sum())}/{lab.size} (nnU-Net {t_ref_seg:.2f} s, nnlight {t_lab:.2f} s)")


if __name__ == "__main__":
    main()
