"""Training methods: each turns model outputs + a batch into named loss terms.

``METHODS`` maps a config name to the class that builds it (constructor
``(num_classes, feature_dim, **options)``); add a method by adding an entry.
``build_method`` checks the name and the options before constructing.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from pcseg.methods.base import Method
from pcseg.methods.erda import ERDA
from pcseg.methods.erda_u2pl import ERDAWithU2PLNegatives
from pcseg.methods.pseudo_threshold import PseudoThreshold
from pcseg.methods.supervised import SupervisedOnly
from pcseg.methods.u2pl import U2PL

#: name -> builder ``(num_classes, feature_dim, **options) -> Method``
METHODS: dict[str, Callable[..., Method]] = {
    "supervised": SupervisedOnly,
    "erda": ERDA,
    "pseudo_threshold": PseudoThreshold,
    "u2pl": U2PL,
    "erda_u2pl": ERDAWithU2PLNegatives,
}


def method_options(name: str) -> list[str]:
    """Names of the keyword options accepted by method ``name`` (beyond the two sizes)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid names: {sorted(METHODS)}")
    params = inspect.signature(METHODS[name]).parameters
    return [p for p in params if p not in ("num_classes", "feature_dim", "self")]


def build_method(name: str, num_classes: int, feature_dim: int, **kwargs: Any) -> Method:
    """Construct the method registered under ``name``.

    Args:
        name: a key of :data:`METHODS`.
        num_classes: K, number of segmentation classes.
        feature_dim: D, width of the model's last decoder features.
        **kwargs: method options (e.g. ``weight=0.1, variant="erda"`` for ERDA).
    Raises:
        ValueError: unknown name (listing the valid ones) or unknown option (naming it and
            listing the accepted ones).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid names: {sorted(METHODS)}")
    builder = METHODS[name]
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any:
        valid = method_options(name)
        unknown = sorted(k for k in kwargs if k not in valid)
        if unknown:
            raise ValueError(
                f"method {name!r} got unknown option(s) {unknown}; accepted options: {valid}"
            )
    return builder(num_classes, feature_dim, **kwargs)


__all__ = ["METHODS", "Method", "build_method", "method_options", "ERDA", "ERDAWithU2PLNegatives", "PseudoThreshold", "SupervisedOnly", "U2PL"]
