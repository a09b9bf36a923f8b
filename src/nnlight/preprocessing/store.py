"""The case store: one folder per (dataset, data identifier), a few plain files per case.

Layout (``<preprocessed>/<Dataset>/<data_identifier>/``):
  ``<case>.npy``            float32 ``(c, z, y, x)`` image, uncompressed so a patch is a memory-mapped slice
  ``<case>_seg.npy``        int8/int16 ``(1, z, y, x)`` labels (-1 outside the non-zero mask)
                            (``preprocess.store=blosc2``: ``<case>.b2nd`` and ``<case>_seg.b2nd`` instead, compressed
                            in patch-sized chunks, for datasets whose uncompressed store would not fit the disk)
  ``<case>_locations.npz``  sampled voxel coordinates per foreground class (for oversampling)
  ``<case>.json``           properties (geometry, crop box, shapes); written last — it marks the case complete

Every file is written under a temporary name and renamed, and the JSON comes last, so a case killed
half-way is simply not there for a reader and is redone by the next run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, Protocol

import numpy as np

from nnlight.preprocessing.case import BORDER_THICKNESS_KEY, PreprocessedCase
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write, atomic_write_json, atomic_write_named, load_json

StoreFormatName = Literal["npy", "blosc2"]


class PatchSource(Protocol):
    """What the patch sampler reads a case from: a shape, and numpy arrays for slices."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __getitem__(self, index: Any) -> np.ndarray: ...


class StoreFormat(ABC):
    """How a case's image and labels are kept on disk (one class per format)."""

    ending: ClassVar[str]

    @abstractmethod
    def write(self, path: Path, array: np.ndarray, patch_size: Sequence[int]) -> None:
        """Write ``array`` ``(c, *spatial)`` atomically; ``patch_size``: the training patch (chunking)."""

    @abstractmethod
    def open(self, path: Path) -> PatchSource:
        """The array for patch reads, without reading it whole."""

    @abstractmethod
    def read(self, path: Path) -> np.ndarray:
        """The whole array in memory."""


class NpyStore(StoreFormat):
    """Uncompressed ``.npy``, memory-mapped: the fastest patch reads (BENCHMARKS.md); the default."""

    ending = ".npy"

    def write(self, path: Path, array: np.ndarray, patch_size: Sequence[int]) -> None:
        atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array)))

    def open(self, path: Path) -> PatchSource:
        return np.load(path, mmap_mode="r")

    def read(self, path: Path) -> np.ndarray:
        return np.load(path)


BLOSC2_MAX_CHUNK_BYTES = 6 * 2**20  # as nnU-Net 2.8: chunks of at most a patch per axis and 6 MiB,
BLOSC2_MAX_BLOCK_BYTES = 128 * 2**10  # blocks of at most 128 KiB, LZ4HC level 5


def _halved_until(shape: Sequence[int], itemsize: int, limit: int) -> tuple[int, ...]:
    """``shape`` with its largest axis halved until it holds at most ``limit`` bytes."""
    shape = list(shape)
    while math.prod(shape) * itemsize > limit and max(shape) > 1:
        axis = shape.index(max(shape))
        shape[axis] = (shape[axis] + 1) // 2
    return tuple(shape)


