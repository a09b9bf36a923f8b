"""Typed settings from config nodes: misspelt keys, unknown choices and wrong types become one clear error."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nnlight.utils.errors import UserError

T = TypeVar("T")
_MISMATCH = object()


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


def plain_list(value: Any) -> list[Any]:
    """A value given as one item or as a list (``folds=0`` or ``folds=[0,1]``) as a plain list."""
    if OmegaConf.is_list(value):
        items = OmegaConf.to_container(value, resolve=True)
        assert isinstance(items, list)
        return items
    return [value]


def settings_from_config(cls: type[T], node: DictConfig, group: str) -> T:
    """Build the dataclass ``cls`` from ``node``, checking every key and value against its type hints."""
    values = plain(node)
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # a dataclass; no type says so
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(f'{group}.{k}' for k in unknown)}; "
                        f"valid: {', '.join(sorted(fields))}")
    for key, value in values.items():
        converted = _convert(value, hints[key])
        if converted is _MISMATCH:
            raise UserError(f"{group}.{key}={value!r}: expected {describe_type(hints[key])}")
        values[key] = converted
    try:
        return cls(**values)
    except ValueError as e:  # a dataclass's own consistency check (__post_init__)
        raise UserError(f"{group}: {e}") from None


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
    composed config's ``hydra`` node needs a running Hydra)."""
    return {str(key): OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
            for key, node in ((k, cfg[k]) for k in cfg if k != "hydra")}


def check_finite_values(cfg: DictConfig) -> None:
    """Every number of the config is finite (checked before anything is written)."""
    bad = nonfinite_value(resolved_config(cfg))
    if bad:
        raise UserError(f"{bad}: not a finite number; every training value must be finite (a NaN or Inf "
                        "learning rate, weight or probability trains nothing meaningful)")


def required(cfg: DictConfig, key: str, example: str) -> Any:
    """``cfg[key]``; a value left at ``???`` (or null) is an error that shows a full command."""
    try:
        value = cfg[key]
    except MissingMandatoryValue:
        value = None
    if value is None:
        raise UserError(f"{key}=... is required, e.g. {example}")
    return value
