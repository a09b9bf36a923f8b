"""The ``hydra`` node of a composed config, checked before Hydra acts on it: nothing in it may run code or write
outside the command's folders, whichever config source set it (the command line, a ``--config-dir`` folder, an
experiment, a suite, a plan config).

Hydra instantiates its callbacks, sweeper and launcher by ``_target_``, configures Python logging from a
``dictConfig`` (whose ``()`` and ``class`` keys import and call anything, and whose file handlers open any file),
sets environment variables for the job and creates its run and sweep folders — all before any stage runs. So each
of those keys may only hold what nnlight's own configs put there or a value of the same harmless kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from nnlight.pipeline.config_values import plain
from nnlight.utils.errors import UserError
from nnlight.utils.names import inside

CALLBACKS = ("nnlight.pipeline.sweep_results.SweepResults",)
SWEEPERS = ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
            "hydra_plugins.nnlight_optuna.search.OptunaSearch")
LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",
             "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
             "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
LOGGING_CLASSES = ("logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter")
LOGGING_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
LOG_FILE_PREFIX = "${hydra.runtime.output_dir}/"  # a log file lies in the run folder, nowhere else
# environment variables a job may set (devices, threads, trackers); others (LD_PRELOAD, PYTHONPATH, PATH...) would
# change what every process nnlight starts runs
ENV_PREFIXES = ("CUDA_", "OMP_", "MKL_", "NCCL_", "PYTORCH_", "WANDB_", "TOKENIZERS_")
# launcher settings that are shell code or go into the job script verbatim: only as typed on the command line
LAUNCHER_SHELL_KEYS = ("setup", "srun_args", "additional_parameters")


def hydra_settings_problem(cfg: DictConfig, command: str, overrides: Sequence[str] = ()) -> str | None:
    """Why the ``hydra`` node of ``cfg`` (composed for ``command`` from the command line ``overrides``) may not be
    acted on, or None."""
    node = plain(cfg.hydra, resolve=False)
    return _code_problem(node) or _launcher_problem(node, overrides) or _env_problem(node) or \
        _folder_problem(written_folders(cfg), command, Path(str(cfg.paths.results)))


def written_folders(cfg: DictConfig) -> dict[str, Path | None]:
    """Where Hydra and its launcher would write for the composed ``cfg``, resolved as inside a run (a sweep's job
    numbered 0): the run folder, the sweep folder and a job's, ``.hydra``'s subfolder (None: none), the
    launcher's job files (None: no such launcher)."""
    checked = cfg.copy()
    with open_dict(checked):  # a job's number is known only once the sweep runs
        checked.hydra.job.num = 0
        checked.hydra.job.id = "0"
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(checked)  # ${hydra:...} resolves as in a run
    try:
        hydra = checked.hydra
        sweep = Path(str(hydra.sweep.dir))
        launcher = hydra.launcher.get("submitit_folder")
        return {"hydra.run.dir": Path(str(hydra.run.dir)), "hydra.sweep.dir": sweep,
                "hydra.sweep.subdir": sweep / str(hydra.sweep.subdir),
                "hydra.output_subdir": None if hydra.output_subdir is None else Path(str(hydra.output_subdir)),
                "hydra.launcher.submitit_folder": None if launcher is None else Path(str(launcher))}
    finally:
        hydra_config.cfg = previous


def _code_problem(node: Mapping[str, Any]) -> str | None:
    """Callbacks, sweeper, launcher and logging: only nnlight's own classes, or the standard logging ones."""
    for name, callback in (node.get("callbacks") or {}).items():
        target = callback.get("_target_") if isinstance(callback, Mapping) else callback
        if target not in CALLBACKS:
            return (f"hydra.callbacks.{name}: {target!r} would run before any check; nnlight runs only its own Hydra "
                    "callbacks (remove it from the config file or override that sets it; for your own code add a "
                    "Lightning callback: +callbacks.<name>._target_=<a lightning.pytorch.Callback class>)")
    for key, allowed in (("sweeper", SWEEPERS), ("launcher", LAUNCHERS)):
        target = (node.get(key) or {}).get("_target_")
        if target not in allowed:
            return (f"hydra.{key}._target_={target!r}: not a {key} nnlight runs; choose one of its options "
                    f"({', '.join(a.rpartition('.')[2] for a in allowed)}) through hparams_search= or launcher=")
    swept = [k for k in (node.get("sweeper") or {}).get("params") or {} if str(k).lstrip("+~").startswith("hydra")]
    if swept:
        return (f"hydra.sweeper.params.{swept[0]}: a sweep or search may not vary Hydra's own settings (each job "
                "would act on them unchecked); search over the method's keys only")
    for key in ("job_logging", "hydra_logging"):
        problem = _logging_problem(node.get(key) or {}, f"hydra.{key}")
        if problem:
            return problem
    return None


