"""``key=value`` arguments for nnlight's small commands (``nnlight-model``, ``nnlight-demo-data``,
``nnlight-plot-overlays``, ``nnlight-convert-msd``, ``nnlight-preview-augmentation``), as the Hydra commands take them.

Each command keeps its argparse parser: ``key=value`` items are translated to what that parser reads (``--key
value``, a positional by its name, a switch from ``true``/``false``, a list from ``a,b``). The old ``--key`` flags
still work for one release, with a note saying how to write them now.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys

_KEY_VALUE = re.compile(r"^([A-Za-z0-9_]+)=(.*)$", re.DOTALL)
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
# names people bring from other frameworks for a setting nnlight spells otherwise
_OTHER_SPELLINGS = {"learning_rate": "lr", "epochs": "max_epochs", "num_epochs": "max_epochs", "wd": "weight_decay",
                    "batch": "batch_size", "workers": "num_workers", "gpus": "devices"}


def did_you_mean(name: str, valid: list[str], prefix: str = "") -> str:
    """'; did you mean <prefix><the closest valid name>?' when one is close enough to be a typo of ``name`` (or is
    what nnlight calls a setting other frameworks name so); '' otherwise."""
    if _OTHER_SPELLINGS.get(name) in valid:
        return f"; did you mean {prefix}{_OTHER_SPELLINGS[name]}?"
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"; did you mean {prefix}{match[0]}?" if match else ""


def _parser_for(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser that reads ``argv``'s settings: a subcommand's own one where the command has subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = next((a for a in argv if a in action.choices), None)
            return action.choices[chosen] if chosen is not None else parser
    return parser


def _key(action: argparse.Action) -> str:
    """The name a setting is written with: its long flag without dashes (``--2d``: ``2d``), else its dest."""
    longs = [o.lstrip("-") for o in action.option_strings if o.startswith("--")]
    return (longs[0] if longs else action.dest).replace("-", "_")


def key_value_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> list[str]:
    """``argv`` (default: the command line) as ``parser`` reads it: ``key=value`` items translated, unknown keys
    refused naming the valid ones, and a note on stderr for each old-style ``--flag``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    reader = _parser_for(parser, argv)
    actions = {_key(a): a for a in reader._actions if a.dest != "help"}
    translated: list[str] = []
    unknown = [f"{m.group(1)}={_unquoted(m.group(2))}: no such setting{did_you_mean(m.group(1), sorted(actions))}"
               for m in map(_KEY_VALUE.match, argv) if m is not None and m.group(1) not in actions]
    if unknown:  # every misspelt key at once, then the valid ones
        reader.error(f"{'; '.join(unknown)}; choose one of {', '.join(sorted(actions))}")
    for argument in argv:
        match = _KEY_VALUE.match(argument)
        if argument.startswith("--") and argument not in ("--help",):
            flag = argument.split("=", 1)[0]
            action = next((a for a in actions.values() if flag in a.option_strings), None)
            if action is not None:
                print(f"note: {flag} is the old style and goes away in the next release; write "
                      f"{_key(action)}=<value>", file=sys.stderr)
            translated.append(argument)
            continue
        if match is None:
            translated.append(argument)
            continue
        key, value = match.groups()
        value = _unquoted(value)
        translated += _as_parsed(reader, actions[key], key, value)
    return translated


def _unquoted(value: str) -> str:
    """A value quoted as Hydra's commands need it (``"model='3d_fullres/baseline[...]'"``), without its quotes."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _as_parsed(parser: argparse.ArgumentParser, action: argparse.Action, key: str, value: str) -> list[str]:
    if not action.option_strings:  # a positional, given by its name
        return [value]
    flag = next(o for o in action.option_strings if o.startswith("--"))
    if action.nargs == 0:  # a switch
        if value.lower() not in (*_TRUE, *_FALSE):
            parser.error(f"{key}={value}: write {key}=true or {key}=false")
        return [flag] if value.lower() in _TRUE else []
    if action.nargs in ("*", "+"):
        return [flag, *(_unquoted(v.strip()) for v in value.strip("[]").split(",") if v.strip())]
    return [f"{flag}={value}"]
