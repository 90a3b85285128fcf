"""Training methods: each turns model outputs + a batch into named loss terms.

``METHODS`` maps a config name to the method class. Every class declares its keyword
options once, as the pydantic model ``Options`` (types, defaults, ranges; unknown names
rejected); :func:`method_options` returns it (the config validates the method section
through it) and :func:`build_method` validates the options through it before
constructing. Add a method by adding an entry.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from pcseg.methods.base import Method
from pcseg.methods.common import resolve_options
from pcseg.methods.erda import ERDA
from pcseg.methods.erda_u2pl import ERDAWithU2PLNegatives
from pcseg.methods.pseudo_threshold import PseudoThreshold
from pcseg.methods.supervised import SupervisedOnly
from pcseg.methods.u2pl import U2PL

#: name -> method class (constructor ``(num_classes, feature_dim, options=None, **options)``)
METHODS: dict[str, type[Method]] = {
    "supervised": SupervisedOnly,
    "erda": ERDA,
    "pseudo_threshold": PseudoThreshold,
    "u2pl": U2PL,
    "erda_u2pl": ERDAWithU2PLNegatives,
}


def _method_class(name: str) -> type[Method]:
    if name not in METHODS:
        hint = difflib.get_close_matches(str(name), list(METHODS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown method {name!r}{extra}; valid names: {sorted(METHODS)}")
    return METHODS[name]


def method_options(name: str) -> type[BaseModel]:
    """The options model (pydantic, ``extra="forbid"``) of method ``name``.

    Raises:
        ValueError: unknown name, with a did-you-mean and the valid names.
    """
    return _method_class(name).Options


def build_method(
    name: str,
    num_classes: int,
    feature_dim: int,
    options: BaseModel | None = None,
    **values: Any,
) -> Method:
    """Construct the method registered under ``name``.

    Args:
        name: a key of :data:`METHODS`.
        num_classes: K, number of segmentation classes.
        feature_dim: D, width of the model's last decoder features.
        options: an instance of the method's ``Options`` (e.g. a config's ``cfg.method``),
            used as is; or
        **values: method options (e.g. ``weight=0.1, variant="erda"`` for ERDA), validated
            through the method's ``Options`` model.
    Raises:
        ValueError: unknown name (listing the valid ones), unknown option (naming it, with
            a did-you-mean and the accepted ones) or a bad value (naming the option and
            what was expected).
    """
    cls = _method_class(name)
    opts = resolve_options(cls.Options, name, options, values)
    return cls(num_classes, feature_dim, opts)  # type: ignore[call-arg]


__all__ = [
    "ERDA",
    "METHODS",
    "U2PL",
    "ERDAWithU2PLNegatives",
    "Method",
    "PseudoThreshold",
    "SupervisedOnly",
    "build_method",
    "method_options",
]
