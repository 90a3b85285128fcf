"""Gather-GEMM-scatter sparse convolution with a hand-written backward.

Weight layout: ``weight`` has shape ``(K, C_in, C_out)`` where ``K = kernel_size ** 3``
and offset ``k = (iz * ks + iy) * ks + ix`` -- z varies slowest, x fastest, as in
MinkowskiEngine (see :func:`pcseg.sparse.kernel_map.kernel_offsets`). For a pair
``(i, o)`` of offset ``k``: ``out[o] += in[i] @ weight[k]``.  The equivalent dense
``torch.nn.functional.conv3d`` weight on a ``(B, C, X, Y, Z)`` grid is
``w_dense[:, :, ix, iy, iz] = weight[k].T`` (and ``conv_transpose3d``:
``w_dense[:, :, ix, iy, iz] = weight[k]``).

Forward, per block of pairs (:meth:`KernelMap.chunks`): ``G = in.index_select(in_idx)``;
one ``mm`` per offset segment into a buffer ``Y``; ``out.index_add_(out_idx, Y)``.  The
submanifold centre offset is a plain ``in @ W[centre]`` with no gather.
Backward: ``grad_in = scatter(grad_out[out_idx] @ W[k]^T)`` and
``grad_W[k] = in[in_idx]^T @ grad_out[out_idx]`` (gathers recomputed, never stored).

Autocast: the op is decorated with ``torch.amp.custom_fwd/custom_bwd`` for the device of
the input; under autocast features and weight are cast to the autocast dtype (fp16 /
bf16) and the gradients are returned in the dtypes of the original inputs. With fp16 / bf16
operands each GEMM runs in that dtype, but the sums over kernel offsets (the scatter) and the
weight-gradient sums over blocks are accumulated in float32 and rounded once at the end.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .kernel_map import KernelMap

#: on CPU a block of gathered pairs holds at most this many elements (rows * channels),
#: 4 MiB of fp32. Scratch buffers are reused, so blocks cost no page faults. Two slots of
#: this size are the engine's only memory beyond its inputs and outputs: at 1 << 22
#: (16 MiB a slot) they were the ~25 MiB by which one 32 -> 32 conv on 100k voxels peaked
#: above spconv (62 vs 37 MiB, benchmark case a); at 1 << 20 it peaks at 34 MiB, and the
#: rows of a block are still more than the pairs of one kernel offset on such a level
BLOCK_ELEMS = 1 << 20
#: on accelerators blocks only bound the temporary memory (64 MB of fp32); fewer launches
BLOCK_ELEMS_GPU = 1 << 24


def _block_rows(cin: int, cout: int, device: torch.device) -> int:
    elems = BLOCK_ELEMS if device.type == "cpu" else BLOCK_ELEMS_GPU
    return max(elems // max(cin, cout, 1), 256)


class _Buffers(dict[tuple[int, torch.device, torch.dtype], Tensor]):
    """One thread's scratch buffers {(slot, device, dtype): 1-D tensor} (a dict subclass so
    that it can be weakly referenced: a finished thread's buffers are freed with it).
    Hashed and compared by identity, so that a WeakSet can hold it."""

    # typeshed declares dict.__hash__ as None (dicts are unhashable); identity hashing is the point
    __hash__ = object.__hash__  # type: ignore[assignment]
    __eq__ = object.__eq__


#: the scratch buffers of every live thread that ran a convolution (autograd runs CUDA
#: backward passes on its own device threads), so that one call can free them all
_ALL_BUFS: weakref.WeakSet[_Buffers] = weakref.WeakSet()
_ALL_BUFS_LOCK = threading.Lock()


class _Workspace(threading.local):
    """Per-thread scratch buffers reused across calls (no page faults from fresh large
    allocations on every block). Only temporaries live here, never autograd outputs."""

    def __init__(self) -> None:
        self.bufs = _Buffers()
        with _ALL_BUFS_LOCK:
            _ALL_BUFS.add(self.bufs)

    def get(self, slot: int, rows: int, cols: int, like: Tensor) -> Tensor:
        n = rows * cols
        key = (slot, like.device, like.dtype)
        buf = self.bufs.get(key)
        if buf is None or buf.numel() < n:
            # a normal tensor even under torch.inference_mode: a buffer made there could not
            # be written by a later convolution outside it (training after a prediction)
            with torch.inference_mode(False):
                buf = torch.empty(max(n, 1 << 16), dtype=like.dtype, device=like.device)
            self.bufs[key] = buf
        return buf[:n].view(rows, cols)


_WS = _Workspace()


def clear_workspace() -> None:
    """Free the scratch buffers of every thread (memory measurements, or to give memory
    back after a large scene). Call it while no convolution is running."""
    with _ALL_BUFS_LOCK:
        for bufs in list(_ALL_BUFS):
            bufs.clear()


def workspace_bytes() -> int:
    """Bytes held by the scratch buffers of all threads."""
    with _ALL_BUFS_LOCK:
        return sum(
            b.numel() * b.element_size() for bufs in list(_ALL_BUFS) for b in list(bufs.values())
        )


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sums over kernel offsets (and weight-gradient sums over blocks) run in float32 for
    fp16 / bf16 operands, as cuDNN and MinkowskiEngine do; other dtypes accumulate in place."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _segment_mm_scatter(
    a: Tensor,
    mats: tuple[Tensor, ...],
    segs: list[tuple[int, int, int]],
    y: Tensor,
    dst: Tensor,
    idx: Tensor,
    copy: bool,
) -> None:
    """``y[ra:rb] = a[ra:rb] @ mats[k]`` for every segment ``(k, ra, rb)``, then the rows of
    ``y`` go to ``dst[idx]`` (``index_copy_`` when ``idx`` is unique, else ``index_add_``);
    ``dst`` may be of a wider dtype than ``y`` (reduced-precision products, float32 sums)."""
    for k, ra, rb in segs:
        torch.mm(a[ra:rb], mats[k], out=y[ra:rb])
    if y.dtype != dst.dtype:
        y = _WS.get(2, y.shape[0], y.shape[1], dst).copy_(y)
    if copy:
        dst.index_copy_(0, idx, y)
    else:
        dst.index_add_(0, idx, y)


def _conv_forward(x: Tensor, w: Tensor, kmap: KernelMap, bias: Tensor | None = None) -> Tensor:
    """(n_in, C_in) x (K, C_in, C_out) -> (n_out, C_out); x and w of one dtype, contiguous.

    ``bias`` (C_out,) (inference path): the output starts from it (``addmm`` of the centre
    offset, or a broadcast fill instead of the zero fill), no separate pass."""
    cin, cout = w.shape[1], w.shape[2]
    ws = w.unbind(0)
    acc = _accumulation_dtype(x.dtype)
    b = bias.to(acc) if bias is not None else None
    if kmap.identity is not None:
        if b is not None and acc == x.dtype:
            out = torch.addmm(b, x, ws[kmap.identity])
            b = None
        else:
            out = torch.mm(x, ws[kmap.identity]).to(acc)  # widening and back is exact
    elif kmap.out_unique:
        out = x.new_empty((kmap.n_out, cout), dtype=acc)
    elif b is not None:
        out = b.expand(kmap.n_out, cout).contiguous()
        b = None
    else:
        out = x.new_zeros((kmap.n_out, cout), dtype=acc)
    if kmap.ptr[-1] == 0:
        if kmap.out_unique and kmap.identity is None:
            out.zero_()  # no pair reaches any output row
        return (out if b is None else out.add_(b)).to(x.dtype)
    copy = kmap.out_unique and kmap.identity is None
    for in_idx, out_idx, rows, segs in kmap.chunks(_block_rows(cin, cout, x.device)):
        g = torch.index_select(x, 0, in_idx, out=_WS.get(0, rows, cin, x))
        _segment_mm_scatter(g, ws, segs, _WS.get(1, rows, cout, x), out, out_idx, copy)
    if b is not None:
        out.add_(b)
    return out.to(x.dtype)


def _conv_backward(
    x: Tensor, w: Tensor, go: Tensor, kmap: KernelMap, need_x: bool, need_w: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients w.r.t. x (n_in, C_in) and w (K, C_in, C_out) given go (n_out, C_out).

    For fp16 / bf16 operands both gradients come back in float32 (accumulated in float32)."""
    cin, cout = w.shape[1], w.shape[2]
    gx: Tensor | None = None
    gw: Tensor | None = None
    acc = _accumulation_dtype(x.dtype)
    wts = w.transpose(1, 2).unbind(0)
    if need_w:
        gw = torch.zeros(w.shape, dtype=acc, device=w.device)
    if need_x:
        if kmap.identity is not None:
            gx = torch.mm(go, wts[kmap.identity]).to(acc)
        elif kmap.in_unique:
            gx = x.new_empty((kmap.n_in, cin), dtype=acc)
        else:
            gx = x.new_zeros((kmap.n_in, cin), dtype=acc)
    if gw is not None and kmap.identity is not None:  # gw is not None exactly when need_w
        gw[kmap.identity] = torch.mm(x.t(), go)
    if kmap.ptr[-1] == 0 or not (need_x or need_w):
        return gx, gw
    gws = gw.unbind(0) if gw is not None else None
    copy = kmap.in_unique and kmap.identity is None
    for in_idx, out_idx, rows, segs in kmap.chunks(_block_rows(cin, cout, x.device)):
        gout = torch.index_select(go, 0, out_idx, out=_WS.get(0, rows, cout, go))
        if gws is not None:
            gin_t = torch.index_select(x, 0, in_idx, out=_WS.get(1, rows, cin, x)).t()
            for k, ra, rb in segs:
                if acc == x.dtype:
                    gws[k].addmm_(gin_t[:, ra:rb], gout[ra:rb])
                else:  # reduced-precision product, float32 sum over the blocks
                    gws[k].add_(torch.mm(gin_t[:, ra:rb], gout[ra:rb]))
        if gx is not None:
            # slot 1 held the gathered inputs, fully consumed by the addmm_ calls above
            _segment_mm_scatter(gout, wts, segs, _WS.get(1, rows, cin, x), gx, in_idx, copy)
    return gx, gw


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except (RuntimeError, ValueError):
        return False


