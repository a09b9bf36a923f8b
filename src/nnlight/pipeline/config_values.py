"""Typed settings from config nodes: misspelt keys, unknown choices and wrong types become one clear error."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from omegaconf import DictConfig, OmegaConf

from nnlight.utils.errors import UserError

T = TypeVar("T")
_MISMATCH = object()
MISSING = "???"  # a mandatory value left unset, as OmegaConf gives it back


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (lists become tuples where a tuple is expected), or ``_MISMATCH``."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if hint is type(None):
        return None if value is None else _MISMATCH
    if origin is Literal:
        return value if any(value == a and type(value) is type(a) for a in get_args(hint)) else _MISMATCH
    if origin in (Union, types.UnionType):
        for arm in get_args(hint):
            converted = _convert(value, arm)
            if converted is not _MISMATCH:
                return converted
        return _MISMATCH
    if hint is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if hint is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _MISMATCH
    if hint is str:
        return value if isinstance(value, str) else _MISMATCH
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _MISMATCH
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return _MISMATCH
            items = [_convert(v, a) for v, a in zip(value, args, strict=True)]
        else:
            items = [_convert(v, args[0] if args else Any) for v in value]
        return _MISMATCH if any(i is _MISMATCH for i in items) else origin(items)
    if origin is dict or hint is dict:
        return value if isinstance(value, dict) else _MISMATCH
    return value


def describe_type(hint: Any) -> str:
    """``one of 'instance', 'batch'`` / ``a float`` / ``a list of int``: for error messages."""
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe_type(a) for a in get_args(hint))
    if origin in (tuple, list):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return f"a list of {describe_type(args[0]).removeprefix('a ').removeprefix('an ')}" if args else "a list"
    name = getattr(hint, "__name__", str(hint))
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def plain(node: DictConfig | None, resolve: bool = True) -> dict[str, Any]:
    """A config group as plain, resolved values: what the code below pipeline/ takes (it never reads a config)."""
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=resolve)
    assert isinstance(values, dict)  # a DictConfig holds a mapping
    return {str(k): v for k, v in values.items()}


def typed(cls: type[T], values: Mapping[str, Any], group: str = "") -> T:
    """The dataclass ``cls`` from plain ``values`` (a group's, or a command's own top-level values with ``group``
    empty), each key and value checked against its type hints; a mistake names ``group.key``."""
    prefix = f"{group}." if group else ""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # a dataclass; no type says so
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(f'{prefix}{k}' for k in unknown)}; "
                        f"valid: {', '.join(sorted(fields))}")
    converted_values = {}
    for key, value in values.items():
        if value == MISSING and fields[key].default is dataclasses.MISSING:
            raise UserError(f"{prefix}{key}=... is required")
        converted = _convert(value, hints[key])
        if converted is _MISMATCH:
            raise UserError(f"{prefix}{key}={value!r}: expected {describe_type(hints[key])}")
        converted_values[key] = converted
    try:
        return cls(**converted_values)
    except ValueError as e:  # a dataclass's own consistency check (__post_init__)
        raise UserError(f"{group or 'settings'}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Roots:
    """The stage folders' roots (``paths.*``: configs/paths/default.yaml)."""

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def from_values(cls, paths: Mapping[str, Any]) -> Roots:
        return cls(*(Path(str(paths[k])) for k in ("raw", "preprocessed", "results")))

    def export(self) -> None:
        """Processes this one starts (train.py, and the configs it composes) find the roots in the environment."""
        os.environ.update({"NNLIGHT_RAW": str(self.raw), "NNLIGHT_PREPROCESSED": str(self.preprocessed),
                           "NNLIGHT_RESULTS": str(self.results)})


def check_required(values: Mapping[str, Any], examples: Mapping[str, str]) -> None:
    """Each key of ``examples`` has a value (not ``???`` or null); a missing one is an error showing a command."""
    for key, example in examples.items():
        if values.get(key) in (None, MISSING):
            raise UserError(f"{key}=... is required, e.g. {example}")


def nonfinite_value(node: Any, prefix: str = "") -> str | None:
    """The first key (dotted) whose number is NaN or ±Inf, or None: a learning rate of ``nan`` would otherwise train
    to a "finished" run with NaN weights."""
    if isinstance(node, dict):
        return next((k for key, value in node.items() if (k := nonfinite_value(value, f"{prefix}{key}."))), None)
    if isinstance(node, (list, tuple)):
        return next((k for i, value in enumerate(node) if (k := nonfinite_value(value, f"{prefix}{i}."))), None)
    if isinstance(node, float) and not math.isfinite(node):
        return f"{prefix.rstrip('.')}={node}"
    return None


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The stage's config as plain values, interpolations resolved, Hydra's own node left out (and not resolved: a
    composed config's ``hydra`` node needs a running Hydra); a mandatory value left unset stays ``???``."""
    return plain(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]))