def blosc2_layout(shape: Sequence[int], patch_size: Sequence[int], itemsize: int
                  ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunks and blocks for a ``(c, *spatial)`` array read in patches of ``patch_size`` (the last axes): one
    channel per chunk, at most a patch per axis, so a random patch decompresses a few chunks only."""
    spatial = list(shape[1:])
    patch = [1] * (len(spatial) - len(patch_size)) + list(patch_size)  # a 2d plan's patch on a 3D case
    chunks = _halved_until([1, *(min(s, p) for s, p in zip(spatial, patch, strict=True))], itemsize,
                           BLOSC2_MAX_CHUNK_BYTES)
    return chunks, _halved_until(chunks, itemsize, BLOSC2_MAX_BLOCK_BYTES)


def _blosc2() -> Any:
    try:
        import blosc2
    except ImportError:
        raise UserError("the compressed case store (preprocess.store=blosc2) needs the blosc2 package: "
                        "pip install \"nnlight[compressed]\"") from None
    return blosc2


class Blosc2Store(StoreFormat):
    """Compressed ``.b2nd`` in patch-sized chunks (nnU-Net 2.8's format): about a third of the disk, slower patch
    reads (BENCHMARKS.md)."""

    ending = ".b2nd"

    def write(self, path: Path, array: np.ndarray, patch_size: Sequence[int]) -> None:
        blosc2 = _blosc2()
        chunks, blocks = blosc2_layout(array.shape, patch_size, array.dtype.itemsize)
        cparams = {"codec": blosc2.Codec.LZ4HC, "clevel": 5, "nthreads": 1,
                   "filters": [blosc2.Filter.SHUFFLE]}

        def verify(tmp: Path) -> None:
            if tuple(blosc2.open(str(tmp), mode="r").shape) != array.shape:
                raise UserError(f"{tmp}: incomplete")

        atomic_write_named(path, lambda tmp: blosc2.asarray(np.ascontiguousarray(array), urlpath=str(tmp), mode="w",
                                                            chunks=chunks, blocks=blocks, cparams=cparams), verify)

    def open(self, path: Path) -> PatchSource:
        return _blosc2().open(str(path), mode="r", dparams={"nthreads": 1})

    def read(self, path: Path) -> np.ndarray:
        return np.asarray(self.open(path)[...])


STORE_FORMATS: dict[str, StoreFormat] = {"npy": NpyStore(), "blosc2": Blosc2Store()}


def store_format(name: str) -> StoreFormat:
    if name not in STORE_FORMATS:
        raise UserError(f"preprocess.store={name}: choose one of {', '.join(STORE_FORMATS)}")
    return STORE_FORMATS[name]


def format_of_case(folder: Path, case_id: str) -> StoreFormat:
    """The format a stored case was written in (its image file says)."""
    for store in STORE_FORMATS.values():
        if (folder / f"{case_id}{store.ending}").is_file():
            return store
    raise UserError(f"{folder}: case {case_id} has no image file ({', '.join(s.ending for s in STORE_FORMATS.values())}"
                    "); run nnlight-plan again to preprocess it")


def is_complete(folder: Path, case_id: str) -> bool:
    return (folder / f"{case_id}.json").is_file()


def completed_cases(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def border_thickness_of(folder: Path, case_id: str) -> float | None:
    """The border ring (mm) a case's border-core labels were made with; None for other labels."""
    value = load_json(folder / f"{case_id}.json").get(BORDER_THICKNESS_KEY)
    return None if value is None else float(value)


def remove_leftovers(folder: Path) -> int:
    """Delete temporary files an interrupted run left behind (never read, but they waste disk)."""
    leftovers = list(folder.glob(".*.tmp*")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def _save_named(file: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` of named arrays (numpy's stub types the keyword arrays like its own ``allow_pickle`` flag)."""
    save: Callable[..., None] = np.savez
    save(file, **arrays)


def write_case(folder: Path, case_id: str, case: PreprocessedCase, extra_properties: dict[str, Any],
               store: StoreFormat = STORE_FORMATS["npy"], patch_size: Sequence[int] = ()) -> None:
    """The case in ``store``'s format (``patch_size``: the plan's, for chunked formats); a case kept in another
    format before is replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case_id}.json").unlink(missing_ok=True)  # a rewrite is incomplete until its JSON is back
    store.write(folder / f"{case_id}{store.ending}", case.data, patch_size or case.data.shape[1:])
    if case.seg is not None:
        store.write(folder / f"{case_id}_seg{store.ending}", case.seg, patch_size or case.seg.shape[1:])
        atomic_write(folder / f"{case_id}_locations.npz", lambda f: _save_named(f, case.class_locations))
    for other in (s for s in STORE_FORMATS.values() if s is not store):
        for name in (f"{case_id}{other.ending}", f"{case_id}_seg{other.ending}"):
            (folder / name).unlink(missing_ok=True)
    atomic_write_json(folder / f"{case_id}.json", {**case.properties, **extra_properties})


def load_case(folder: Path, case_id: str, mmap: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Image, labels (None for unlabelled cases) and properties; memory-mapped by default where the store is
    uncompressed (a compressed store's case is decompressed whole)."""
    properties = load_json(folder / f"{case_id}.json")
    store = format_of_case(folder, case_id)
    seg_path = folder / f"{case_id}_seg{store.ending}"

    def load(path: Path) -> np.ndarray:
        return np.load(path, mmap_mode="r") if mmap and isinstance(store, NpyStore) else store.read(path)

    return load(folder / f"{case_id}{store.ending}"), load(seg_path) if seg_path.is_file() else None, properties


def load_arrays(folder: Path, case_id: str) -> tuple[PatchSource, PatchSource]:
    """Image and labels of a training case opened for patch reads (memory-mapped, or chunks decompressed as a
    patch needs them), without its properties (the patch sampler's hot path)."""
    store = format_of_case(folder, case_id)
    return store.open(folder / f"{case_id}{store.ending}"), store.open(folder / f"{case_id}_seg{store.ending}")


def load_class_locations(folder: Path, case_id: str) -> dict[str, np.ndarray]:
    with np.load(folder / f"{case_id}_locations.npz") as f:
        return {k: f[k] for k in f.files}
