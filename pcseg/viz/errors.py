"""The errors of ``pcseg view`` that are the user's to fix, not bugs: ``pcseg.cli.main`` prints
their message as one line and exits 2."""

from __future__ import annotations


class ViewError(ValueError):
    """Bad input to a view: a path that is no processed folder, run or scene, an unknown
    scene, mode, view or class, a malformed file (the message names it)."""


class DisplayUnavailable(RuntimeError):
    """No display (interactive viewer) or no off-screen context (renders); the message says
    what to install or to use instead."""
