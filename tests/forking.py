"""Entry points run in a process of their own, as from a shell, without paying nnlight's imports every time.

A command that reaches its stage spends about 5 s importing torch, Lightning and nnlight's stages before it does
anything; the command-line tests run a few hundred of them. A *zygote* process imports all of that once, then
forks a child per command: the child sets the command's argv, environment (``PYTHONPATH`` included), working
folder and output files, runs the script (or, for ``["-m", "<module>", ...]``, the module) as ``__main__``, runs
the exit handlers and ends with the command's exit code — its own process, as a user's would be. Commands that
need a fresh interpreter (a ``preexec_fn``, warnings printed at import time) keep using :func:`subprocess.run`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRELOADED = ("nnlight.pipeline.commands", "nnlight.pipeline.train", "nnlight.pipeline.predict",
             "nnlight.pipeline.plan", "nnlight.pipeline.evaluate", "nnlight.pipeline.benchmark",
             "nnlight.exchange.model_cli")


def serve() -> None:
    """The zygote: import, then per request line (JSON) fork a child that runs it; answer its pid, then its exit
    code, one JSON line each."""
    for module in PRELOADED:
        importlib.import_module(module)
    if threading.active_count() != 1:  # forking beside a running thread could copy a held lock
        raise RuntimeError(f"the zygote has {threading.active_count()} threads after its imports; cannot fork")
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing the zygote prints mixes into its answers
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            answers.close()
            _child(request)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


def _child(request: dict[str, Any]) -> None:
    """Become the command: never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own process group: a timeout stops the command and what it started
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        module = argv[1] if argv[0] == "-m" else None
        sys.argv = [module, *argv[2:]] if module else list(argv)
        extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        first = os.getcwd() if module else str(Path(argv[0]).resolve().parent)
        sys.path[:1] = [first, *extra]  # as a fresh `python <script>` or `python -m <module>` sets it up
        code = _run_main(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True) if module else
                         runpy.run_path(argv[0], run_name="__main__"))
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a stream closed at exit: nothing left to say
                stream.flush()
        os._exit(code)


def _run_main(run: Callable[[], object]) -> int:
    """Run a script or module as ``__main__``; its exit code as the interpreter would give it."""
    try:
        run()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


class Zygote:
    """The test side: one zygote per test process, started on first use."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.buffer = b""

    def _start(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            repo = Path(__file__).resolve().parents[1]
            self.process = subprocess.Popen([sys.executable, "-c", "from tests.forking import serve; serve()"],
                                            cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.buffer = b""
            atexit.register(self.process.kill)
        return self.process

    def _answer(self, process: subprocess.Popen[bytes], deadline: float | None) -> dict[str, Any] | None:
        assert process.stdout is not None
        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(deadline - _now(), 0)
            ready, _, _ = select.select([process.stdout], [], [], wait)
            if not ready:
                return None
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("the test zygote ended unexpectedly")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess[str]:
        process = self._start()
        assert process.stdin is not None
        with tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            process.stdin.write((json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out),
                                             "stderr": str(err)}) + "\n").encode())
            process.stdin.flush()
            started = self._answer(process, None)
            assert started is not None
            ended = self._answer(process, _now() + timeout)
            if ended is None:
                os.killpg(started["pid"], signal.SIGKILL)
                self._answer(process, None)
                raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess([sys.executable, *argv], ended["returncode"], out.read_text(),
                                               err.read_text())


def _now() -> float:
    import time

    return time.monotonic()


ZYGOTE = Zygote()
