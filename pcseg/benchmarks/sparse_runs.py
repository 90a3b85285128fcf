"""Which runs the sparse benchmark makes and how they are labelled.

:func:`configs` lists (label, implementation, threads, autocast) of every run;
:func:`amp_label` names the autocast run; :func:`ratio_labels` names the runs the ratios
compare (pcseg at ``--threads``, pcseg and spconv at one thread, ...).
"""

from __future__ import annotations


def amp_label(device: str, threads: int, amp: str) -> str:
    """Label of the autocast pcseg run: ``pcseg_<N>t_<amp>`` on CPU, ``pcseg_<amp>`` on CUDA."""
    return f"pcseg_{amp}" if device == "cuda" else f"pcseg_{threads}t_{amp}"


def configs(
    impls: list[str], device: str, threads: int, amp: str = "none"
) -> list[tuple[str, str, int, str]]:
    """(label, impl, threads, amp) of every run: on CPU pcseg at ``threads`` and at 1, spconv
    at 1 (its only correct setting unpatched) and at ``threads`` (with the patched scatter),
    MinkowskiEngine at ``threads``; on CUDA one run per implementation. All float32; with
    ``amp`` != 'none' one more pcseg run under autocast (label ``pcseg_<N>t_<amp>``, CUDA
    ``pcseg_<amp>``)."""
    out: list[tuple[str, str, int, str]] = []
    for impl in impls:
        if device == "cuda":
            out.append((impl, impl, threads, "none"))
        elif impl == "pcseg" or impl == "spconv":
            out.append((f"{impl}_{threads}t", impl, threads, "none"))
            if threads != 1:
                out.append((f"{impl}_1t", impl, 1, "none"))
        else:
            out.append((f"{impl}_{threads}t", impl, threads, "none"))
        if impl == "pcseg" and amp != "none":
            out.append((amp_label(device, threads, amp), impl, threads, amp))
    return out


def ratio_labels(device: str, threads: int) -> dict[str, str]:
    """Labels of the runs the ratios compare, as made by :func:`configs`: ``ours`` (pcseg at
    ``threads``, the reference of the table), ``ours_1t`` (pcseg at one thread), ``spconv_1t``,
    ``spconv_nt`` (spconv at ``threads``) and ``minkowski``. On CUDA each implementation has
    one run; with ``threads`` 1 the one-thread runs are the ``threads`` runs."""
    if device == "cuda":
        return {
            "ours": "pcseg",
            "ours_1t": "pcseg",
            "spconv_1t": "spconv",
            "spconv_nt": "spconv",
            "minkowski": "minkowski",
        }
    n = threads
    return {
        "ours": f"pcseg_{n}t",
        "ours_1t": f"pcseg_{n}t" if n == 1 else "pcseg_1t",
        "spconv_1t": f"spconv_{n}t" if n == 1 else "spconv_1t",
        "spconv_nt": f"spconv_{n}t",
        "minkowski": f"minkowski_{n}t",
    }
