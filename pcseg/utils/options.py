"""Readable messages for a failed validation of a typed options model (pydantic): the
method options (:mod:`pcseg.methods.common`) and the reader options
(:mod:`pcseg.readers.common`) report through these."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


def model_fields_at(cls: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """Field names of the (nested) model reached from ``cls`` by the field names ``path``
    (an error's location minus its last element); [] when ``path`` leads to no model."""
    model: Any = cls
    for part in path:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        model = next(
            (a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
    return list(getattr(model, "model_fields", {}))


def options_error_message(cls: type[BaseModel], who: str, error: ValidationError) -> str:
    """One readable line per problem of a failed validation of ``cls``: an unknown option
    with a did-you-mean and the accepted ones, or the option, what was expected and the
    value given. ``who`` (e.g. the method or reader name) starts every line."""
    lines = []
    for e in error.errors():
        loc = [p for p in e["loc"] if isinstance(p, (str, int))]
        where = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            accepted = model_fields_at(cls, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), accepted, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            lines.append(
                f"{who}: unknown option(s) [{where!r}]{extra}; accepted options: {accepted}"
            )
            continue
        what = e["msg"].removeprefix("Value error, ")
        lines.append(
            f"{who}: option {where!r}: {what}, got {e['input']!r}" if where else f"{who}: {what}"
        )
    return "\n".join(lines)