def _fwd(ctx: Any, feats: Tensor, weight: Tensor, kmap: KernelMap, device_type: str) -> Tensor:
    if _autocast_on(device_type):
        dt = torch.get_autocast_dtype(device_type)
    else:
        dt = torch.promote_types(feats.dtype, weight.dtype)
    x = feats.to(dt).contiguous()
    w = weight.to(dt).contiguous()
    ctx.kmap = kmap
    ctx.in_dtypes = (feats.dtype, weight.dtype)
    ctx.save_for_backward(x, w)
    return _conv_forward(x, w, kmap)


def _bwd(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
    x, w = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    go = grad_out.to(w.dtype).contiguous()
    gx, gw = _conv_backward(x, w, go, ctx.kmap, need_x, need_w)
    if gx is not None:
        gx = gx.to(ctx.in_dtypes[0])
    if gw is not None:
        gw = gw.to(ctx.in_dtypes[1])
    return gx, gw, None


_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _identity_decorator(f: Callable[..., Any]) -> Callable[..., Any]:
    return f


def _make_function(device_type: str) -> type[torch.autograd.Function]:
    fwd_deco: _Decorator
    bwd_deco: _Decorator
    try:
        fwd_deco = torch.amp.custom_fwd(device_type=device_type)
        bwd_deco = torch.amp.custom_bwd(device_type=device_type)
    except (RuntimeError, ValueError, AssertionError):  # a device type autocast does not know
        fwd_deco = bwd_deco = _identity_decorator

    class _SparseConv(torch.autograd.Function):
        @staticmethod
        @fwd_deco
        def forward(ctx: Any, feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
            return _fwd(ctx, feats, weight, kmap, device_type)

        @staticmethod
        @bwd_deco
        def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
            return _bwd(ctx, grad_out)

    _SparseConv.__name__ = _SparseConv.__qualname__ = f"SparseConv_{device_type}"
    return _SparseConv


_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {}


def _check_args(feats: Tensor, weight: Tensor, kmap: KernelMap) -> None:
    if feats.dim() != 2 or feats.shape[0] != kmap.n_in:
        raise ValueError(
            f"sparse_conv: feats must be ({kmap.n_in}, C_in), got {tuple(feats.shape)}"
        )
    if (
        weight.dim() != 3
        or weight.shape[0] != kmap.kernel_volume
        or weight.shape[1] != feats.shape[1]
    ):
        raise ValueError(
            f"sparse_conv: weight must be ({kmap.kernel_volume}, {feats.shape[1]}, C_out), "
            f"got {tuple(weight.shape)}"
        )
    if feats.device != kmap.device or weight.device != feats.device:
        raise ValueError(
            f"sparse_conv: feats on {feats.device}, weight on {weight.device}, "
            f"kernel map on {kmap.device}"
        )


def sparse_conv_inference(
    feats: Tensor, weight: Tensor, kmap: KernelMap, bias: Tensor | None = None
) -> Tensor:
    """Forward-only :func:`sparse_conv` plus ``bias`` (C_out,), for calls that record no
    graph (``torch.no_grad`` / ``torch.inference_mode``): no autograd node, no saved
    tensors, the bias written in the same pass as the products (see :func:`_conv_forward`).
    Under autocast the operands are cast to the autocast dtype as :func:`sparse_conv` does.
    Returns (n_out, C_out) features (the output dtype of :func:`sparse_conv`)."""
    _check_args(feats, weight, kmap)
    dev = feats.device.type
    if _autocast_on(dev):
        dt = torch.get_autocast_dtype(dev)
    else:
        dt = torch.promote_types(feats.dtype, weight.dtype)
    return _conv_forward(feats.to(dt).contiguous(), weight.to(dt).contiguous(), kmap, bias)


def sparse_conv(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """Sparse convolution ``out[o] = sum_k sum_{(i, o) in map_k} feats[i] @ weight[k]``.

    Args:
        feats: (n_in, C_in) floating features on the map's device.
        weight: (K, C_in, C_out), K = ``kmap.kernel_volume``, MinkowskiEngine offset order.
        kmap: the :class:`KernelMap` (from a :class:`CoordinateManager`).
    Returns:
        (n_out, C_out) features, in the autocast dtype under autocast, else the promoted
        dtype of ``feats`` and ``weight``.
    """
    _check_args(feats, weight, kmap)
    dev = feats.device.type
    fn = _FUNCTIONS.get(dev)
    if fn is None:
        fn = _FUNCTIONS[dev] = _make_function(dev)
    # torch's Function.apply is unannotated; it returns what forward returns
    apply: Callable[[Tensor, Tensor, KernelMap], Tensor] = fn.apply
    return apply(feats, weight, kmap)
