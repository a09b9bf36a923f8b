"""Image file formats as classes, chosen by file ending through one registry, keeping each case's full geometry.

Arrays follow nnU-Net's convention: ``(channels, z, y, x)`` in numpy order, float32, with the
spacing in the same (z, y, x) order. 2D images become ``(channels, 1, y, x)`` with spacing
``(999, sy, sx)`` exactly as nnU-Net does, so that 2D and 3D datasets share one code path.

A format is one :class:`ImageFormat` subclass registered with :func:`register` (nnU-Net's ``BaseReaderWriter``):
it names its endings, reads a file as ``(channels, z, y, x)`` with its geometry, writes one channel (an image or a
label map) and verifies a written file. Nothing outside this module compares format names or endings.
"""

from __future__ import annotations

import gzip
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import SimpleITK as sitk

from nnlight.utils.errors import UserError

SPACING_2D_DUMMY = 999.0


@dataclass(frozen=True)
class Geometry:
    """Where a case sits in the world. ``spacing`` is numpy order (z, y, x); the sitk_* fields are ITK order."""

    spacing: tuple[float, ...]
    sitk_spacing: tuple[float, ...]
    sitk_origin: tuple[float, ...]
    sitk_direction: tuple[float, ...]
    is_2d: bool


class ImageReadError(UserError):
    """A file that cannot be read or has an unsupported layout; the message names the file."""


class ImageFormat(ABC):
    """One file format: how a file becomes ``(channels, z, y, x)`` and its geometry, and back."""

    name: ClassVar[str]  # nnU-Net's reader/writer class of this format (plans files name it)
    endings: ClassVar[tuple[str, ...]]  # lower case, with the dot
    one_channel_per_file: ClassVar[bool] = True  # False: a file may hold several channels (RGB)

    @abstractmethod
    def read(self, path: Path) -> tuple[np.ndarray, Geometry]:
        """``(channels, z, y, x)`` in the stored dtype (2D: ``(channels, 1, y, x)``) and the geometry."""

    @abstractmethod
    def write(self, array: np.ndarray, path: Path, geometry: Geometry) -> None:
        """One channel ``(z, y, x)`` (2D: ``(1, y, x)``) with the geometry it was read with."""

    def verify(self, path: Path) -> None:
        """Raise ``ImageReadError`` unless ``path`` holds a whole image (writers do not all report a failed write);
        by default it is read back."""
        self.read(path)

    def files_per_case(self, num_channels: int) -> int | None:
        """How many files a case of ``num_channels`` channels has (None: as many as its files hold)."""
        return num_channels if self.one_channel_per_file else None


_FORMATS: list[ImageFormat] = []


def register(format_class: type[ImageFormat]) -> type[ImageFormat]:
    """Make a format known by its endings (a class decorator); a later format takes an ending over."""
    _FORMATS.insert(0, format_class())
    return format_class


def format_names() -> tuple[str, ...]:
    """The registered formats by nnU-Net's reader/writer names (dataset.json's ``overwrite_image_reader_writer``)."""
    return tuple(f.name for f in _FORMATS)


def supported_endings() -> tuple[str, ...]:
    """Every registered ending, longest first (so ``.nii.gz`` is matched before ``.gz``)."""
    return tuple(sorted({e for f in _FORMATS for e in f.endings}, key=len, reverse=True))


def image_format(file_ending: str, reader_writer: str | None = None) -> ImageFormat:
    """The format of ``file_ending`` (dataset.json's), or the one nnU-Net's ``overwrite_image_reader_writer`` names."""
    if reader_writer is not None:
        named = next((f for f in _FORMATS if f.name == reader_writer), None)
        if named is not None:
            return named
    ending = file_ending.lower()
    found = next((f for f in _FORMATS if ending in f.endings), None)
    if found is None:
        raise ImageReadError(f"file ending {file_ending!r} is not supported; use one of "
                             f"{', '.join(sorted(supported_endings()))}")
    return found


