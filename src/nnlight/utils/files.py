"""Atomic file writes and JSON helpers.

Every artifact is written to a temporary file in the destination folder and renamed into place, so
an interrupted run never leaves a half-written file that a later stage would read.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from nnlight.utils.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteFailed(UserError):
    """A file that could not be written completely (a full disk, a quota, no permission): it names the file."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def write_failed(path: Path, error: BaseException | None = None) -> WriteFailed:
    """The one-line error for a write that did not complete: "no space left" when the disk (or a quota) is full —
    numpy reports a short write as ``OSError: N requested and M written``, SimpleITK not at all."""
    free = free_bytes(path.parent)
    short = error is not None and "requested and" in str(error)
    if (isinstance(error, OSError) and error.errno in _DISK_FULL) or short or (free is not None and free < 1 << 20):
        where = f" ({_megabytes(free)} free)" if free is not None else ""
        return WriteFailed(f"{path}: could not be written: no space left on the device{where}. Free some space (or "
                           "choose another folder) and run the same command again; nothing half-written was kept")
    reason = f"{error.strerror or error}" if isinstance(error, OSError) else str(error or "incomplete")
    return WriteFailed(f"{path}: could not be written ({reason}); nothing half-written was kept")


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the file system of ``folder`` (its nearest existing parent), or None if unknown."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size // 1024} KiB"


def writable_folder_problem(folder: Path) -> str | None:
    """Why nnlight cannot write into ``folder`` (or create it), or None. Tried, not guessed from permission bits
    (root passes every permission check, yet cannot write into /proc or a read-only mount)."""
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".nnlight-probe-"))
    except OSError as e:
        return f"{existing} cannot be written ({e.strerror or e})"
    return None


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse before starting when ``folder``'s file system cannot hold ``needed`` bytes."""
    free = free_bytes(folder)
    if free is not None and needed > free:
        raise WriteFailed(f"{folder}: {what} needs {_megabytes(needed)} but only {_megabytes(free)} is free: no space "
                          "left on the device. Free some space or choose another folder")


class _RecordingWriter(io.BufferedWriter):
    """A file that remembers the error of a failed write: torch.save turns ENOSPC into a RuntimeError ("unexpected
    pos"), so the original error would be lost. Still a BufferedWriter, so numpy writes through its descriptor."""

    error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            self.error = e
            raise


@dataclass
class _Temp:
    """The temporary file of a write in progress (and its writer, when nnlight opened it)."""

    path: str | Path | None = None
    writer: _RecordingWriter | None = None


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[_Temp]:
    """Around a write to a temp file that is then renamed to ``target``: any failure removes the temp file, and an
    OS error (or one a writer hid behind its own) becomes ``WriteFailed`` naming ``target``."""
    temp = _Temp()
    try:
        yield temp
    except OSError as e:
        _remove(temp.path)
        raise write_failed(target, e) from None
    except BaseException:
        _remove(temp.path)
        if temp.writer is not None and temp.writer.error is not None:
            raise write_failed(target, temp.writer.error) from None
        raise


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file)`` on a temp file in the destination folder, flush, fsync, check that every byte reached
    the file, and only then rename it to ``path``. A failure (a full disk) leaves no temp file and raises
    ``WriteFailed`` naming ``path``."""
    path = Path(path)
    with _replacing(path) as temp:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp.path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with _RecordingWriter(io.FileIO(fd, "wb")) as temp.writer:
            write(temp.writer)
            temp.writer.flush()
            os.fsync(temp.writer.fileno())
            if os.fstat(temp.writer.fileno()).st_size != temp.writer.tell():
                raise write_failed(path)
        os.replace(temp.path, path)


def _remove(tmp: str | Path | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)


def atomic_write_named(path: str | Path, write: Callable[[Path], object],
                       verify: Callable[[Path], None] | None = None) -> None:
    """For writers that need a file name with the right ending (SimpleITK, zipfile): ``write(tmp)`` to a name unique
    to this process and call (so concurrent writers of one file never share it), ``verify(tmp)`` (writers that do
    not report a failed write: it raises if the file is incomplete), fsync, then rename to ``path``."""
    path = Path(path)
    with _replacing(path) as temp:
        unique = f"{os.getpid()}.{secrets.token_hex(4)}"
        temp.path = tmp = path.with_name(f".{path.name}.{unique}.tmp{''.join(path.suffixes)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        if verify is not None:
            try:
                verify(tmp)
            except UserError as e:
                raise write_failed(path, e) from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(source: Path, target: Path) -> None:
    """``source``'s bytes to ``target``, written atomically (a copy that is whole or absent)."""
    atomic_write_bytes(target, source.read_bytes())


def write_if_changed(path: str | Path, data: bytes) -> bool:
    """Atomically replace ``path`` only when its content would change (a rerun leaves files untouched)."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples (recursively) into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


MAX_JSON_BYTES = 256 << 20  # far above any plan, fingerprint or dataset.json (a 10,000-case list is ~2 MB)
MAX_JSON_DEPTH = 64  # nnU-Net's files nest 6 levels deep; recursion in every later reader stays bounded


class JsonFileError(UserError, ValueError):
    """A JSON file that cannot be read (syntax, size, nesting): a user mistake that names the file."""


def nested_deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists and objects more than ``limit`` levels deep (iteratively, stopping at the first
    too-deep one: a hostile file cannot exhaust the stack here)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack += [(v, depth + 1) for v in (node.values() if isinstance(node, dict) else node)]
    return False


def load_json(path: str | Path) -> Any:
    """A JSON file, refused (``JsonFileError``, naming it) when malformed, larger than ``MAX_JSON_BYTES`` or nested
    deeper than ``MAX_JSON_DEPTH``: files shared between people are read without trusting them."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise JsonFileError(f"{path}: {size / 2**20:.0f} MiB, more than the {MAX_JSON_BYTES >> 20} MiB a JSON file "
                            "nnlight reads may have")
    try:
        data = json.loads(path.read_bytes())
    except RecursionError:
        raise JsonFileError(f"{path}: nested too deeply to be one of nnlight's or nnU-Net's files") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise JsonFileError(f"{path}: is not valid JSON ({e}); fix the syntax") from None
    if nested_deeper_than(data, MAX_JSON_DEPTH):
        raise JsonFileError(f"{path}: nested more than {MAX_JSON_DEPTH} levels deep; not one of nnlight's or "
                            "nnU-Net's files")
    return data
