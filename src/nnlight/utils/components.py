"""Components named by ``_target_`` in a config group (optimizer, scheduler, callbacks, loggers), checked.

A target must name a *class* of the kind its group expects (a torch Optimizer, an LR scheduler, a Lightning
Callback or Logger) — a user's own subclass works without touching nnlight, a function or an unrelated
class is refused. Arguments are plain values: a nested ``_target_`` is refused, and every key must be an
argument of the class, so a misspelt one is named with the valid ones before anything runs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nnlight.utils.errors import UserError

_HYDRA_KEYS = ("_target_", "_partial_")


def locate_class(target: str, where: str) -> type:
    """The class a dotted path names: its module is imported, nothing is called."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute, None)
        if obj is not None:
            return obj
        break
    raise UserError(f"{where}._target_={target!r}: no such class (is the package installed and the path spelt "
                    "right?)")


def _nested_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_target_" in value or any(_nested_target(v) for v in value.values())
    if isinstance(value, Sequence) and not isinstance(value, str):
        return any(_nested_target(v) for v in value)
    return False


@dataclass(frozen=True)
class Component:
    """A checked class and its keyword arguments."""

    cls: type
    arguments: dict[str, Any]
    where: str

    def create(self, *args: Any, **extra: Any) -> Any:
        try:
            return self.cls(*args, **self.arguments, **extra)
        except (TypeError, ValueError, ImportError, ModuleNotFoundError) as e:
            hint = " If a package is missing, install it (see the comment at the top of the config file)." \
                if isinstance(e, ImportError) else ""
            given = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
            raise UserError(f"{self.where} ({self.cls.__module__}.{self.cls.__qualname__}) could not be created "
                            f"with {given or 'no arguments'}: {e}.{hint}") from None

    def factory(self) -> Callable[..., Any]:
        """``create`` with the arguments bound: the optimizer receives parameters, the scheduler an optimizer."""
        return functools.partial(self.create)


def component(node: Mapping[str, Any], where: str, base: type) -> Component:
    """The ``_target_`` class of ``node`` (plain values: pipeline/ resolves the config; a subclass of ``base``) with
    the node's other keys as arguments."""
    values = dict(node)
    target = values.get("_target_")
    if not isinstance(target, str):
        raise UserError(f"{where}: needs _target_: <a {base.__name__} class>")
    cls = locate_class(target, where)
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise UserError(f"{where}._target_={target!r} is not a {base.__module__}.{base.__qualname__} class; only "
                        f"such classes can be used here")
    arguments = {k: v for k, v in values.items() if k not in _HYDRA_KEYS}
    if _nested_target(arguments):
        raise UserError(f"{where}: arguments may not contain another _target_ (only plain values)")
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(arguments) - set(parameters))
        if unknown:
            valid = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
            raise UserError(f"{where}: {cls.__qualname__} has no argument(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(valid)}")
    return Component(cls, arguments, where)


def components(group: Mapping[str, Any] | None, where: str, base: type) -> list[Component]:
    """Every entry of a ``name: {_target_: ..., args}`` group (callbacks, loggers), in config order."""
    return [component(entry, f"{where}.{name}", base) for name, entry in (group or {}).items()]


def planned_component(node: Mapping[str, Any], where: str, base: type, facts: Mapping[str, str],
                      own_keys: Sequence[str] = ()) -> tuple[Component, dict[str, str]]:
    """A component some of whose constructor arguments come from the plan: ``from_plan: {argument: fact}`` with
    ``fact`` one of ``facts`` (name -> what it is). Dataset facts never come from a method option, so a key that
    names a fact (or an argument ``from_plan`` fills) is refused, and every required argument must be given by
    one or the other. ``own_keys`` are the group's keys that are not arguments (read by the caller)."""
    from_plan = node.get("from_plan") or {}
    if not isinstance(from_plan, Mapping) or not all(isinstance(v, str) for v in from_plan.values()):
        raise UserError(f"{where}.from_plan: a mapping constructor argument -> plan fact, e.g. "
                        "{in_channels: input_channels}")
    arguments = {k: v for k, v in node.items() if k not in ("from_plan", *own_keys)}
    checked = component(arguments, where, base)
    unknown = sorted(set(from_plan.values()) - set(facts))
    if unknown:
        raise UserError(f"{where}.from_plan: {', '.join(unknown)} is not a plan fact; choose from {', '.join(facts)}")
    given_twice = sorted(set(checked.arguments) & (set(facts) | set(from_plan)))
    if given_twice:
        key = given_twice[0]
        mapped = "" if key in from_plan else f" and take it from the plan: from_plan: {{<argument>: {key}}}"
        raise UserError(f"{where}.{key}: comes from the plan (a dataset fact), not from an option; remove it{mapped}")
    parameters = inspect.signature(checked.cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    not_arguments = sorted(a for a in from_plan if a not in parameters)
    if not_arguments and not takes_any:
        raise UserError(f"{where}.from_plan: {checked.cls.__qualname__} has no argument(s) {', '.join(not_arguments)}")
    missing = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in checked.arguments
               and n not in from_plan]
    if missing:
        raise UserError(f"{where}: {checked.cls.__qualname__} needs {', '.join(missing)}: give "
                        f"{where}.{missing[0]}=... or take it from the plan (from_plan: {{{missing[0]}: <fact>}}; "
                        f"facts: {', '.join(facts)})")
    return checked, dict(from_plan)
