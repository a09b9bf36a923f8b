"""Random patch reads per second from the case store, against the alternatives it was chosen over.

    python benchmarks/patch_reads.py <preprocessed>/<Dataset>/<data_identifier> --patch 128 128 128

Formats compared on the same cases: uncompressed .npy opened memory-mapped (the store), the same .npy
loaded whole, nnU-Net v2.0-2.2's ``np.savez_compressed`` (.npz, decompressed whole per read) and, when the
``blosc2`` package is importable (``pip install "nnlight[compressed]"``), the compressed store
(``preprocess.store=blosc2``: nnlight's :class:`~nnlight.preprocessing.store.Blosc2Store`, LZ4HC level 5 in
patch-sized chunks as nnU-Net 2.8 writes them), read as the patch sampler reads it. The page cache is warm (files
read once before timing), as during training after the first epoch.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:
    import blosc2
except ImportError:  # the compressed store's extra
    blosc2 = None

from nnlight.preprocessing.store import STORE_FORMATS, completed_cases, load_case


def _random_slices(shape: tuple[int, ...], patch: list[int], rng: np.random.Generator) -> tuple[slice, ...]:
    starts = [int(rng.integers(0, max(s - p, 0) + 1)) for s, p in zip(shape, patch, strict=True)]
    return (slice(None), *(slice(a, a + p) for a, p in zip(starts, patch, strict=True)))


def _rate(read: Callable[[str, np.random.Generator], np.ndarray], cases: list[str], seconds: float) -> float:
    rng = np.random.default_rng(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        read(cases[n % len(cases)], rng).sum()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--patch", type=int, nargs="+", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    folder = Path(args.store)
    cases = completed_cases(folder)
    shapes = {c: load_case(folder, c)[0].shape for c in cases}
    npy_mib = sum((folder / f"{c}.npy").stat().st_size for c in cases) / 2**20
    print(f"{datetime.date.today()} | {os.cpu_count()} CPUs | {folder} | {len(cases)} cases | patch {args.patch}")

    def memmap(case: str, rng: np.random.Generator) -> np.ndarray:
        data = np.load(folder / f"{case}.npy", mmap_mode="r")
        return np.asarray(data[_random_slices(data.shape[1:], args.patch, rng)])

    def whole_npy(case: str, rng: np.random.Generator) -> np.ndarray:
        data = np.load(folder / f"{case}.npy")
        return data[_random_slices(data.shape[1:], args.patch, rng)]

    with tempfile.TemporaryDirectory() as tmp:
        for c in cases:
            np.savez_compressed(Path(tmp) / f"{c}.npz", data=np.load(folder / f"{c}.npy"))
        npz_mib = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20

        def whole_npz(case: str, rng: np.random.Generator) -> np.ndarray:
            with np.load(Path(tmp) / f"{case}.npz") as f:
                data = f["data"]
            return data[_random_slices(shapes[case][1:], args.patch, rng)]

        candidates = [("npy memory-mapped (store)", memmap, npy_mib), ("npy loaded whole", whole_npy, npy_mib),
                      ("npz compressed", whole_npz, npz_mib)]
        if blosc2 is not None:
            compressed = STORE_FORMATS["blosc2"]
            for c in cases:
                compressed.write(Path(tmp) / f"{c}.b2nd", np.load(folder / f"{c}.npy"), args.patch)
            b2_mib = sum(p.stat().st_size for p in Path(tmp).glob("*.b2nd")) / 2**20

            def blosc2_chunks(case: str, rng: np.random.Generator) -> np.ndarray:
                data = compressed.open(Path(tmp) / f"{case}.b2nd")
                return data[_random_slices(shapes[case][1:], args.patch, rng)]

            candidates.append((f"blosc2 {blosc2.__version__} store (compressed)", blosc2_chunks, b2_mib))
        for name, read, mib in candidates:
            read(cases[0], np.random.default_rng(1))  # warm the cache
            print(f"{name:28s} {_rate(read, cases, args.seconds):8.1f} patches/s   disk {mib:7.1f} MiB")


if __name__ == "__main__":
    main()
