"""One process at a time: an OS lock (``flock``) on a file, which the operating system releases when its process
ends however it ends, so a killed process never blocks the next one. Who holds it (pid, host, since) is written
into the lock file, so a refusal can say."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; nothing is locked there
    fcntl = None  # type: ignore[assignment]  # the module or None, as the platform has it

from nnlight.utils.errors import UserError


@contextmanager
def _locked(path: Path, wait: bool, refusal: Callable[[dict[str, Any]], str] | None = None) -> Iterator[int | None]:
    """``path``'s OS lock for the duration (the file descriptor; None where the platform has no flock): waiting
    for it, or raising ``UserError(refusal(holder))`` at once when another process holds it."""
    if fcntl is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(refusal(_holder(fd)) if refusal else f"{path} is locked") from None
        yield fd
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def process_lock(path: Path, refusal: Callable[[dict[str, Any]], str]) -> Iterator[None]:
    """Hold ``path``'s lock for the duration; if another process holds it, raise ``UserError(refusal(holder))``
    at once (``holder``: its pid, host and since, as far as known)."""
    with _locked(path, wait=False, refusal=refusal) as fd:
        if fd is not None:
            os.ftruncate(fd, 0)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now}).encode(), 0)
        yield


def _holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}


def held_by(holder: dict[str, Any]) -> str:
    """``process <pid> on host <host> since <time>``."""
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"


@contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock for a short read-modify-write that several processes make to one file (each waits
    its turn; the operating system releases it if a holder dies)."""
    with _locked(path, wait=True):
        yield