def _logging_problem(node: Any, where: str) -> str | None:
    """A logging ``dictConfig`` that imports, calls or opens nothing beyond the standard handlers and the run's
    own log file."""
    if isinstance(node, list):
        return next((p for i, v in enumerate(node) if (p := _logging_problem(v, f"{where}[{i}]"))), None)
    if not isinstance(node, Mapping):
        return None
    for key, value in node.items():
        at = f"{where}.{key}"
        if key == "()":
            return f"{at}: a logging factory calls code; use the standard handlers ({', '.join(LOGGING_CLASSES)})"
        if key == "class" and value not in LOGGING_CLASSES:
            return f"{at}={value!r}: not a standard logging class; use one of {', '.join(LOGGING_CLASSES)}"
        if isinstance(value, str) and value.startswith("ext://") and value not in LOGGING_STREAMS:
            return f"{at}={value!r}: logging may only name the streams {', '.join(LOGGING_STREAMS)}"
        if key == "filename" and not (isinstance(value, str) and value.startswith(LOG_FILE_PREFIX)
                                      and ".." not in PurePath(value).parts):
            return f"{at}={value!r}: a log file lies in the run folder ({LOG_FILE_PREFIX}<name>.log)"
        problem = _logging_problem(value, at)
        if problem:
            return problem
    return None


def _launcher_problem(node: Mapping[str, Any], overrides: Sequence[str]) -> str | None:
    """A cluster launcher's job script holds what its settings say: shell lines (``setup``) and extra arguments only
    as the user typed them on the command line, never from a config file; no setting spans lines."""
    launcher = node.get("launcher") or {}
    typed = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    for key in LAUNCHER_SHELL_KEYS:
        if launcher.get(key) and f"hydra.launcher.{key}" not in typed:
            return (f"hydra.launcher.{key}: runs as shell code in each job; nnlight takes it only from the command "
                    f"line (hydra.launcher.{key}=...), not from a config file")
    lines = [k for k, v in launcher.items() if isinstance(v, str) and any(ord(c) < 32 for c in v)]
    if lines:
        return f"hydra.launcher.{lines[0]}: holds a line break or control character; write it on one line"
    return None


def _env_problem(node: Mapping[str, Any]) -> str | None:
    for name in (node.get("job") or {}).get("env_set") or {}:
        if not str(name).startswith(ENV_PREFIXES):
            allowed = ", ".join(f"{p}*" for p in ENV_PREFIXES)
            return (f"hydra.job.env_set.{name}: nnlight's jobs may set only {allowed}; set {name} in your shell "
                    "before the command if you need it")
    return None


def _folder_problem(folders: Mapping[str, Path | None], command: str, results: Path) -> str | None:
    """Every folder Hydra or a launcher writes lies inside ``paths.results``: the run folder (train's; the other
    commands write none), the sweep folder and each job's folder, ``.hydra/`` and the launcher's job files."""
    output_subdir, run_dir = folders["hydra.output_subdir"], folders["hydra.run.dir"]
    if output_subdir is not None and (output_subdir.is_absolute() or ".." in output_subdir.parts):
        return f"hydra.output_subdir={output_subdir}: a folder inside the run folder (a relative name), or null"
    if command != "train" and (str(run_dir) != "." or output_subdir is not None):
        return (f"hydra.run.dir={run_dir}, hydra.output_subdir={output_subdir}: nnlight-{command} makes no run "
                "folder (it writes where its own settings say); remove these overrides")
    checked = {k: f for k, f in folders.items() if f is not None and k != "hydra.output_subdir"
               and (command == "train" or k != "hydra.run.dir")}
    try:
        for key, folder in checked.items():
            inside(results, folder, key)
    except UserError as e:
        return f"{e} (paths.results={results}); choose a folder inside it"
    return None
