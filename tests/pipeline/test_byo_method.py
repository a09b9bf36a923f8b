"""A researcher's own method (tests/byo_method: a module on PYTHONPATH and a config folder) goes through the
whole pipeline with one YAML per part and no nnlight source change: a network, a loss, a transform inserted
into the augmentation and a metric train, evaluate, export a model file and predict."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.evaluation.selection import load_best
from nnlight.exchange.model_cli import main as model_cli
from nnlight.inference.predictor import Predictor
from tests.conftest import REPO, TINY_BUDGET, Roots, planned_demo, run_entry

pytestmark = pytest.mark.cli

BYO = REPO / "tests" / "byo_method"


def _run(script: str, *overrides: str, roots: Roots, config_dir: bool = False) -> subprocess.CompletedProcess:
    """An entry point with the lab's module on PYTHONPATH (and its config folder added, Hydra's --config-dir)."""
    env = {**roots.env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(BYO), os.environ.get("PYTHONPATH")]))}
    flags = ["--config-dir", str(BYO / "configs")] if config_dir else []
    return run_entry([str(REPO / script), *flags, *overrides], cwd=REPO, env=env)


def test_a_method_from_outside_the_package_trains_evaluates_exports_and_predicts(
        planned_demo_template: Roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    roots = planned_demo(planned_demo_template, tmp_path)
    choices = ("network=tiny_skip", "loss=focal", "augmentation=cutout", "metrics=volume")
    command = ("plan=Dataset900_Demo/2d", *choices, *TINY_BUDGET)
    # two folds: an ensemble; checkpoints=all keeps last.ckpt (a link to final.ckpt) for the resume below
    trained = _run("train.py", "-m", *command, "data.fold=0,1", "checkpoints=all", roots=roots, config_dir=True)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "network: TinySkipNet gives one output: trained without deep supervision" in trained.stdout
    assert 'input=<images> output=<folder> "trusted_networks=[my_lab.nets]"' in trained.stdout  # its next step
    (model,) = (roots.results / "Dataset900_Demo" / "2d").glob("tiny_skip+*")  # the network option names the run
    assert "+augmentation-cutout+" in model.name and "+loss-focal+" in model.name  # and says how it was made
    assert "metrics" not in model.name  # a metric evaluates a run: no part of what was trained

    # an interrupted fold resumes from its last checkpoint with the user's network and loss (the policy is no
    # part of the run's identity: the same folder)
    interrupted = model / "fold_1"
    for name in ("checkpoints/final.ckpt", "run_stats.json"):
        (interrupted / name).unlink()
    resumed = _run("train.py", *command, "data.fold=1", roots=roots, config_dir=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout and (interrupted / "checkpoints" / "final.ckpt").is_file()
    run = model / "fold_0"
    recorded = json.loads((run / "inference.json").read_text())["network"]
    assert recorded["target"] == "my_lab.nets.TinySkipNet" and recorded["deep_supervision_outputs"] == 1
    saved = (run / ".hydra" / "config.yaml").read_text()
    for target in ("my_lab.nets.TinySkipNet", "my_lab.losses.FocalLoss", "my_lab.transforms.CutOut",
                   "my_lab.metrics.VolumeError"):
        assert f"_target_: {target}" in saved
    validation = json.loads((run / "validation" / "summary.json").read_text())
    assert "volume_error" in validation["foreground_mean"]
    logged = next(run.rglob("metrics.csv")).read_text().splitlines()[0]
    assert "validation/volume_error" in logged
    # a metric asked for after the run was validated (an evaluation setting): scored on the saved validation
    # predictions, nothing retrained
    for entry in ("metric_per_case", "mean", "foreground_mean"):
        validation.pop(entry)
    (run / "validation" / "summary.json").write_text(json.dumps({**validation, "foreground_mean": {"Dice": 0.0}}))
    again = _run("train.py", *command, "data.fold=0", roots=roots, config_dir=True)
    assert again.returncode == 0 and "Already trained" in again.stdout, again.stderr[-2000:]
    assert "validation predictions scored again for volume_error" in again.stdout
    assert "volume_error" in json.loads((run / "validation" / "summary.json").read_text())["foreground_mean"]
    assert "volume_error" in json.loads((run / "run_stats.json").read_text())["summary"]["validation_metrics"]

    evaluated = _run("evaluate.py", "dataset=Dataset900_Demo", "folds=0", "metrics=volume", roots=roots,
                     config_dir=True)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    table = load_best(roots.results / "Dataset900_Demo").source.with_name("cv_results.md").read_text()
    assert "tiny_skip" in table and "volume_error |" in table
    assert 'model=best dataset=Dataset900_Demo input=<images> output=<folder> "trusted_networks=[my_lab.nets]"' in \
        evaluated.stdout

    # a run naming a class nnlight does not list is imported only when trusted
    images = roots.raw / "Dataset900_Demo" / "imagesTs"
    untrusted = _run("predict.py", f"model='{model}'", f"input={images}", f"output={tmp_path / 'untrusted'}",
                     roots=roots)
    assert untrusted.returncode == 2 and "Traceback" not in untrusted.stderr
    assert "my_lab.nets.TinySkipNet, not one of the networks nnlight builds from a file by itself" in untrusted.stderr
    assert "trusted_networks=[my_lab.nets]" in untrusted.stderr
    monkeypatch.syspath_prepend(str(BYO))
    direct = Predictor.from_model_folder(model, trusted_networks=["my_lab"], mirroring=False)
    assert len(direct.networks) == 2  # the fold ensemble the model file must reproduce

    # the model file's printed next command trusts the lab's module; without it, the error names the file
    relative = str(model.relative_to(roots.results / "Dataset900_Demo"))
    model_cli(["export", "dataset=Dataset900_Demo", f"model={relative}", f"output={tmp_path / 'mine.zip'}",
               f"results={roots.results}"])
    assert '"trusted_networks=[my_lab.nets]"' in capsys.readouterr().out
    from_file = _run("predict.py", f"model={tmp_path / 'mine.zip'}", f"input={images}",
                     f"output={tmp_path / 'untrusted_zip'}", roots=roots)
    assert from_file.returncode == 2 and f"{tmp_path / 'mine.zip'}: " in from_file.stderr
    assert "nnlight-model-" not in from_file.stderr and ".nnlight-unpack" not in from_file.stderr
    assert "trusted_networks=[my_lab.nets]" in from_file.stderr

    # the lab's network leaves as ONNX when trusted (and is refused, naming the setting, when not)
    with pytest.raises(SystemExit):
        model_cli(["export", "format=onnx", "dataset=Dataset900_Demo", f"model={relative}",
                   f"output={tmp_path / 'refused_onnx'}", f"results={roots.results}"])
    assert "trusted_networks=[my_lab.nets]" in capsys.readouterr().err
    model_cli(["export", "format=onnx", "dataset=Dataset900_Demo", f"model={relative}",
               f"output={tmp_path / 'onnx'}", f"results={roots.results}", "trusted_networks=[my_lab]"])
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["dataset.json", "fold_0.onnx", "fold_1.onnx",
                                                                    "spec.json"]
    onnx_predicted = _run("predict.py", f"model={tmp_path / 'onnx'}", f"input={images}",
                          f"output={tmp_path / 'onnx_out'}", "mirroring=false", "postprocessing=false", roots=roots)
    assert onnx_predicted.returncode == 0, onnx_predicted.stderr[-3000:]

    predicted = _run("predict.py", f"model={tmp_path / 'mine.zip'}", f"input={images}", f"output={tmp_path / 'out'}",
                     "mirroring=false", "postprocessing=false", "trusted_networks=[my_lab]", roots=roots)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    case = sorted(images.glob("*_0000.nii.gz"))[0]
    expected = direct.predict(*_read(images, case.name.removesuffix("_0000.nii.gz"))).segmentation
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / case.name.replace("_0000", ""))))
    assert np.array_equal(written, expected)


def _read(folder: Path, case: str) -> tuple[np.ndarray, tuple[float, ...]]:
    from nnlight.raw.io import image_format, read_images

    files = sorted(folder.glob(f"{case}_*.nii.gz"))
    images, geometry = read_images(files, image_format(".nii.gz"))
    return images, geometry


def test_a_misspelt_option_from_the_users_config_folder_is_named_with_theirs(planned_demo_template: Roots,
                                                                            tmp_path: Path) -> None:
    roots = planned_demo(planned_demo_template, tmp_path)
    result = _run("train.py", "plan=Dataset900_Demo/2d", "network=tiny_skp", roots=roots, config_dir=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "network=tiny_skp: no such option; choose one of custom, default" in result.stderr
    assert "tiny_skip" in result.stderr and not roots.results.exists()
    missing = run_entry([str(REPO / "train.py"), "--config-dir", str(tmp_path / "absent"), "plan=Dataset900_Demo/2d"],
                        cwd=REPO, env=roots.env())
    assert missing.returncode == 2 and f"--config-dir {tmp_path / 'absent'}: no such folder" in missing.stderr
