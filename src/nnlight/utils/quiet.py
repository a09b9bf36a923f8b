"""Third-party lines a normal run does not need, silenced where they arise: each filter names one message and the
module that emits it, so any other warning still shows. ``verbose=true`` on any command keeps them all."""

from __future__ import annotations

import warnings

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

# (message pattern, module that warns): each seen on a normal run, none of them actionable by a user of nnlight
THIRD_PARTY_NOISE = (
    # Lightning 2.6 calls a torch pytree check that torch deprecated (on every fit)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # nnlight logs per epoch; an epoch shorter than Lightning's step logging interval is no problem
    (r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning\.pytorch\.loops"),
)


def quiet_third_party_warnings() -> None:
    for message, module in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)


def verbose_requested(arguments: list[str]) -> bool:
    """Whether the command line says ``verbose=true``."""
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in arguments if "=" in a and not a.startswith("-")])
    except OverrideParseException:
        return False  # the command reports the mistake itself
    return any(o.get_key_element() == "verbose" and o.value() is True for o in parsed)
