"""train.py end to end on the synthetic demo: fast_dev_run, run identity, multirun over folds, resume after kill."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
import SimpleITK as sitk
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnlight.training.images import TAG
from nnlight.utils.overlays import GAP, LEGEND_BAND, TITLE_BAND, panel_scale
from tests.conftest import (
    REPO,
    TINY_BUDGET,
    TINY_NAME,
    Roots,
    file_size_limit,
    planned_demo,
    run_entry,
    run_script,
    small_disk,
)

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def planned_roots(planned_demo_template: Roots, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return planned_demo(planned_demo_template, tmp_path_factory.mktemp("train"))


def _runs(roots: Roots, configuration: str) -> list[str]:
    folder = roots.results / "Dataset900_Demo" / configuration
    return sorted(str(p.relative_to(folder)) for p in folder.glob("*/fold_*"))


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_fast_dev_run(planned_roots: Roots, configuration: str) -> None:
    result = run_script("train.py", f"plan=Dataset900_Demo/{configuration}", "debug=fast_dev_run",
                        roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "baseline+debug-fast_dev_run/fold_0" in "\n".join(_runs(planned_roots, configuration))
    run = planned_roots.results / "Dataset900_Demo" / configuration / "baseline+debug-fast_dev_run" / "fold_0"
    summary = json.loads((run / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 1  # the validation code path runs, on one case
    # piped output reads like a log: no redrawn frames or escape codes, the accelerator banner only in train.log,
    # a first line saying what trains, a line per epoch
    printed = result.stdout + result.stderr
    assert "\r" not in printed and "\x1b" not in printed and "v_num" not in printed
    assert "GPU available" not in printed and "GPU available" in (run / "train.log").read_text()
    assert f"Training Dataset900_Demo/{configuration} fold 0: network PlanUNet (" in result.stdout
    assert ", loss dice_ce, optimizer sgd_nesterov, augmentation default, patch " in result.stdout
    assert "epoch 1/1 done in " in result.stdout and "train/loss" in result.stdout


@pytest.mark.slow  # 7 s: debug=limit also runs in test_an_ignore_label_dataset_trains_... (default suite time)
def test_debug_limit_validates_one_case_without_mirroring(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/3d_fullres", "debug=limit", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    run = planned_roots.results / "Dataset900_Demo" / "3d_fullres" / "baseline+debug-limit" / "fold_0"
    assert len(json.loads((run / "validation" / "summary.json").read_text())["metric_per_case"]) == 1
    validation = json.loads((run / "run_config.json").read_text())["config"]["validation"]
    assert validation["mirroring"] is False and validation["max_cases"] == 1 and validation["step_size"] == 1.0
    log = (run / "train.log").read_text()  # what the run printed, kept: Lightning's lines and the summary
    assert "Trainer.fit" in log and "Training done (2 epochs)" in log and "validation Dice:" in log
    printed = result.stdout + result.stderr  # Lightning's lines once (not also through its own handler), no advert
    assert printed.count("Seed set to") == 1 and "litlogger" not in printed
    # the validated case's picture: rows of (every image channel | label | prediction) slices of the raw image's
    # size, enlarged
    pngs = list((run / "validation_overlays").glob("*.png"))
    validated = json.loads((run / "validation" / "summary.json").read_text())["metric_per_case"]
    assert [p.stem for p in pngs] == [c["case"] for c in validated]
    height, width = matplotlib.image.imread(pngs[0]).shape[:2]
    image = sitk.ReadImage(planned_roots.raw / "Dataset900_Demo" / "imagesTr" / f"{pngs[0].stem}_0000.nii.gz")
    x, y, _ = image.GetSize()
    scale = panel_scale((y, x))
    panels = len(list((planned_roots.raw / "Dataset900_Demo" / "imagesTr").glob(f"{pngs[0].stem}_*.nii.gz"))) + 2
    assert width == panels * x * scale + (panels - 1) * GAP
    rows = (height - TITLE_BAND - LEGEND_BAND + GAP) / (y * scale + GAP)  # under the title and the legend
    assert rows in (1, 2, 3)
    assert printed.count("Seed set to") == 1 and "litlogger" not in printed


def test_overrides_name_the_run_and_multirun_makes_one_folder_per_fold(planned_roots: Roots) -> None:
    common = ["plan=Dataset900_Demo/2d", "debug=limit", "trainer.max_epochs=1", "data.iterations_per_epoch=1"]
    assert run_script("train.py", *common, "loss=dice", roots=planned_roots).returncode == 0
    result = run_script("train.py", "-m", *common, "data.fold=0,1", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(planned_roots, "2d")
    name = "baseline+data.iterations_per_epoch-1+debug-limit+trainer.max_epochs-1"
    assert f"{name}/fold_0" in runs and f"{name}/fold_1" in runs
    assert "baseline+data.iterations_per_epoch-1+debug-limit+loss-dice+trainer.max_epochs-1/fold_0" in runs
    run = planned_roots.results / "Dataset900_Demo" / "2d" / name / "fold_1"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["final.ckpt"]  # checkpoints=final, the default
    sweep = next((planned_roots.results / "sweeps").glob("20*"))  # the sweep's own table: a row per job
    table = list(csv.DictReader((sweep / "sweep_results.csv").open()))
    assert [(r["data.fold"], r["state"]) for r in table] == [("0", "finished"), ("1", "finished")]
    assert all(0 <= float(r["validation_dice"]) <= 1 and r["run_folder"].endswith(f"fold_{r['data.fold']}")
               for r in table)
    assert "Every job: plan=Dataset900_Demo/2d debug=limit" in (sweep / "sweep_results.md").read_text()
    for artifact in ("checkpoints/final.ckpt", "provenance.json", "plan.json",
                     "dataset.json", "fingerprint.json", "nnUNetPlans.json", ".hydra/config.yaml", "logs/metrics.csv",
                     "progress.png", "validation/summary.json"):
        assert (run / artifact).is_file(), artifact
    summary = json.loads((run / "validation" / "summary.json").read_text())
    val_cases = [c["case"] for c in summary["metric_per_case"]]
    assert len(val_cases) >= 1 and set(summary["mean"]) == {"1", "2"} and "Dice" in summary["foreground_mean"]
    for case in val_cases:  # predictions are on the raw label's exact grid
        predicted = sitk.ReadImage(str(run / "validation" / f"{case}.nii.gz"))
        reference = sitk.ReadImage(str(planned_roots.raw / "Dataset900_Demo" / "labelsTr" / f"{case}.nii.gz"))
        assert predicted.GetSize() == reference.GetSize() and predicted.GetOrigin() == reference.GetOrigin()
        assert predicted.GetSpacing() == reference.GetSpacing()


def test_resume_after_sigkill_continues_from_the_last_epoch(planned_roots: Roots) -> None:
    args = ["plan=Dataset900_Demo/2d", "debug=limit", "trainer.max_epochs=4", "data.iterations_per_epoch=3"]
    run = planned_roots.results / "Dataset900_Demo" / "2d" / \
        "baseline+data.iterations_per_epoch-3+debug-limit+trainer.max_epochs-4" / "fold_0"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=planned_roots.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not last.is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert last.is_file(), "the run never wrote last.ckpt"
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert not (run / "checkpoints" / "final.ckpt").exists() or killed_at == 3
    assert json.loads((run / ".lock").read_text())["pid"] == process.pid  # its lock, released by the kill

    result = run_script("train.py", *args, roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout
    final = torch.load(run / "checkpoints" / "final.ckpt", weights_only=True)
    assert final["epoch"] == 4 and final["global_step"] == 4 * 3  # no epoch trained twice or skipped
    progress = next(v for k, v in final["callbacks"].items() if "ProgressPlot" in k)["history"]
    assert len(progress["train_loss"]) == 4  # the curve continues across the kill
    assert progress["lr"] == pytest.approx([0.01 * (1 - e / 4) ** 0.9 for e in range(4)])
    lr = final["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.01 * (1 - 4 / 4) ** 0.9)  # poly followed the configured 4 epochs
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    assert {int(r["epoch"]) for r in rows if r["train/loss"]} == {0, 1, 2, 3}  # the log continues, too


def test_a_second_training_of_the_same_run_is_refused_while_the_first_runs(planned_roots: Roots) -> None:
    """A sweep launched twice, or two SLURM jobs on one fold: the second process names the first and writes
    nothing into its folder (its log included)."""
    args = ["plan=Dataset900_Demo/2d", "trainer.max_epochs=1000", "data.iterations_per_epoch=2",
            "data.val_iterations_per_epoch=1", "data.num_workers=0"]
    run = planned_roots.results / "Dataset900_Demo" / "2d" / \
        "baseline+data.iterations_per_epoch-2+data.val_iterations_per_epoch-1" / "fold_0"
    first = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=planned_roots.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not (run / "logs" / "metrics.csv").is_file():
            time.sleep(0.2)
        assert first.poll() is None, "the first training ended early"
        second = run_script("train.py", *args, roots=planned_roots)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"{run} is being trained by process {first.pid} on host " in second.stderr
        assert "being trained" not in (run / "train.log").read_text()  # the first run's log stays its own
        assert not (run / "failure.json").exists()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_a_training_whose_loss_turns_nan_stops_and_never_counts_as_finished(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/2d", *TINY_BUDGET, "optimizer.lr=1e12",
                        "nonfinite_loss_patience=1", roots=planned_roots)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the training loss was NaN or Inf for 1 steps in a row" in result.stderr and "Lower optimizer.lr" in \
        result.stderr
    name = TINY_NAME.replace("+trainer.", "+optimizer.lr-1000000000000.0+trainer.")  # the differences, sorted
    run = planned_roots.results / "Dataset900_Demo" / "2d" / f"baseline+{name}" / "fold_0"
    assert "TrainingDiverged" in json.loads((run / "failure.json").read_text())["error"]
    assert not (run / "run_stats.json").exists() and not (run / "checkpoints" / "final.ckpt").exists()


def test_missing_plan_is_a_clear_error(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/3d_lowres", "debug=fast_dev_run", roots=planned_roots)
    assert result.returncode != 0 and "3d_lowres" in result.stderr and "Traceback" not in result.stderr


def test_ddp_sim_two_processes_produce_one_set_of_outputs(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=limit", "trainer=ddp_sim", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Training done") == 1  # only rank 0 reports
    run = planned_roots.results / "Dataset900_Demo" / "2d" / "baseline+debug-limit+trainer-ddp_sim" / "fold_0"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["final.ckpt"]
    final = torch.load(run / "checkpoints" / "final.ckpt", weights_only=True)
    assert final["epoch"] == 2 and final["global_step"] == 2 * 2  # each rank ran the 2 iterations per epoch


def test_missing_preprocessed_data_names_the_fix(planned_roots: Roots, tmp_path: Path) -> None:
    """The generated configs are there but the case store is not (e.g. plan.py ran with preprocess=false)."""
    roots = Roots(planned_roots.raw, tmp_path / "preprocessed", tmp_path / "results")
    shutil.copytree(planned_roots.preprocessed / "configs", roots.preprocessed / "configs")
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=fast_dev_run", roots=roots)
    assert result.returncode == 2
    assert "nnUNetPlans_2d: no preprocessed data" in result.stderr
    assert "nnlight-plan dataset=Dataset900_Demo" in result.stderr and "Traceback" not in result.stderr


def test_raw_labels_out_of_reach_are_named_before_training(planned_roots: Roots, tmp_path: Path) -> None:
    """The end-of-training validation scores against <raw>/<Dataset>/labelsTr: a raw root elsewhere is said at once,
    not after the epochs."""
    roots = Roots(tmp_path / "raw", planned_roots.preprocessed, tmp_path / "results")
    result = run_script("train.py", "plan=Dataset900_Demo/2d", *TINY_BUDGET, roots=roots)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{roots.raw / 'Dataset900_Demo' / 'labelsTr'}: not found" in result.stderr
    assert "validation.enabled=false" in result.stderr and not any(roots.results.rglob("*"))


def test_hand_broken_plan_architecture_names_the_fix(planned_roots: Roots, tmp_path: Path) -> None:
    roots = Roots(planned_roots.raw, planned_roots.preprocessed, tmp_path / "results")
    config = planned_roots.preprocessed / "configs" / "plan" / "Dataset900_Demo" / "2d.yaml"
    broken = config.with_name("2d_broken.yaml")
    broken.write_text(config.read_text().replace("  conv_bias: true", "  conv_bias: true\n  dropout: 0.5"))
    try:
        result = run_script("train.py", "plan=Dataset900_Demo/2d_broken", "debug=fast_dev_run", roots=roots)
    finally:
        broken.unlink()
    assert result.returncode == 2
    assert "plan.architecture" in result.stderr and "overwrite_configs=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_tensorboard_and_offline_wandb_loggers_write_into_the_run_folder(planned_roots: Roots) -> None:
    # a seed of its own: a run of the same identity trained by another test would be found, not trained again
    common = ["plan=Dataset900_Demo/2d", "debug=limit", "trainer.max_epochs=1", "data.iterations_per_epoch=1",
              "validation.enabled=false", "seed=21"]
    for fold, logger in enumerate(("tensorboard", "wandb", "mlflow")):  # no W&B account or network here
        images = [] if logger == "mlflow" else ["logger.images_every_n_epochs=1"]
        result = run_script("train.py", *common, f"logger={logger}", f"data.fold={fold}", *images,
                            roots=planned_roots)
        assert result.returncode == 0, result.stderr[-3000:]
        printed = result.stdout + result.stderr  # quiet by default: no third-party deprecation or advice lines
        for noise in ("LeafSpec", "log_every_n_steps", "anonymous setting", "Warning:", "━"):  # ━: rich's bar
            assert noise not in printed, noise
    # neither the logger nor validation settings change what is trained, so they are not in the name
    model = planned_roots.results / "Dataset900_Demo" / "2d" / \
        "baseline+data.iterations_per_epoch-1+debug-limit+seed-21+trainer.max_epochs-1"
    events = list((model / "fold_0" / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    accumulator = EventAccumulator(str(events[0]), size_guidance={"images": 0})
    accumulator.Reload()
    pictures = accumulator.Images(TAG)  # the validation patch (image | label | prediction) of the one epoch
    patch = json.loads((model / "fold_0" / "plan.json").read_text())["patch_size"]
    side = panel_scale(tuple(patch))
    assert len(pictures) == 1 and (pictures[0].height, pictures[0].width) == \
        (patch[0] * side, 3 * patch[1] * side + 2 * GAP)
    offline_runs = list((model / "fold_1" / "wandb").glob("offline-run-*"))
    assert offline_runs and list(offline_runs[0].glob("run-*.wandb")), "no offline W&B run"
    assert list(offline_runs[0].glob("files/media/images/validation/patch_*.png")), "no picture logged to W&B"
    # the W&B run is named as its folder, overrides included
    assert f"Dataset900_Demo/2d/{model.name}/fold_1".encode() in next(offline_runs[0].glob("run-*.wandb")).read_bytes()
    run = model / "fold_1"
    assert (run / "logs" / "metrics.csv").is_file()
    # MLflow: one local database for the results folder, the run named as its folder, its losses logged
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{planned_roots.results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Dataset900_Demo/2d")
    assert experiment is not None
    (tracked,) = client.search_runs([experiment.experiment_id])
    assert tracked.info.run_name == f"{model.name}/fold_2" and "train/loss" in tracked.data.metrics


@pytest.mark.slow  # 11 s: tests/training/test_task.py trains a batch down in-process (default suite time)
def test_overfit_one_batch_drives_the_training_loss_down(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=overfit", "trainer.max_epochs=15",
                        roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = (planned_roots.results / "Dataset900_Demo" / "2d" / "baseline+debug-overfit+trainer.max_epochs-15" /
               "fold_0" / "logs" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    losses = [float(row.split(",")[header.index("train/loss")]) for row in metrics[1:]
              if row.split(",")[header.index("train/loss")]]
    assert len(losses) == 15
    assert losses[-1] < 0.5 * losses[0], losses  # the same batch, no augmentation: it must be memorized


@pytest.mark.slow  # 6 s: a message only; keeps the default suite under 15 minutes on 2 cores
def test_compile_is_ignored_on_the_cpu(planned_roots: Roots) -> None:
    """(A misspelt Trainer key is tested with the other wrong values in test_train_choices.py.)"""
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=fast_dev_run", "trainer=cpu",
                        "trainer.compile=true", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainer.compile=true is ignored on the CPU" in result.stdout


@pytest.mark.slow  # 12 s: the launcher plugin's code path; keeps the default suite under 15 minutes on 2 cores
def test_submitit_launcher_runs_a_fold_sweep(planned_roots: Roots) -> None:
    """The SLURM launcher's code path, with submitit's local executor standing in for the cluster."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'nnlight[slurm]'")
    result = run_script("train.py", "-m", "launcher=submitit_local", "plan=Dataset900_Demo/2d",
                        "debug=fast_dev_run", "data.fold=0,1", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(planned_roots, "2d")
    assert "baseline+debug-fast_dev_run/fold_1" in runs
    assert list((planned_roots.results / "sweeps").glob("*/.submitit/*/*_result.pkl"))  # the sweep's own record


def test_an_unknown_optimized_metric_is_named_before_training(planned_roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=fast_dev_run", "optimized_metric=dice",
                        roots=planned_roots)
    assert result.returncode == 2 and "optimized_metric=dice" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("checkpoints=best", "checkpoints=best: choose one of final, best_and_final, all"),
    ("validation.overlay_channel=3", "validation.overlay_channel=3: Dataset900_Demo has channels 0..1"),
])
def test_a_wrong_checkpoint_policy_or_overlay_channel_is_refused_before_a_folder_exists(
        planned_roots: Roots, override: str, message: str) -> None:
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=fast_dev_run", "data.fold=4", override,
                        roots=planned_roots)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in planned_roots.results.rglob("fold_4") if p.is_dir()]


