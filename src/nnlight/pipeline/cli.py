"""What the entry points do before Hydra starts: ``--help`` listing every config group and its options, and
a one-line error (exit 2, nothing written) for an unknown group option, a misspelt key or a malformed override.

Hydra itself would print a multi-line report with exit code 1, or compose the run folder before the stage can
refuse; composing once here first (every value of a sweep included) catches those mistakes earlier.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import warnings
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

import nnlight.pipeline.run_names  # noqa: F401  (the resolvers that name train's run folder)
from hydra_plugins.nnlight_optuna.search import check_search_settings
from nnlight.pipeline.config_dir import CONFIG_DIR, USER_CONFIG_VARIABLE, user_config_dir
from nnlight.pipeline.config_values import plain
from nnlight.pipeline.hydra_settings import hydra_settings_problem, written_folders
from nnlight.utils.command_line import did_you_mean
from nnlight.utils.errors import USER_ERROR_EXIT_CODE, UserError
from nnlight.utils.files import writable_folder_problem
from nnlight.utils.names import inside

# Hydra's flags that only print (--cfg job, --info, ...) go straight to Hydra; -r/--run runs, checked as usual
_PRINT_FLAGS = ("--cfg", "-c", "--info", "-i", "--hydra-help", "--resolve", "--package", "-p", "--shell-completion",
                "-sc")
# a primary config of one's own, or a pickled config to rerun, would reach Hydra past every check
_REFUSED_FLAGS = {"--config-path": "add your own configs with --config-dir <folder> (they are checked)",
                  "-cp": "add your own configs with --config-dir <folder> (they are checked)",
                  "--config-name": "each nnlight command has its own primary config",
                  "-cn": "each nnlight command has its own primary config",
                  "--experimental-rerun": "it loads a pickled config, which can run code; run the command line again"}
# a config folder of the user's own (their network/loss/... YAMLs): checked like the built-in configs
_CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


# The roots' environment variables (configs/paths/default.yaml): where Hydra looks for the generated plan
# configs is read from them before any override applies
PATH_VARIABLES = {"paths.raw": "NNLIGHT_RAW", "paths.preprocessed": "NNLIGHT_PREPROCESSED",
                  "paths.results": "NNLIGHT_RESULTS"}


# the roots each command writes into (checked before Hydra or the stage makes a folder there)
WRITTEN_ROOTS = {"plan": ("paths.preprocessed",), "train": ("paths.results",), "evaluate": ("paths.results",),
                 "benchmark": ("paths.preprocessed", "paths.results")}


def paths_to_environment(overrides: list[str]) -> None:
    """``paths.preprocessed=<dir>`` (and raw, results) on the command line act exactly as the environment variable:
    Hydra's search path for the plan configs, and every process the run starts, see the same folder."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return  # reported, with the fix, by first_problem
    for override in parsed:
        variable = PATH_VARIABLES.get(override.get_key_element())
        if variable and not override.is_sweep_override() and isinstance(override.value(), str):
            os.environ[variable] = str(override.value())


def check_command_line(config_dir: Path, config_name: str, argv: list[str] | None = None) -> None:
    """Exit with help (0) or with the first mistake on the command line (2); return if Hydra may start."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(help_text(config_dir, config_name))
        sys.exit(0)
    own_configs, args = _own_config_dir(args)
    overrides = [a for a in args if not a.startswith("-")]
    paths_to_environment(overrides)
    refused = next((a.split("=")[0] for a in args if a.split("=")[0] in _REFUSED_FLAGS), None)
    message = f"{refused}: not accepted by nnlight; {_REFUSED_FLAGS[refused]}" if refused else \
        plan_file_problems(config_dir, config_name, overrides)
    if not message and own_configs is not None and not own_configs.is_dir():
        message = f"--config-dir {own_configs}: no such folder (your own configs: <folder>/network/<name>.yaml, ...)"
    if not message and not any(a.split("=")[0] in _PRINT_FLAGS for a in args):
        extra = [search_path_override(config_dir, config_name, own_configs)] if own_configs else []
        message = first_problem(config_dir, config_name, [*overrides, *extra])
    if message:
        print(f"\nnnlight: error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def use_own_config_dir() -> None:
    """The researcher's config folder for this command: ``--config-dir`` on the command line, else
    ``NNLIGHT_CONFIG_DIR`` (then handed to Hydra as ``--config-dir``); exported either way."""
    own, _ = _own_config_dir(sys.argv[1:])
    if own is not None:
        os.environ[USER_CONFIG_VARIABLE] = str(own)
    elif (folder := user_config_dir()) is not None:
        sys.argv += ["--config-dir", str(folder)]


def _own_config_dir(args: list[str]) -> tuple[Path | None, list[str]]:
    """``--config-dir <folder>`` (or ``-cd``, ``--config-dir=<folder>``) and the other arguments."""
    rest, folder = [], None
    arguments = iter(args)
    for arg in arguments:
        flag, _, value = arg.partition("=")
        if flag in _CONFIG_DIR_FLAGS:
            value = value or next(arguments, "")
            folder = Path(value).expanduser().resolve() if value else Path("/nonexistent --config-dir value")
        else:
            rest.append(arg)
    return folder, rest


def search_path_override(config_dir: Path, config_name: str, own_configs: Path | None, *extra: Path) -> str:
    """The search path Hydra uses with ``--config-dir``: the user's folder, ``extra`` folders, then the primary
    config's entries (the plan configs)."""
    folders = [*([own_configs] if own_configs else []), *extra, *(p.parent for p in _plan_folders(config_dir,
                                                                                                   config_name))]
    return f"hydra.searchpath=[{','.join(f'file://{f}' for f in folders)}]"


