"""Typed settings from config nodes: misspelt keys and wrong types become one clear error."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nnlight.utils.errors import UserError

T = TypeVar("T")


def _type_ok(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple))
    return True


def settings_from_config(cls: type[T], node: DictConfig, group: str) -> T:
    """Build the dataclass ``cls`` from ``node``; lists become tuples where the default is a tuple."""
    values: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(f'{group}.{k}' for k in unknown)}; "
                        f"valid: {', '.join(sorted(fields))}")
    defaults = cls()
    for key, value in values.items():
        default = getattr(defaults, key)
        if not _type_ok(value, default):
            raise UserError(f"{group}.{key}={value!r}: expected a {type(default).__name__} like {default!r}")
        if isinstance(default, tuple):
            values[key] = tuple(value)
    return cls(**values)


def required(cfg: DictConfig, key: str, example: str) -> Any:
    """``cfg[key]``; a value left at ``???`` (or null) is an error that shows a full command."""
    try:
        value = cfg[key]
    except MissingMandatoryValue:
        value = None
    if value is None:
        raise UserError(f"{key}=... is required, e.g. {example}")
    return value
