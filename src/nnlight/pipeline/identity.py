"""A run's identity: what determines its trained weights — the plan, the data (fold, sampling), the resolved method
(each class by import path with its arguments), optimizer, schedule, budget, precision, seed.

Left out: where files go, worker counts, devices, loggers (``configs/hydra/train.yaml``'s ``exclude_keys``) and
the evaluation-only settings (:data:`EVALUATION_ONLY`: the per-case metrics and the end-of-training validation),
which change what is reported about a run, never its weights. Two configs with the same identity are one run,
however they were typed. Runs recorded before the evaluation-only settings left the identity are still theirs:
:func:`current_identity` reads a recorded identity under today's rule (the migration, tested).

Kept free of torch and Lightning: the resolvers that name a run folder use it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

EVALUATION_ONLY = ("metrics", "validation")
# settings added to a group since runs were first recorded, with the value that trains as those runs did:
# (group, a key only that group's built-in options have, the new key, its default)
ADDED_SETTINGS = (("loss", "name", "class_weights", None),)


def config_hash(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def without_keys(values: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``values`` less the dotted ``keys`` (a key names a leaf or a whole group)."""
    identity = copy.deepcopy(dict(values))
    for key in keys:
        *parents, leaf = key.split(".")
        node: Any = identity
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return identity


def run_identity(values: Mapping[str, Any], ignored: Iterable[str]) -> dict[str, Any]:
    """The resolved config less the keys that by design do not change what is trained (``ignored``: the run name's
    exclusions) and the evaluation-only settings."""
    return without_keys(values, [*ignored, *EVALUATION_ONLY])


def current_identity(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded identity (``run_config.json``'s ``config``) under today's rule: one written before the
    evaluation-only settings were left out loses them now; one written before a setting existed gets its default
    (:data:`ADDED_SETTINGS`)."""
    identity = without_keys(recorded, EVALUATION_ONLY)
    for group, marker, key, default in ADDED_SETTINGS:
        values = identity.get(group)
        if isinstance(values, dict) and marker in values and key not in values:
            values[key] = default
    return identity


def model_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """What the folds of one model share: the identity without the fold."""
    return without_keys(identity, ["data.fold"])