@pytest.mark.slow  # 27 s: test_overrides_name_the_run_and_multirun_makes_one_folder_per_fold covers multirun
def test_a_multirun_over_two_plans_trains_each_in_its_own_folder(planned_roots: Roots) -> None:
    result = run_script("train.py", "-m", "plan=Dataset900_Demo/2d,Dataset900_Demo/3d_fullres", *TINY_BUDGET,
                        "validation.enabled=false", roots=planned_roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" not in result.stdout
    name = f"baseline+{TINY_NAME}"
    runs = [planned_roots.results / "Dataset900_Demo" / c / name / "fold_0" for c in ("2d", "3d_fullres")]
    identities = [json.loads((r / "run_config.json").read_text()) for r in runs]
    assert [i["config"]["plan"]["configuration"] for i in identities] == ["2d", "3d_fullres"]
    assert identities[0]["config_hash"] != identities[1]["config_hash"]
    assert all((r / "checkpoints" / "final.ckpt").is_file() and (r / "run_stats.json").is_file() for r in runs)
    assert len(list((planned_roots.results / "sweeps").glob("*/multirun.yaml"))) >= 1  # kept per sweep

    again = run_script("train.py", "plan=Dataset900_Demo/2d", *TINY_BUDGET, "validation.enabled=false",
                       "loss=dice_ce", roots=planned_roots)  # naming the default loss: the same config
    assert again.returncode == 0 and "Already trained" in again.stdout  # a finished run is not trained twice

    before = {p: p.stat().st_mtime_ns for p in runs[0].rglob("*") if p.is_file()}
    other_plan = run_script("train.py", "plan=Dataset900_Demo/3d_fullres", *TINY_BUDGET, "validation.enabled=false",
                            f"hydra.run.dir='{runs[0]}'", roots=planned_roots)  # another plan, forced into it
    assert other_plan.returncode == 2 and "Traceback" not in other_plan.stderr
    assert "holds a run trained with another configuration (plan.configuration: was 2d, now 3d_fullres" \
        in other_plan.stderr
    kept = ("train.log", ".lock")  # the log says what was refused; the lock names who last examined the folder
    assert {p: p.stat().st_mtime_ns for p in runs[0].rglob("*") if p.is_file() and p.name not in kept} == \
        {p: t for p, t in before.items() if p.name not in kept}  # nothing of the first run was touched

    shutil.copy(runs[1] / "checkpoints" / "final.ckpt", runs[0] / "checkpoints" / "last.ckpt")  # copied by hand
    (runs[0] / "run_stats.json").unlink()  # as if the 2d run had been killed before it finished
    foreign = run_script("train.py", "plan=Dataset900_Demo/2d", *TINY_BUDGET, "validation.enabled=false",
                         roots=planned_roots)
    assert foreign.returncode == 2 and "Traceback" not in foreign.stderr
    assert "the checkpoint being resumed was made by another run" in foreign.stderr


def test_a_failing_sweep_job_is_recorded_and_the_others_run(planned_roots: Roots) -> None:
    """Fold 0 and fold 1 of a sweep; fold 1's folder is blocked by a foreign checkpoint: fold 0 still trains."""
    name = "baseline+data.iterations_per_epoch-2+data.val_iterations_per_epoch-1+seed-7+trainer.max_epochs-2"
    folder = planned_roots.results / "Dataset900_Demo" / "2d" / name
    (folder / "fold_1" / "checkpoints").mkdir(parents=True)
    (folder / "fold_1" / "checkpoints" / "last.ckpt").write_bytes(b"from somewhere else")
    result = run_script("train.py", "-m", "plan=Dataset900_Demo/2d", "data.fold=1,0", *TINY_BUDGET,
                        "validation.enabled=false", "seed=7", roots=planned_roots)
    assert result.returncode == 1
    assert "no run_config.json saying how" in result.stderr
    assert (folder / "fold_0" / "run_stats.json").is_file()  # the job after the failed one ran
    assert not (folder / "fold_1" / "run_config.json").exists()


@pytest.mark.slow  # 14 s: two identical trainings; keeps the default suite under 15 minutes on 2 cores
def test_deterministic_reruns_give_identical_metrics(planned_roots: Roots, tmp_path: Path) -> None:
    args = ["plan=Dataset900_Demo/2d", *TINY_BUDGET, "trainer.deterministic=true", "validation.mirroring=false"]
    summaries = []
    for attempt in ("first", "second"):
        roots = Roots(planned_roots.raw, planned_roots.preprocessed, tmp_path / attempt)
        result = run_script("train.py", *args, roots=roots)
        assert result.returncode == 0, result.stderr[-3000:]
        run = next((roots.results / "Dataset900_Demo" / "2d").glob("*/fold_0"))
        assert json.loads((run / "run_config.json").read_text())["config"]["trainer"]["deterministic"] is True
        summaries.append((run / "validation" / "summary.json").read_bytes())
    assert summaries[0] == summaries[1]


def _epoch_loss(run: Path) -> float:
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    return next(float(r["train/loss"]) for r in rows if r["train/loss"])


@pytest.mark.slow  # 20 s: tests/model/test_pretrained.py covers the weight transfer itself
def test_fine_tuning_from_a_trained_run_starts_ahead_of_training_from_scratch(planned_roots: Roots) -> None:
    budget = ["plan=Dataset900_Demo/2d", "data.num_workers=0", "validation.enabled=false",
              "data.val_iterations_per_epoch=1", "trainer.max_epochs=1"]
    pretraining = run_script("train.py", *budget, "data.iterations_per_epoch=10", "seed=7", roots=planned_roots)
    assert pretraining.returncode == 0, pretraining.stderr[-3000:]
    results = planned_roots.results / "Dataset900_Demo" / "2d"
    source = next(results.glob("*iterations_per_epoch=10*seed=7*")) / "fold_0"
    short = [*budget, "data.iterations_per_epoch=2"]
    tuned = run_script("train.py", *short, f"init_from='{source}'", roots=planned_roots)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "init_from: weights of" in tuned.stdout and "every tensor loaded" in tuned.stdout
    assert run_script("train.py", *short, roots=planned_roots).returncode == 0
    name = "baseline+data.iterations_per_epoch-2+data.val_iterations_per_epoch-1+{}trainer.max_epochs-1"
    tuned_run = next(results.glob(name.format("init_from-*+") + "+hash-*")) / "fold_0"
    scratch_run = results / name.format("") / "fold_0"
    assert _epoch_loss(tuned_run) < _epoch_loss(scratch_run) - 0.1, (_epoch_loss(tuned_run), _epoch_loss(scratch_run))


def test_paths_on_the_command_line_act_as_the_environment_variables(planned_roots: Roots) -> None:
    env = {k: v for k, v in planned_roots.env().items() if not k.startswith("NNLIGHT_")}
    paths = [f"paths.preprocessed={planned_roots.preprocessed}", f"paths.raw={planned_roots.raw}",
             f"paths.results={planned_roots.results}"]
    result = run_entry([str(REPO / "train.py"), "plan=Dataset900_Demo/2d", "debug=fast_dev_run", "seed=3", *paths],
                       cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]  # the plan configs were found where paths.preprocessed says
    assert (planned_roots.results / "Dataset900_Demo" / "2d" / "baseline+debug-fast_dev_run+seed-3").is_dir()


@pytest.mark.parametrize(("override", "message"), [
    ("init_from=/no/such/run", "init_from=/no/such/run: no such file or folder"),
    ("previous_stage=3d_lowres/baseline", "is not a cascade stage; only plan=<Dataset>/3d_cascade_fullres"),
])
def test_init_from_and_previous_stage_mistakes_exit_2_and_write_nothing(planned_roots: Roots, override: str,
                                                                        message: str) -> None:
    before = sorted(planned_roots.results.rglob("*")) if planned_roots.results.exists() else []
    result = run_script("train.py", "plan=Dataset900_Demo/2d", "debug=fast_dev_run", "seed=11", override,
                        roots=planned_roots)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert (sorted(planned_roots.results.rglob("*")) if planned_roots.results.exists() else []) == before


def test_a_checkpoint_onto_a_full_disk_ends_the_run_clearly(planned_roots: Roots, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "600k") as resize:
        on_disk = Roots(planned_roots.raw, planned_roots.preprocessed, tmp_path / "disk" / "results")
        result = run_script("train.py", "plan=Dataset900_Demo/2d", *TINY_BUDGET, roots=on_disk,
                            preexec_fn=None if resize is not None else file_size_limit(100_000))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert ".ckpt: could not be written" in result.stderr
        assert not list(on_disk.results.rglob("run_stats.json")) and not list(on_disk.results.rglob(".*.tmp"))