def format_of(path: str | Path) -> ImageFormat:
    """The format of a file, by the ending of its name."""
    name = Path(path).name.lower()
    ending = next((e for e in supported_endings() if name.endswith(e)), Path(path).suffix)
    return image_format(ending)


_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64 voxels


@dataclass(frozen=True)
class _NiftiLayout:
    data_offset: int
    data_bytes: int
    float_dtype: str | None  # numpy dtype (with byte order) of float voxels, None for integer types

    @property
    def total(self) -> int:
        return self.data_offset + self.data_bytes


def _nifti_layout(header: bytes) -> _NiftiLayout | None:
    """Where a NIfTI-1/-2 header puts the voxels, how many bytes they take and whether they are floats; None when
    ``header`` is not a NIfTI header."""
    for order in "<>":
        size = int(np.frombuffer(header[:4], f"{order}i4")[0]) if len(header) >= 4 else 0
        if size == 348 and len(header) >= 348:
            dims = np.frombuffer(header[40:56], f"{order}i2")
            datatype, bitpix = (int(v) for v in np.frombuffer(header[70:74], f"{order}i2"))
            offset = float(np.frombuffer(header[108:112], f"{order}f4")[0])
        elif size == 540 and len(header) >= 540:
            dims = np.frombuffer(header[16:80], f"{order}i8")
            datatype, bitpix = (int(v) for v in np.frombuffer(header[12:16], f"{order}i2"))
            offset = float(np.frombuffer(header[168:176], f"{order}i8")[0])
        else:
            continue
        if not 1 <= dims[0] <= 7 or not np.isfinite(offset) or offset < 0 or np.any(dims[1:dims[0] + 1] < 0):
            return None
        voxels = int(np.prod(dims[1:dims[0] + 1].astype(object)))
        kind = _NIFTI_FLOATS.get(datatype)
        return _NiftiLayout(int(offset), voxels * bitpix // 8, f"{order}{kind}" if kind else None)
    return None


class _FiniteScan:
    """Checks float voxels chunk by chunk as the stream passes (chunks need not align with voxels)."""

    def __init__(self, layout: _NiftiLayout) -> None:
        self.layout, self.position, self.carry, self.nonfinite = layout, 0, b"", False
        self.itemsize = np.dtype(layout.float_dtype).itemsize if layout.float_dtype else 0

    def feed(self, chunk: bytes) -> None:
        start, self.position = self.position, self.position + len(chunk)
        if not self.itemsize or self.nonfinite:
            return
        begin = max(self.layout.data_offset - start, 0)
        end = min(self.layout.total - start, len(chunk))
        if end <= begin:
            return
        data = self.carry + chunk[begin:end]
        usable = len(data) - len(data) % self.itemsize
        self.carry = data[usable:]
        values = np.frombuffer(data[:usable], self.layout.float_dtype)
        self.nonfinite = not bool(np.isfinite(values).all())


def _scan(path: Path) -> tuple[int, _NiftiLayout | None, bool]:
    """Read a ``.nii``/``.nii.gz``/``.gz`` file through once: its (decompressed) length, the NIfTI layout its header
    announces and whether a float voxel is NaN or Inf."""
    name = path.name.lower()
    with (gzip.open(path, "rb") if name.endswith(".gz") else path.open("rb")) as f:
        header = f.read(540)
        layout = _nifti_layout(header) if name.endswith((".nii", ".nii.gz")) else None
        scan = _FiniteScan(layout) if layout is not None else None
        total = len(header)
        if scan is not None:
            scan.feed(header)
        for chunk in iter(lambda: f.read(1 << 24), b""):
            total += len(chunk)
            if scan is not None:
                scan.feed(chunk)
    return total, layout, bool(scan and scan.nonfinite)


def check_complete(path: Path) -> None:
    """SimpleITK reads a truncated NIfTI or gzip file as zeros, and NaN/Inf NIfTI voxels as 0, without a word: read
    the whole stream first, compare it with what the header announces and check float voxels are finite."""
    name = path.name.lower()
    if not name.endswith((".gz", ".nii")):
        return
    try:
        total, layout, nonfinite = _scan(path)
    except (EOFError, OSError, zlib.error) as e:
        raise ImageReadError(f"{path}: the compressed file is truncated or corrupt ({e}); copy or export it "
                             "again") from None
    if name.endswith((".nii", ".nii.gz")) and layout is None:
        raise ImageReadError(f"{path}: not a NIfTI file (no valid header in its {total} bytes); copy or export it "
                             "again")
    if layout is not None and total < layout.total:
        raise ImageReadError(f"{path}: the file is truncated ({total} of the {layout.total} bytes its header "
                             "announces); copy or export it again")
    if nonfinite:
        raise ImageReadError(nonfinite_message(path))


def nonfinite_message(file: str | Path) -> str:
    return (f"{file}: contains NaN or Inf voxels, which would be predicted as background without a word; replace "
            "them (e.g. with the image minimum)")


def check_finite(images: np.ndarray, files: Sequence[str | Path]) -> str | None:
    """A message naming the first channel file with NaN or Inf voxels, or None when every voxel is finite."""
    for channel, file in enumerate(files):
        if not np.all(np.isfinite(images[channel])):
            return nonfinite_message(file)
    return None


def _read_sitk(path: Path) -> sitk.Image:
    check_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise ImageReadError(f"{path}: cannot be read ({reason}); the file is corrupt or not an image — "
                             "re-export or replace it") from None


@register
class SimpleITKFormat(ImageFormat):
    """NIfTI, NRRD, MetaImage, GIPL through SimpleITK: one channel per file, the full geometry kept."""

    name = "SimpleITKIO"
    endings: ClassVar[tuple[str, ...]] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl", ".gipl.gz")

    def read(self, path: Path) -> tuple[np.ndarray, Geometry]:
        image = _read_sitk(path)
        array = sitk.GetArrayFromImage(image)
        spacing = tuple(float(s) for s in image.GetSpacing())
        geometry_kwargs = {"sitk_spacing": spacing, "sitk_origin": tuple(float(o) for o in image.GetOrigin()),
                           "sitk_direction": tuple(float(d) for d in image.GetDirection())}
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ImageReadError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                                 "store one channel per file (<case>_0000, <case>_0001, ...)")
        if array.ndim == 2:
            return array[None, None], Geometry(spacing=(SPACING_2D_DUMMY, *spacing[::-1]), is_2d=True,
                                               **geometry_kwargs)
        if array.ndim == 3:
            return array[None], Geometry(spacing=spacing[::-1], is_2d=False, **geometry_kwargs)
        raise ImageReadError(f"{path}: is {array.ndim}D (shape {array.shape}) but a 2D or 3D image is expected; "
                             "split 4D files into one 3D file per channel (nnlight-convert-msd does this for "
                             "Medical Segmentation Decathlon data)")

    def write(self, array: np.ndarray, path: Path, geometry: Geometry) -> None:
        data = np.asarray(array)
        if geometry.is_2d:
            data = data.reshape(data.shape[-2:])
        image = sitk.GetImageFromArray(data)
        image.SetSpacing(geometry.sitk_spacing)
        image.SetOrigin(geometry.sitk_origin)
        image.SetDirection(geometry.sitk_direction)
        sitk.WriteImage(image, str(path), useCompression=True)

    def verify(self, path: Path) -> None:
        """SimpleITK leaves a truncated ``.nii.gz`` or an empty file on a full disk without a word: the stream is
        read through (compressed and NIfTI files) or the file read back."""
        if path.name.lower().endswith((".gz", ".nii")):
            check_complete(path)
        else:
            _read_sitk(path)