def first_problem(config_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """Compose with every value of every sweep (the others at their first value); the first failure, explained."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        return f"cannot read the override(s) {' '.join(overrides)}: {str(e).splitlines()[0]}"
    variants = [[*overrides]]
    first = [str(o.input_line) if not o.is_sweep_override() else
             _with_value(o, next(iter(o.sweep_string_iterator()))) for o in parsed]
    for i, override in enumerate(parsed):
        if override.is_sweep_override():
            variants += [[*first[:i], _with_value(override, value), *first[i + 1:]]
                         for value in override.sweep_string_iterator()]
    for variant in variants if len(variants) == 1 else variants[1:]:
        problem = composition_problem(config_dir, config_name, variant)
        if problem:
            return problem
    return None


def _with_value(override: Override, value: str) -> str:
    return f"{override.get_key_element()}={value}"


def compose_config(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    """The config an entry point would run with (``hydra`` node included), composed outside any run; with the
    user's config folder on the search path (``NNLIGHT_CONFIG_DIR``) unless the overrides set the path."""
    own = user_config_dir()
    if own is not None and not any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
        overrides = [*overrides, search_path_override(config_dir, config_name, own)]
    GlobalHydra.instance().clear()
    try:
        with warnings.catch_warnings(), initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            # a plan folder not made yet is no mistake here (Hydra warns of it); a missing plan is reported instead
            warnings.filterwarnings("ignore", "provider=hydra.searchpath", UserWarning)
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def composition_problem(config_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """Why these overrides do not compose (unknown option, key or value), would make Hydra run code or write outside
    the results folder (:func:`hydra_settings_problem`); None if they do. Every unknown key and option is named at
    once (each with the closest valid name): one line for one mistake, a list for several."""
    problems, remaining = [], list(overrides)
    while (found := _one_problem(config_dir, config_name, remaining)) is not None:
        message, culprit = found
        problems.append(message)
        if culprit is None or culprit == "plan":  # a mistake that hides the others, or no plan to compose with
            break
        remaining = [o for o in remaining if _key(o) != culprit]
    if len(problems) <= 1:
        return problems[0] if problems else None
    return f"{len(problems)} mistakes:\n" + "\n".join(f"  {p}" for p in problems)


def _key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def _one_problem(config_dir: Path, config_name: str, overrides: list[str]) -> tuple[str, str | None] | None:
    """The first problem composing these overrides, with the key of the override that caused it when dropping
    that override lets the check go on (an unknown key or option)."""
    try:
        cfg = compose_config(config_dir, config_name, overrides)
        hydra_problem = hydra_settings_problem(cfg, config_name, overrides)
        if hydra_problem:
            return hydra_problem, None
        for key in WRITTEN_ROOTS.get(config_name, ()):
            problem = writable_folder_problem(Path(str(OmegaConf.select(cfg, key))))
            if problem:
                return f"{key}={OmegaConf.select(cfg, key)}: {problem}; choose a folder you can write to", None
        if config_name == "train" and str(cfg.hydra.sweeper.get("_target_", "")).endswith(".OptunaSearch"):
            check_search_settings(cfg.hydra.sweeper)
    except MissingConfigException as e:
        group, _, option = str(e.missing_cfg_file).partition("/")
        options = list(e.options or []) or _plan_options(config_dir, config_name) if group == "plan" else \
            list(e.options or [])
        return (f"{group}={option}: no such option; choose one of {', '.join(options) or '(none yet)'}" +
                (" (nnlight-plan writes them)" if group == "plan" else "") + did_you_mean(option, options), group)
    except ConfigCompositionException as e:
        return _composition_problem(config_dir, config_name, overrides, e)
    except UserError as e:
        return str(e), None
    except InterpolationResolutionError as e:  # a resolver refused a value (a resolver's UserError, rewrapped)
        return str(e).split("raised while resolving interpolation: ", 1)[-1].splitlines()[0], None
    except (HydraException, ValueError) as e:
        return str(e).splitlines()[0], None
    return None


def train_run_folder(overrides: list[str], config_dir: Path = CONFIG_DIR) -> Path:
    """The run folder train.py gives a run with these overrides (Hydra's ``run.dir``, as in the run), refused unless
    it lies inside ``paths.results``: no override value may turn into a path elsewhere."""
    cfg = compose_config(config_dir, "train", overrides)
    folder = written_folders(cfg)["hydra.run.dir"]
    assert folder is not None  # every composed config names its run folder
    return inside(Path(str(cfg.paths.results)), folder, "the run folder (hydra.run.dir)")


def _composition_problem(config_dir: Path, config_name: str, overrides: list[str], error: Exception
                         ) -> tuple[str, str | None]:
    text = str(error)
    if text.startswith("You must specify 'plan'"):
        planned = ', '.join(_plan_options(config_dir, config_name)) or 'none (run nnlight-plan dataset=<Dataset> first)'
        chosen = [o for o in overrides if o.split("=")[0] == "plan"]
        if chosen:  # Hydra says "must specify" when no plan folder exists at all
            return f"{chosen[0]}: no such plan; planned so far: {planned}", "plan"
        return f"plan=<Dataset>/<configuration> is required; planned so far: {planned}", "plan"
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
        parent = key.rpartition(".")[0]
        valid = _valid_keys(config_dir, config_name, [o for o in overrides if _key(o) != key], parent)
        where = f"{parent}." if parent else ""
        listed = f"; valid: {', '.join(f'{where}{k}' for k in valid)}" if valid else ""
        return (f"{key}: no such setting{listed}{did_you_mean(key.rpartition('.')[2], valid, where)} (to add a new "
                f"key on purpose: +{key}=...)", key)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()), None


def _valid_keys(config_dir: Path, config_name: str, overrides: list[str], parent: str) -> list[str]:
    """The keys under ``parent`` with these overrides, or (when another of them is a mistake too) with only the
    group choices and top-level values among them."""
    for attempt in (overrides, [o for o in overrides if "." not in _key(o)]):
        try:
            node = compose_config(config_dir, config_name, attempt)
        except (HydraException, ValueError):
            continue
        node = OmegaConf.select(node, parent) if parent else node
        return sorted(str(k) for k in node if k != "hydra") if isinstance(node, DictConfig) else []
    return []


def _plan_folders(config_dir: Path, config_name: str) -> list[Path]:
    """``<preprocessed>/configs/plan`` of every entry on the primary config's search path."""
    primary = OmegaConf.load(config_dir / f"{config_name}.yaml")
    assert isinstance(primary, DictConfig)  # a primary config is a mapping
    paths = plain(primary, resolve=False).get("hydra", {}).get("searchpath", [])
    return [Path(str(OmegaConf.create({"p": entry}).p).removeprefix("file://")) / "plan" for entry in paths]


def _plan_options(config_dir: Path, config_name: str) -> list[str]:
    """The generated plan configs on the config's search path (``<preprocessed>/configs/plan/<Dataset>/*.yaml``)."""
    return [f"{p.parent.name}/{p.stem}" for folder in _plan_folders(config_dir, config_name)
            for p in sorted(folder.glob("*/*.yaml"))]


def plan_file_problems(config_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """Plan configs are shared data: each one named by ``plan=`` (and what it inherits from) must hold values
    only, checked before Hydra reads it — Hydra would act on a ``hydra:`` block in it before any stage runs."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return None  # reported by first_problem
    chosen = [value for o in parsed if o.get_key_element().lstrip("+~") == "plan"
              for value in (o.sweep_string_iterator() if o.is_sweep_override() else [o.get_value_element_as_str()])]
    folders, seen = _plan_folders(config_dir, config_name), set()
    while chosen:
        name = chosen.pop()
        if name in seen:  # a loop of inheritance: Hydra names it
            continue
        seen.add(name)
        for path in (f / f"{name}.yaml" for f in folders if (f / f"{name}.yaml").is_file()):
            problem = plan_file_problem(path)
            if problem:
                return problem
            parent = re.search(r"^\s*-\s*([\w.-]+/[\w.-]+)@_here_", path.read_text(encoding="utf-8"), re.MULTILINE)
            chosen += [parent.group(1)] if parent else []
    return None


def _flat_keys(node: object, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    return [k for key, value in node.items() for k in _flat_keys(value, f"{prefix}{key}.")] if node else [prefix]


def help_text(config_dir: Path, config_name: str) -> str:
    """The command's usage, its config groups with their options (default marked), its own values."""
    loaded = OmegaConf.load(config_dir / f"{config_name}.yaml")
    assert isinstance(loaded, DictConfig)  # a primary config is a mapping
    primary = plain(loaded, resolve=False)
    defaults: dict[str, object] = {}
    for entry in primary.pop("defaults", []):
        if isinstance(entry, dict):
            defaults.update({str(k): v for k, v in entry.items()})
    primary.pop("hydra", None)
    program = _program(config_name)
    usage = next((line.lstrip("# ").replace(f"python {config_name}.py", program)
                  for line in (config_dir / f"{config_name}.yaml").read_text().splitlines()
                  if line.startswith("# python")), f"{program} key=value ...")
    lines = [f"usage: {usage}", "", "Config groups (choose with group=option; * = default):"]
    for group, default in defaults.items():
        if group in ("hydra", "_self_"):
            continue
        options = _plan_options(config_dir, config_name) if group == "plan" else \
            sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        marked = ", ".join(f"{o}*" if o == default else o for o in options) or "(none yet: run nnlight-plan)"
        lines.append(textwrap.fill(marked, 116, initial_indent=f"  {group}: ", subsequent_indent="    "))
    values = [k.rstrip(".") for k in _flat_keys(primary)]
    lines += ["", "Values (key=value; a group's own values as group.key, e.g. trainer.max_epochs=100):",
              textwrap.fill(", ".join(values), 116, initial_indent="  ", subsequent_indent="  "),
              "A sweep runs every combination: -m key=a,b,c", "",
              f"Every value of the composed config: {program} <your overrides> --cfg job",
              "Hydra's own options: --hydra-help"]
    return "\n".join(lines)


def _program(config_name: str) -> str:
    """The command as the user typed it: ``nnlight-train`` (console script) or ``python train.py`` (checkout)."""
    name = Path(sys.argv[0]).name
    return name if name.startswith("nnlight-") else f"python {config_name}.py"


def plan_file_problem(path: Path) -> str | None:
    """Why a plan config may not be loaded, or None. Plan files are data shared between people: they hold values
    under ``plan`` only — no ``@package`` header that could reach other groups or Hydra's settings, no
    ``_target_`` anywhere, and in the defaults list only the configuration they inherit from."""
    text = path.read_text(encoding="utf-8")
    if re.search(r"^#\s*@package", text, re.MULTILINE):
        return f"{path}: a plan config may not carry an @package header (it could set other config groups)"
    try:
        data = OmegaConf.to_container(OmegaConf.create(text), resolve=False) if text.strip() else {}
    except Exception as e:  # a YAML or OmegaConf parse error: either way not a plan config
        return f"{path}: not valid YAML ({str(e).splitlines()[0]}); re-run nnlight-plan with overwrite_configs=true"
    if not isinstance(data, dict):
        return f"{path}: a plan config must be a mapping of values"
    for entry in data.get("defaults", []):
        if entry != "_self_" and not (isinstance(entry, str) and re.fullmatch(r"[\w.-]+/[\w.-]+@_here_", entry)):
            return (f"{path}: defaults entry {entry!r} is not allowed; a plan config may only inherit from another "
                    "plan (<Dataset>/<configuration>@_here_)")
    if "hydra" in data or _has_key(data, "_target_"):
        return f"{path}: a plan config holds values only; 'hydra' settings and '_target_' are not allowed in it"
    return None


def _has_key(node: object, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(_has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(_has_key(v, key) for v in node)
    return False
