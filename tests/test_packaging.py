"""nnlight installed from its wheel works without the source tree: configs inside the package, console commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.conftest import REPO, TINY_BUDGET

pytestmark = pytest.mark.cli


def test_pyproject_lists_every_package_and_config_folder() -> None:
    """The package list is explicit (configs/ is mapped into the package): a new subpackage or config group folder
    must be added to it (setuptools warns for every file of a folder left out)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src").rglob("__init__.py")}
    groups = {".".join(("nnlight", "configs", *p.relative_to(REPO / "configs").parts))
              for p in (REPO / "configs").rglob("*") if p.is_dir() and p.name != "__pycache__"}
    assert listed == found | groups | {"nnlight.configs", "hydra_plugins"}  # + Hydra's namespace (no __init__.py)


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ or egg-info folders."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("src", "configs"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, capture_output=True,
                           text=True)
    assert "warning" not in (built.stdout + built.stderr).lower(), built.stderr[:2000]  # make wheel stays quiet
    return next((tmp_path / "dist").glob("nnlight-*.whl"))


def _fresh_environment(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed; its dependencies (torch, ...) are borrowed from this
    environment through a path entry rather than downloaded (this environment's editable nnlight is not seen:
    its .pth hook only runs in its own site-packages)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel)], check=True, capture_output=True)
    return venv / "bin"


def test_wheel_runs_the_demo_chain_from_an_empty_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    members = zipfile.ZipFile(wheel).namelist()
    assert {"nnlight/configs/train.yaml", "nnlight/configs/experiment/baseline.yaml",
            "hydra_plugins/nnlight_optuna/search.py",
            "nnlight/configs/hydra/sweeper/nnlight_optuna.yaml"} <= set(members)
    bin_dir = _fresh_environment(tmp_path, wheel)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNLIGHT_") and k != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    def command(*args: str) -> str:
        done = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    where = command(str(bin_dir / "python"), "-c",
                    "import nnlight.pipeline.config_dir as c; print(c.__file__, c.CONFIG_DIR)")
    assert str(REPO) not in where and str(tmp_path / "venv") in where  # the installed copy, not the checkout
    command("nnlight-demo-data", "raw=data/raw", "2d=true", "cases=5", "id=900", "name=Demo")
    command("nnlight-plan", "dataset=Dataset900_Demo", "num_workers=0")
    trained = command("nnlight-train", "plan=Dataset900_Demo/2d", *TINY_BUDGET)
    assert "Dice" in trained
    command("nnlight-evaluate", "dataset=Dataset900_Demo", "folds=0")
    raw = "data/raw/Dataset900_Demo"
    predicted = command("nnlight-predict", "model=best", "dataset=Dataset900_Demo", f"input={raw}/imagesTs",
                        "output=data/predictions", f"reference={raw}/labelsTs")
    assert "Dice" in predicted
    test_cases = list((work / raw / "imagesTs").glob("*_0000.png"))
    assert test_cases and len(list((work / "data/predictions").glob("*.png"))) == len(test_cases)
    assert {p.name for p in work.iterdir()} == {"data"}  # everything under the default roots, nothing else