@register
class NaturalImage2DFormat(SimpleITKFormat):
    """PNG, BMP, TIFF, JPEG: 2D grayscale, or RGB(A) split into one channel per colour as nnU-Net does; no
    geometry beyond a unit pixel."""

    name = "NaturalImage2DIO"
    endings = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
    one_channel_per_file = False

    def read(self, path: Path) -> tuple[np.ndarray, Geometry]:
        image = _read_sitk(path)
        array = sitk.GetArrayFromImage(image)
        components = image.GetNumberOfComponentsPerPixel()
        if components in (3, 4) and array.ndim == 3:
            array = np.moveaxis(array, -1, 0)[:, None]  # RGB(A): one channel per colour, as nnU-Net does
        elif components == 1 and array.ndim == 2:
            array = array[None, None]
        else:
            raise ImageReadError(f"{path}: expected a 2D grayscale or RGB(A) image, got shape {array.shape} with "
                                 f"{components} component(s)")
        ones = (1.0, 1.0)
        geometry = Geometry(spacing=(SPACING_2D_DUMMY, *ones), sitk_spacing=ones, sitk_origin=(0.0, 0.0),
                            sitk_direction=(1.0, 0.0, 0.0, 1.0), is_2d=True)
        return array, geometry

    def verify(self, path: Path) -> None:
        _read_sitk(path)


