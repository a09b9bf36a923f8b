"""Shared fixtures: synthetic raw datasets, isolated output roots, and a runner for the real entry points."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnlight.raw.synthetic import make_synthetic_dataset
from tests.forking import ZYGOTE

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "cli")  # in-process without training | in-process pipelines | the entry points


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to one tier: ``cli`` or ``integration`` as its module or itself says, else ``unit``
    (``make test-unit`` runs that one in seconds)."""
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid}: marked {' and '.join(tiers)}; a test has one tier")
        if not tiers:
            item.add_marker(pytest.mark.unit)
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


# A real (not debug) run small enough for tests: debug runs never take part in model selection.
TINY_BUDGET = ("trainer.max_epochs=2", "data.iterations_per_epoch=2", "data.val_iterations_per_epoch=1",
               "data.num_workers=0")
TINY_NAME = "data.iterations_per_epoch-2+data.val_iterations_per_epoch-1+trainer.max_epochs-2"  # in the run name


@dataclass(frozen=True)
class Roots:
    raw: Path
    preprocessed: Path
    results: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "NNLIGHT_RAW": str(self.raw), "NNLIGHT_PREPROCESSED": str(self.preprocessed),
                "NNLIGHT_RESULTS": str(self.results)}

    def files_under_outputs(self) -> list[Path]:
        return [p for root in (self.preprocessed, self.results) if root.exists() for p in root.rglob("*")]


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    r = Roots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    r.raw.mkdir()
    return r


@pytest.fixture(scope="session")
def demo_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 3D, 2-channel, anisotropic synthetic dataset (read-only for tests: copy before changing)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("raw3d"), 900, "Demo", num_cases=5, shape=(16, 32, 28))


@pytest.fixture(scope="session")
def demo_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("raw2d"), 901, "Demo2D", num_cases=4, shape=(40, 48),
                                  num_channels=1)


@pytest.fixture(scope="session")
def preprocessed(demo_3d: Path, tmp_path_factory: pytest.TempPathFactory):
    """The 3D demo planned (default preset) and preprocessed: ``(<preprocessed>/<Dataset>, plans)``."""
    from nnlight.fingerprint import compute_fingerprint
    from nnlight.planning import PlannerSettings, plan_experiment, plans_to_nnunet
    from nnlight.planning.plan_configs import write_plan_configs
    from nnlight.preprocessing.preprocess import preprocess_dataset
    from nnlight.raw.dataset import require_raw_dataset
    from nnlight.utils.files import atomic_write_json

    dataset = require_raw_dataset(demo_3d)
    plans = plan_experiment(compute_fingerprint(dataset, 0, sample_budget=1e5), dataset.dataset_json,
                            PlannerSettings(), dataset.name)
    root = tmp_path_factory.mktemp("preprocessed")
    preprocess_dataset(dataset, plans, root, num_workers=0)
    atomic_write_json(root / dataset.name / "nnUNetPlans.json", plans_to_nnunet(plans))
    atomic_write_json(root / dataset.name / "dataset.json", dataset.dataset_json.raw)  # as plan.py copies it
    write_plan_configs(plans, dataset.dataset_json, root / "configs", "", "test fixture")  # plan=Dataset900_Demo/...
    return root / dataset.name, plans


@pytest.fixture(scope="session")
def planned_demo_template(demo_3d: Path, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    """The 3D demo planned + preprocessed by plan.py once per session (read-only: planned_demo copies it)."""
    base = tmp_path_factory.mktemp("planned_template")
    roots = Roots(base / "raw", base / "preprocessed", base / "results")
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    result = run_script("plan.py", "dataset=Dataset900_Demo", "num_workers=0", roots=roots)  # faster for 5 cases
    assert result.returncode == 0, result.stderr
    return roots


@pytest.fixture
def planned(planned_demo_template: Roots, monkeypatch: pytest.MonkeyPatch) -> Roots:
    """The planned demo's configs on Hydra's search path, for composing train configs in-process (read only:
    nothing trains)."""
    for key, value in planned_demo_template.env().items():
        if key.startswith("NNLIGHT_"):
            monkeypatch.setenv(key, value)
    return planned_demo_template


def planned_demo(template: Roots, base: Path) -> Roots:
    """Isolated roots under ``base`` holding a copy of the planned 3D demo (what plan.py wrote holds no paths)."""
    roots = Roots(base / "raw", base / "preprocessed", base / "results")
    shutil.copytree(template.raw, roots.raw, dirs_exist_ok=True)
    shutil.copytree(template.preprocessed, roots.preprocessed)
    return roots


def run_script(script: str, *overrides: str, roots: Roots,
               preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run a top-level entry point (plan.py, ...) as a user would, with isolated output roots."""
    if preexec_fn is not None:
        return subprocess.run([sys.executable, str(REPO / script), *overrides], cwd=REPO, env=roots.env(),
                              capture_output=True, text=True, timeout=600, preexec_fn=preexec_fn)
    return run_entry([str(REPO / script), *overrides], cwd=REPO, env=roots.env())


def run_entry(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """``python <argv>`` in a process of its own (forked from a process that imported nnlight once:
    :mod:`tests.forking`), with its output captured as text."""
    return ZYGOTE.run(argv, cwd, dict(os.environ) if env is None else env, timeout)


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Callable[[str], None] | None]:
    """A full disk for tests: a tmpfs of ``size`` (e.g. ``64k``) mounted at ``path``, yielding a function that
    resizes it; None where no tmpfs can be mounted (not root, not Linux): the test then limits file sizes with
    :func:`file_size_limit` instead, so a write still fails partway."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = sys.platform == "linux" and os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0

    def resize(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(path)], check=True)

    try:
        yield resize if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def file_size_limit(nbytes: int) -> Callable[[], None]:
    """For a child process: every write past ``nbytes`` in one file fails (EFBIG), as on a full disk."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"{path} is not available (the shared real datasets exist only on the team's machines and CI)")
    return path


ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_USER = ("nnlight", "orthanc-test-password")


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc PACS on 127.0.0.1 with its DICOMweb plugin (user and password: ``ORTHANC_USER``)."""

    url: str

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A real PACS for the DICOMweb tests: started here, with its storage in ``tmp_path``, and stopped after."""
    import json
    import socket
    import time

    if shutil.which("Orthanc") is None or not ORTHANC_DICOMWEB_PLUGIN.is_file():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb; "
                    ".ci/run installs them where apt-get works)")
    pytest.importorskip("dicomweb_client", reason='dicomweb-client is not installed (pip install "nnlight[dicom]")')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "orthanc"
    (folder / "db").mkdir(parents=True)
    config = {"Name": "nnlight-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {ORTHANC_USER[0]: ORTHANC_USER[1]},
              "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (folder / "config.json").write_text(json.dumps(config))
    with (folder / "log.txt").open("w") as log:
        server = subprocess.Popen(["Orthanc", str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if server.poll() is not None:
                raise RuntimeError(f"Orthanc did not start: {(folder / 'log.txt').read_text()[-2000:]}")
            time.sleep(0.1)
        yield Orthanc(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
