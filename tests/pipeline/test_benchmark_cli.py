"""benchmark.py end to end: the smoke suite (killed and resumed, then rerun), and wrong suites refused."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnlight.benchmarking.table import CASE_COLUMNS, RUN_COLUMNS
from tests.conftest import REPO, SHARED_DATASETS, Roots, run_entry, run_script

pytestmark = pytest.mark.cli


def _files(roots: Roots) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for root in (roots.raw, roots.preprocessed, roots.results) if root.exists()
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("override", "message"), [
    ("suite.datasets=[Dataset999_Nowhere]", "suite dataset Dataset999_Nowhere: "),
    ('suite.variants.dice_loss=["loss=dicey"]', "suite smoke, variant dice_loss: loss=dicey: no such option"),
    ('suite.overrides=["trainer.max_epoch=2"]', "variant baseline: trainer.max_epoch: no such setting"),
    ("suite.baseline=nnunet", "suite.baseline=nnunet: not one of the variants"),
    ('suite.plan_overrides=["num_workerz=0"]', "suite smoke, planning Dataset981_SmokeGray: num_workerz: no such"),
    ("suite.planner=resenc_xxl", "planner=resenc_xxl: no such option"),
])
def test_a_wrong_suite_is_refused_before_anything_runs(roots: Roots, override: str, message: str) -> None:
    result = run_script("benchmark.py", "suite=smoke", override, roots=roots)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert _files(roots) == {}  # no dataset generated, nothing planned or trained


@pytest.mark.slow  # 76 s: the whole smoke suite twice; keeps the default suite under 15 minutes on 2 cores
def test_smoke_suite_survives_a_kill_and_a_finished_suite_reruns_as_a_no_op(roots: Roots) -> None:
    command = [sys.executable, str(REPO / "benchmark.py"), "suite=smoke"]
    process = subprocess.Popen(command, cwd=REPO, env=roots.env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None and not list(roots.results.rglob("run_stats.json")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # mid-suite: one run finished, the next one training
    process.wait()
    assert len(list(roots.results.rglob("run_stats.json"))) < 8, "the suite finished before it could be killed"

    resumed = run_script("benchmark.py", "suite=smoke", roots=roots)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    folder = roots.results / "benchmarks" / "smoke"
    runs = list(csv.DictReader((folder / "runs.csv").open()))
    assert len(runs) == 8 and {r["status"] for r in runs} == {"finished"}
    assert list(runs[0]) == RUN_COLUMNS and all(r["config_hash"] and r["fingerprint_sha256"] for r in runs)
    assert {r["deterministic"] for r in runs} == {"True"} and all(float(r["seconds_per_epoch"]) > 0 for r in runs)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert list(rows[0]) == CASE_COLUMNS
    assert {(r["dataset"], r["variant"], r["fold"]) for r in rows} == {
        (d, v, f) for d in ("Dataset981_SmokeGray", "Dataset982_SmokeRGB") for v in ("baseline", "dice_loss")
        for f in ("0", "1")}
    assert all(r["Dice"] != "" and r["HD95"] != "" and r["NSD"] != "" for r in rows)
    report = (folder / "report.md").read_text()
    assert "8 finished, 0 failed, 0 not finished, of 8" in report and "| dice_loss | 2/2 |" not in report
    assert "## Ranking" in report and "Wilcoxon" in report and "| Dataset981_SmokeGray / 2d | dice_loss | 3 |" in report
    for plot in ("per_case_dice", "ranks"):  # for the screen, and for a paper as vector files
        assert (folder / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
        assert (folder / f"{plot}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (folder / f"{plot}.svg").read_bytes()
    latex = (folder / "summary.tex").read_text()
    assert "\\toprule" in latex and "Dataset981\\_SmokeGray / 2d" in latex and "dice\\_loss" in latex
    summary = list(csv.DictReader((folder / "summary.csv").open()))
    assert len(summary) == 4 and {r["runs"] for r in summary} == {"2"} and all(r["dice_std"] for r in summary)

    before = _files(roots)
    again = run_script("benchmark.py", "suite=smoke", roots=roots)
    assert again.returncode == 0 and "all 8 run(s) finished before" in again.stdout
    assert "updated: nothing" in again.stdout
    assert _files(roots) == before  # rerunning a finished suite changes nothing


def test_the_cluster_suite_composes_with_its_launcher(roots: Roots) -> None:
    """nnunet_full is for a GPU cluster: here it is only checked and listed (dry_run), nothing is written."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'nnlight[slurm]'")
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is not available (the team's real datasets)")
    result = run_script("benchmark.py", "suite=nnunet_full", "dry_run=true", f"paths.raw={SHARED_DATASETS}",
                        roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "to plan   Dataset101_BraTS2015Mini" in result.stdout
    assert _files(roots) == {}


def test_a_dry_run_lists_the_work_and_writes_nothing(roots: Roots) -> None:
    result = run_script("benchmark.py", "suite=smoke", "dry_run=true", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    # every run: 2 datasets x 1 configuration x 2 variants x 2 folds x 1 seed, each to plan first
    listed = [line for line in result.stdout.splitlines() if line.startswith("to plan   ")]
    assert len(listed) == 8 and "to plan   Dataset982_SmokeRGB / 2d / dice_loss / fold 1 / seed 12345" in result.stdout
    assert "0 run(s) known: 0 finished, 0 to train; 2 dataset(s) to plan first" in result.stdout
    assert _files(roots) == {}  # not even the synthetic datasets are generated


@pytest.mark.slow  # 136 s: 10 trainings; tests/model/test_network_options.py trains each network in the default suite
def test_the_architectures_smoke_suite_compares_every_network_with_its_compute(roots: Roots) -> None:
    result = run_script("benchmark.py", "suite=architectures_smoke", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = roots.results / "benchmarks" / "architectures_smoke"
    runs = list(csv.DictReader((folder / "runs.csv").open()))
    assert len(runs) == 10 and {r["status"] for r in runs} == {"finished"}
    by_variant = {(r["dataset"], r["variant"]): r for r in runs}
    resenc = by_variant[("Dataset984_ArchSmoke3D", "resenc_m")]
    assert "nnUNetResEncUNetMPlans" in resenc["run_folder"]  # ResEnc trains on its own plans
    assert int(resenc["parameters"]) != int(by_variant[("Dataset984_ArchSmoke3D", "nnunet")]["parameters"])
    report = (folder / "report.md").read_text()
    for variant in ("resenc_m", "mednext_s", "swinunetr", "segresnet"):
        assert f"| Dataset984_ArchSmoke3D / 3d_fullres | {variant} | 1 |" in report  # the paired comparison
    assert "| peak GPU MB | parameters |" in report and "on the resenc_m planner's plans" in report


@pytest.mark.slow  # 50-90 s on a 2-core Xeon: the default suite keeps its 15 minutes
def test_a_suite_of_ones_own_folder_uses_the_options_beside_it(roots: Roots, tmp_path: Path) -> None:
    """The researcher's folder reaches the suite and every variant's training: a suite file there naming a network
    option of the same folder, given with --config-dir or NNLIGHT_CONFIG_DIR (the dry run composes every variant,
    as the real run's trainings will)."""
    own = tmp_path / "my_configs"
    shutil.copytree(REPO / "tests" / "byo_method" / "configs", own)
    (own / "suite").mkdir()
    (own / "suite" / "my_idea.yaml").write_text(
        "name: my_idea\ndatasets:\n  - name: Dataset981_SmokeGray\n    synthetic: {num_cases: 6, shape: [40, 48], "
        "num_channels: 1, num_test_cases: 0}\nconfigurations: [2d]\nfolds: [0]\nbaseline: baseline\nvariants:\n"
        "  baseline: []\n  mine: [network=tiny_skip]\nbudget: {max_epochs: 1, iterations_per_epoch: 1}\n")
    env = {**roots.env(), "PYTHONPATH": str(REPO / "tests" / "byo_method")}
    for how in (["--config-dir", str(own)], []):
        environment = env if how else {**env, "NNLIGHT_CONFIG_DIR": str(own)}
        result = run_entry([str(REPO / "benchmark.py"), *how, "suite=my_idea", "dry_run=true"], cwd=REPO,
                           env=environment)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "mine" in result.stdout and "no such option" not in result.stderr
    typo = run_entry([str(REPO / "train.py"), "plan=Dataset900_Demo/2d", "network=tiny_skp"], cwd=REPO,
                     env={**env, "NNLIGHT_CONFIG_DIR": str(own)})
    assert typo.returncode == 2 and "network=tiny_skp: no such option" in typo.stderr and "tiny_skip" in typo.stderr

    # trained for real, then a metric added to the suite: an evaluation setting, so nothing trains again and the
    # finished runs' validation predictions are scored for it
    suite_file = own / "suite" / "my_idea.yaml"
    suite_file.write_text(suite_file.read_text() + "overrides: [data.num_workers=0]\nplan_overrides: [num_workers=0]\n")
    trained = run_entry([str(REPO / "benchmark.py"), "--config-dir", str(own), "suite=my_idea"], cwd=REPO, env=env)
    assert trained.returncode == 0 and "2 of 2 run(s) finished" in trained.stdout, trained.stderr[-2000:]
    names = sorted(p.name for p in (roots.results / "Dataset981_SmokeGray" / "2d").iterdir())
    assert [n.split("+")[0] for n in names] == ["baseline", "tiny_skip"]
    assert not any(set(name) & set("[],'\"") for name in names)  # names a shell takes unquoted
    suite_file.write_text(suite_file.read_text().replace("overrides: [data.num_workers=0]",
                                                         "overrides: [data.num_workers=0, metrics=volume]"))
    scored = run_entry([str(REPO / "benchmark.py"), "--config-dir", str(own), "suite=my_idea"], cwd=REPO, env=env)
    assert scored.returncode == 0 and "all 2 run(s) finished before" in scored.stdout, scored.stderr[-2000:]
    assert scored.stdout.count("validation predictions scored again for volume_error") == 2
    assert "volume_error" in (roots.results / "benchmarks" / "my_idea" / "report.md").read_text()


def test_the_dry_run_flags_how_variants_differ_beyond_their_method(planned_demo_template: Roots,
                                                                    tmp_path: Path) -> None:
    """A network that cannot take the plan's patch is named before anything trains; an adapted patch, another
    batch or precision is listed as a difference from the baseline."""
    from tests.conftest import planned_demo

    roots = planned_demo(planned_demo_template, tmp_path)
    own = tmp_path / "my_configs" / "suite"
    own.mkdir(parents=True)

    def dry_run(variants: str) -> subprocess.CompletedProcess:
        (own / "fair.yaml").write_text(
            "name: fair\ndatasets: [Dataset900_Demo]\nconfigurations: [3d_fullres]\nfolds: [0]\nbaseline: baseline\n"
            f"variants:\n  baseline: []\n{variants}budget: {{max_epochs: 1, iterations_per_epoch: 1}}\n")
        return run_entry([str(REPO / "benchmark.py"), "--config-dir", str(own.parent), "suite=fair", "dry_run=true"],
                         cwd=REPO, env=roots.env())

    refused = dry_run("  segresnet: [network=segresnet]\n")
    assert refused.returncode == 2 and "1 variant(s) cannot train as given (nothing was trained)" in refused.stderr
    assert "variant segresnet on Dataset900_Demo / 3d_fullres: network (monai.networks.nets.SegResNet) needs a " \
           "patch divisible by [8, 8, 8]" in refused.stderr and "network.adapt_patch=true" in refused.stderr
    flagged = dry_run("  adapted: [network=segresnet, network.adapt_patch=true]\n"
                      "  bigger: [data.batch_size=3, trainer.precision=bf16-mixed]\n")
    assert flagged.returncode == 0, flagged.stderr[-2000:]
    assert re.search(r"adapted on Dataset900_Demo / 3d_fullres: patch (\d+x\d+x\d+) \(the network adapted the "
                     r"plan's (\d+x\d+x\d+); baseline \2\)", flagged.stdout)
    assert "bigger on Dataset900_Demo / 3d_fullres: batch 3 (baseline 2); precision bf16-mixed (baseline 32)" in \
        flagged.stdout
    assert not any((roots.results / "Dataset900_Demo").glob("3d_fullres/*"))  # a dry run trains nothing
