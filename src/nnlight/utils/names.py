"""Names read from files or the command line that become parts of a path, checked before any path is built.

A model file, a plan, a manifest or an override is data someone else may have written: a value that lands in a
path is a plain name (``DatasetXXX_Name``, ``3d_fullres``, ``fold_0``, ...), never ``..``, ``/`` or an absolute
path, and the path built from it is checked to lie inside its root. See DESIGN.md, rule 16.
"""

from __future__ import annotations

import re
from pathlib import Path

from nnlight.utils.errors import UserError

DATASET_NAME = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_.-]*)$")
# configuration and plans names (3d_fullres, 3d_fullres_nnUNetResEncUNetLPlans, nnUNetPlans)
CONFIGURATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FOLD = re.compile(r"^(\d+|all)$")
MAX_NAME_BYTES = 255  # a file name's length limit on common file systems
# the characters of a folder name nnlight writes or reads (run names: <experiment>[key=value,...#hash]): ASCII only,
# so no homoglyph or right-to-left override can make one name look like another, and none a shell treats specially
NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-=,[]#~+:{}%@")


# a value's characters in a run name: none a shell or Hydra's override grammar treats specially ("+" separates items)
NAME_VALUE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:%@-")


def model_argument(folder: Path) -> str:
    """``model=<folder>`` as a shell and Hydra read it: plain for today's names, quoted for a folder named by an
    earlier nnlight (``[``, ``,``, ``=`` in it)."""
    plain_characters = NAME_VALUE_CHARACTERS | set("/+")
    return f"model={folder}" if set(str(folder)) <= plain_characters else f"\"model='{folder}'\""


def folder_name(value: object, what: str) -> str:
    """``value`` as one path part (a run folder's ``<experiment>[<differences>]`` may hold ``=``, ``,``, ``[``, ...);
    a ``UserError`` naming ``what`` (the key or file it came from) otherwise."""
    problem = None
    if not isinstance(value, str) or not value:
        problem = "not a non-empty text"
    elif value.startswith("."):
        problem = "starts with '.'"
    elif any(c in value for c in "/\\") or any(ord(c) < 32 for c in value):
        problem = "holds '/', '\\' or a control character"
    elif not set(value) <= NAME_CHARACTERS:
        unusual = "".join(sorted(set(value) - NAME_CHARACTERS))
        problem = f"holds {unusual!r}: names are ASCII letters, digits and _.-=,[]#~+:{{}}%@"
    elif len(value.encode()) > MAX_NAME_BYTES:
        problem = f"longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise UserError(f"{what}={value!r}: not a plain folder name ({problem}); nnlight never builds a path from it")
    return str(value)


def dataset_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not DATASET_NAME.match(value):
        raise UserError(f"{what}={value!r}: not a dataset name (DatasetXXX_Name: three digits, then letters, digits, "
                        "'_', '.', '-')")
    return value


def configuration_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not CONFIGURATION_NAME.match(value) or len(value) > 200:
        raise UserError(f"{what}={value!r}: not a configuration name (letters, digits, '_', '.', '-', e.g. "
                        "3d_fullres)")
    return value


def fold_name(value: object, what: str) -> str:
    text = str(value)
    if isinstance(value, bool) or not FOLD.match(text):
        raise UserError(f"{what}={value!r}: not a fold (a number, or all)")
    return text


def model_name(value: object, what: str) -> str:
    """``<configuration>/<experiment>`` under a dataset's results: two plain parts."""
    parts = str(value).split("/") if isinstance(value, str) else []
    if len(parts) != 2:
        raise UserError(f"{what}={value!r}: not a model name (<configuration>/<experiment>)")
    configuration_name(parts[0], what)
    folder_name(parts[1], what)
    return str(value)


def inside(root: Path, path: Path, what: str) -> Path:
    """``path`` resolved (links followed), refused unless it lies inside ``root`` (resolved too)."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise UserError(f"{what}: {path} lies outside {root}; nnlight writes only inside its configured folders")
    return resolved
