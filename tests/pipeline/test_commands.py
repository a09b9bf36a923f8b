"""The console commands: ``python -m nnlight <command>``, help naming the command as typed, a plan that does
not exist yet."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, Roots, run_entry, run_script

pytestmark = pytest.mark.cli


def _module(*args: str, roots: Roots) -> subprocess.CompletedProcess:
    return run_entry(["-m", "nnlight", *args], cwd=REPO, env=roots.env(), timeout=300)


def test_python_m_nnlight_without_a_known_command_lists_the_commands(roots: Roots) -> None:
    for args in ([], ["trian", "plan=x/y"]):
        result = _module(*args, roots=roots)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "{plan,train,predict,evaluate,benchmark}" in result.stderr
    assert "'trian' is not a command" in _module("trian", roots=roots).stderr


def test_help_names_the_command_as_it_was_typed(roots: Roots) -> None:
    via_module = _module("train", "--help", roots=roots)
    assert via_module.returncode == 0 and via_module.stdout.startswith("usage: nnlight-train plan=")
    via_script = run_script("train.py", "--help", roots=roots)
    assert via_script.returncode == 0 and via_script.stdout.startswith("usage: python train.py plan=")


def test_a_plan_before_anything_was_planned_is_named(roots: Roots) -> None:
    result = _module("train", "plan=Dataset900_Demo/3d_fullres", roots=roots)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "plan=Dataset900_Demo/3d_fullres: no such plan; planned so far: none (run nnlight-plan" in result.stderr
    assert not roots.results.exists()
