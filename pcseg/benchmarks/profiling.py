"""Time breakdown of one benchmark iteration under ``torch.profiler``.

:func:`profile_step` sums the self time of the profiled ops per :data:`PROFILE_CATEGORIES`
category (GEMM, gather, scatter, kernel map, BatchNorm, ...) and counts the GEMM work
(:func:`gemm_flops`) from the recorded input shapes (``pcseg benchmark sparse --profile``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pcseg.benchmarks.harness import sync

#: torch.profiler op names per category of the time breakdown (``--profile``)
PROFILE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "gemm": (
        "aten::mm",
        "aten::addmm_",
        "aten::addmm",
        "aten::bmm",
        "aten::baddbmm",
        "aten::matmul",
    ),
    "gather": ("aten::index_select", "aten::index", "aten::gather"),
    "scatter": (
        "aten::scatter_add_",
        "aten::index_add_",
        "aten::index_copy_",
        "aten::index_put_",
        "aten::_index_put_impl_",
        "aten::scatter_reduce_",
    ),
    "kernel_map": (
        "aten::searchsorted",
        "aten::sort",
        "aten::unique_dim",
        "aten::_unique2",
        "aten::unique_consecutive",
        "aten::nonzero",
        "aten::bincount",
        "aten::argsort",
        "aten::bitwise_and",
        "aten::bitwise_or",
        "aten::bitwise_right_shift",
        "aten::bitwise_left_shift",
        "aten::__rshift__",
        "aten::__lshift__",
        "aten::eq",
        "aten::ne",
        "aten::clamp_",
        "aten::cumsum",
        "aten::arange",
        "aten::remainder",
        "aten::floor_divide",
        "aten::div",
        "aten::masked_select",
        "aten::where",
    ),
    "batchnorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "relu_add_cat": (
        "aten::relu_",
        "aten::relu",
        "aten::clamp_min_",
        "aten::clamp_min",
        "aten::threshold_backward",
        "aten::add",
        "aten::add_",
        "aten::cat",
    ),
    "alloc_fill": (
        "aten::empty",
        "aten::zeros",
        "aten::zero_",
        "aten::fill_",
        "aten::new_zeros",
        "aten::new_empty",
        "aten::empty_like",
        "aten::zeros_like",
        "aten::copy_",
        "aten::to",
        "aten::_to_copy",
        "aten::contiguous",
        "aten::clone",
    ),
    "loss_head": (
        "aten::_log_softmax",
        "aten::_log_softmax_backward_data",
        "aten::nll_loss_forward",
        "aten::nll_loss_backward",
        "aten::linear",
        "aten::t",
    ),
    # spconv's C++ gather / scatter-add loops and pair generation run inside these autograd
    # functions (self time), its GEMMs are aten::mm
    "spconv_cpp_gather_scatter_pairs": (
        "SubMConvFunction",
        "SubMConvFunctionBackward",
        "SparseConvFunction",
        "SparseConvFunctionBackward",
        "SparseInverseConvFunction",
        "SparseInverseConvFunctionBackward",
    ),
}


def gemm_flops(name: str, shapes: list[list[int]]) -> int:
    """Floating-point operations (2 M K N) of one GEMM op call from its profiler input shapes:
    ``aten::mm`` (M,K),(K,N); ``aten::addmm`` / ``aten::addmm_`` (M,N),(M,K),(K,N); others 0."""
    if name == "aten::mm" and len(shapes) >= 2 and len(shapes[0]) == 2 and len(shapes[1]) == 2:
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if (
        name in ("aten::addmm", "aten::addmm_")
        and len(shapes) >= 3
        and len(shapes[1]) == 2
        and len(shapes[2]) == 2
    ):
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    return 0


def profile_step(run: Callable[[], Any], dev: Any) -> dict[str, Any]:
    """Self time (s) per :data:`PROFILE_CATEGORIES` category of one ``run()`` under
    torch.profiler, plus the GEMM work: ``gemm_gflop`` (from the recorded input shapes, see
    :func:`gemm_flops`), ``gemm_gflop_per_s`` (over the GEMM category's self time) and
    ``vs_gemm_limit``: the profiled time over the GEMMs' own (the step's ratio to its
    GEMM-bound limit, the GEMMs running at ``torch.mm``'s rate)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        t0 = time.perf_counter()
        run()
        sync(dev)
        wall = time.perf_counter() - t0
    lookup = {name: cat for cat, names in PROFILE_CATEGORIES.items() for name in names}
    cats: dict[str, float] = {}
    other: dict[str, float] = {}
    for e in prof.key_averages():
        t = (e.self_device_time_total if dev.type == "cuda" else e.self_cpu_time_total) / 1e6
        if t <= 0:
            continue
        cat = lookup.get(e.key)
        if cat is None:
            other[e.key] = other.get(e.key, 0.0) + t
        else:
            cats[cat] = cats.get(cat, 0.0) + t
    cats["other"] = sum(other.values())
    total = sum(cats.values())
    gflop = (
        sum(
            e.count * gemm_flops(e.key, e.input_shapes)
            for e in prof.key_averages(group_by_input_shape=True)
        )
        / 1e9
    )
    gemm_s = cats.get("gemm", 0.0)
    return {
        "wall_s": wall,
        "profiled_self_s": total,
        "seconds": cats,
        "gemm_gflop": gflop,
        "gemm_gflop_per_s": gflop / gemm_s if gemm_s > 0 else None,
        # the GEMMs run at torch.mm's rate, so their own time is the GEMM-bound limit
        "vs_gemm_limit": total / gemm_s if gemm_s > 0 else None,
        "percent": {k: 100 * v / total for k, v in cats.items()} if total else {},
        "other_top": dict(sorted(other.items(), key=lambda kv: -kv[1])[:8]),
    }