def read_image_file(path: str | Path, image_format: ImageFormat | None = None) -> tuple[np.ndarray, Geometry]:
    """Read one file as ``(c, z, y, x)`` in its stored dtype plus its geometry; ``image_format``: the dataset's
    (by default the one of the file's ending)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    return (image_format or format_of(path)).read(path)


def geometries_match(a: Geometry, b: Geometry) -> bool:
    """Same tolerance as nnU-Net's integrity check (``np.allclose`` on spacing, origin and direction)."""
    return (np.allclose(a.spacing, b.spacing) and np.allclose(a.sitk_origin, b.sitk_origin)
            and np.allclose(a.sitk_direction, b.sitk_direction))


def read_images(files: Sequence[str | Path], image_format: ImageFormat | None = None) -> tuple[np.ndarray, Geometry]:
    """Read all channel files of a case into one float32 ``(c, z, y, x)`` array."""
    arrays, geometries = zip(*(read_image_file(f, image_format) for f in files), strict=True)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise ImageReadError(f"{Path(files[0]).parent}: channel files {[Path(f).name for f in files]} have "
                             f"different shapes {[a.shape[1:] for a in arrays]}; all channels of a case must "
                             "share one voxel grid")
    for f, g in zip(files[1:], geometries[1:], strict=True):
        if not geometries_match(geometries[0], g):
            raise ImageReadError(f"{f}: geometry (spacing/origin/direction) differs from {Path(files[0]).name}; "
                                 "all channels of a case must share one voxel grid — resample it")
    return np.concatenate(arrays, axis=0).astype(np.float32, copy=False), geometries[0]


def read_seg(path: str | Path, image_format: ImageFormat | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a label file as ``(1, z, y, x)`` in its stored dtype."""
    array, geometry = read_image_file(path, image_format)
    if array.shape[0] != 1:
        raise ImageReadError(f"{path}: a label file must have one channel, found {array.shape[0]}")
    return array, geometry


def write_image(data: np.ndarray, path: str | Path, geometry: Geometry) -> None:
    """Write a single-channel ``(z, y, x)`` (or ``(1, y, x)`` for 2D) array in the format of ``path``'s ending, with
    the geometry it was read with."""
    format_of(path).write(np.asarray(data), Path(path), geometry)


def write_seg(seg: np.ndarray, path: str | Path, geometry: Geometry) -> None:
    """Write a label map (or an instance map) as the smallest unsigned integer type that holds it."""
    seg = np.asarray(seg)
    largest = seg.max(initial=0)
    # below each type's largest value: an instance map at the limit reads as an overflow (raw.instances)
    write_image(seg.astype(np.uint8 if largest < 255 else np.uint16 if largest < 65535 else np.uint32), path, geometry)


def verify_image_file(path: Path) -> None:
    """Raise ``ImageReadError`` unless ``path`` holds a complete image of its format (what a writer left)."""
    format_of(path).verify(path)
