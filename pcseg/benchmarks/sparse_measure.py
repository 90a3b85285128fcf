"""One measurement of the sparse benchmark, run in its own worker process.

:func:`measure` (the worker target, see :func:`pcseg.benchmarks.harness.run_worker`) times
one case x implementation x thread count: case a a sub-manifold convolution
(:func:`conv_steps`), cases b / c a MinkUNet training step (:func:`model_steps`).
:func:`impl_available` says why an implementation cannot run here.
"""

from __future__ import annotations

import time
from typing import Any

from pcseg.benchmarks.harness import PeakMemory, summarize, timed_ms
from pcseg.benchmarks.profiling import profile_step


def conv_steps(impl: str, coords: Any, feats: Any, C: int, dev: Any) -> dict[str, Any]:
    """Case a: ``kmap() -> ms`` (build the 3x3x3 sub-manifold kernel map from scratch),
    ``forward() -> out`` (map cached, as every conv after the first of a level) for a
    C -> C conv on ``coords`` (M, 4)."""
    import torch

    f = feats.requires_grad_(True)
    if impl == "pcseg":
        from pcseg.sparse import CoordinateManager, SparseTensor, SubMConv3d

        conv = SubMConv3d(C, C, 3).to(dev)
        x = SparseTensor(coords, f)

        def kmap() -> float:
            return timed_ms(lambda: CoordinateManager(coords).kernel_map(1, 1, 3, 1, "subm"), dev)[
                0
            ]

        return {
            "kmap": kmap,
            "forward": lambda: conv(x).feats,
            "versions": {"torch": torch.__version__},
        }
    if impl == "spconv":
        import spconv
        import spconv.pytorch as sp
        from spconv.pytorch import ops

        from pcseg.sparse.backend_spconv import coords_to_indices

        conv = sp.SubMConv3d(C, C, 3, bias=False, indice_key="k").to(dev)
        idx, shape, _ = coords_to_indices(coords)
        x_cached = conv(sp.SparseConvTensor(f, idx, shape, 1)).replace_feature(f)

        def kmap() -> float:
            return timed_ms(
                lambda: ops.get_indice_pairs(
                    idx,
                    1,
                    shape,
                    conv.algo,
                    conv.kernel_size,
                    conv.stride,
                    conv.padding,
                    conv.dilation,
                    conv.output_padding,
                    True,
                    False,
                ),
                dev,
            )[0]

        return {
            "kmap": kmap,
            "forward": lambda: conv(x_cached).features,
            "versions": {"spconv": spconv.__version__},
        }
    if impl == "minkowski":
        from pcseg.sparse.backend_minkowski import import_minkowski

        ME = import_minkowski()
        conv = ME.MinkowskiConvolution(C, C, kernel_size=3, stride=1, dimension=3).to(dev)
        ci = coords.int()
        x_cached = ME.SparseTensor(f, coordinates=ci)
        conv(x_cached)

        def kmap() -> float:
            # MinkowskiEngine builds the map inside the first forward on new coordinates:
            # (first forward on a fresh tensor) - (forward with the map cached)
            with torch.no_grad():
                fresh = timed_ms(lambda: conv(ME.SparseTensor(f.detach(), coordinates=ci)), dev)[0]
                cached = timed_ms(lambda: conv(x_cached), dev)[0]
            return max(fresh - cached, 0.0)

        return {
            "kmap": kmap,
            "forward": lambda: conv(x_cached).F,
            "versions": {"MinkowskiEngine": str(getattr(ME, "__version__", "?"))},
        }
    raise ValueError(f"unknown implementation {impl!r}")


def model_steps(
    impl: str, coords: Any, feats: Any, spec: dict[str, Any], dev: Any
) -> dict[str, Any]:
    """Cases b / c: MinkUNet ``forward() -> logits`` from the raw coordinates (every kernel
    map rebuilt, as in a training step) and ``backward(logits)`` of a cross-entropy loss."""
    import torch

    from pcseg.models import build_model
    from pcseg.sparse import SparseTensor

    backend = {"pcseg": "torch", "spconv": "spconv", "minkowski": "minkowski"}[impl]
    model = (
        build_model(
            spec["model"], int(spec["in_channels"]), int(spec["num_classes"]), backend=backend
        )
        .to(dev)
        .train()
    )
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, int(spec["num_classes"]), (coords.shape[0],), generator=g).to(dev)
    versions = {"torch": torch.__version__}
    if impl == "spconv":
        import spconv

        versions["spconv"] = spconv.__version__

    def forward() -> Any:
        return model(SparseTensor(coords, feats))[0]

    def backward(logits: Any) -> None:
        torch.nn.functional.cross_entropy(logits, target).backward()
        model.zero_grad(set_to_none=True)  # (an optimizer step would go here)

    return {"forward": forward, "backward": backward, "versions": versions}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement (case x implementation x threads) in this fresh process.

    Runs ``warmup`` untimed iterations, then times (ms) ``repeats`` iterations; memory is the
    RSS high-water mark over the timed iterations (reset after the warm-up) minus the RSS at
    that point, or on CUDA ``torch.cuda.max_memory_allocated`` likewise.
    """
    import torch

    impl, case, dev = spec["impl"], spec["case"], torch.device(spec["device"])
    torch.set_num_threads(int(spec["threads"]))
    if impl == "spconv":
        from pcseg.sparse.backend_spconv import patch_spconv_cpu

        patch_spconv_cpu()
    data = torch.load(spec["inputs"])
    coords, feats = data["coords"].to(dev), data["feats"].to(dev)
    torch.manual_seed(0)
    if case == "a":
        C = int(spec["channels"])
        feats = torch.randn(coords.shape[0], C, device=dev)
        gout = torch.randn(coords.shape[0], C, device=dev)
        step = conv_steps(impl, coords, feats, C, dev)
    else:
        step = model_steps(impl, coords, feats, spec, dev)

    amp = spec.get("amp", "none")
    if amp != "none":  # forward under autocast; backward follows the dtypes it recorded
        fwd = step["forward"]
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]

        def amp_forward() -> Any:
            with torch.autocast(dev.type, dtype=dtype):
                return fwd()

        step["forward"] = amp_forward

    def iteration() -> dict[str, float]:
        rec: dict[str, float] = {}
        c0 = time.process_time()
        if case == "a":
            rec["kmap"] = step["kmap"]()
            rec["forward"], y = timed_ms(step["forward"], dev)
            rec["backward"], _ = timed_ms(lambda: y.backward(gout), dev)
        else:
            rec["forward"], logits = timed_ms(step["forward"], dev)
            rec["backward"], _ = timed_ms(lambda: step["backward"](logits), dev)
            rec["total"] = rec["forward"] + rec["backward"]
        # CPU time of the process (all threads): robust to a busy machine for 1-thread runs
        rec["cpu"] = (time.process_time() - c0) * 1e3
        return rec

    for _ in range(int(spec["warmup"])):
        iteration()
    head = {
        "impl": impl,
        "case": case,
        "threads": int(spec["threads"]),
        "device": str(dev),
        "voxels": int(coords.shape[0]),
    }
    if spec.get("mode") == "profile":
        return {**head, "profile": profile_step(iteration, dev)}
    # memory baseline after the warm-up: one-time costs (library buffers, thread pools)
    # excluded; pcseg's reusable scratch buffers are freed first, so the measured peak
    # includes them
    if impl == "pcseg":
        from pcseg.sparse.functional import clear_workspace

        clear_workspace()
    times: dict[str, list[float]] = {}
    with PeakMemory(dev) as mem:
        for _ in range(int(spec["repeats"])):
            for k, v in iteration().items():
                times.setdefault(k, []).append(v)
    return {
        **head,
        "times_ms": times,
        "median_ms": {k: summarize(v)["median"] for k, v in times.items()},
        **mem.as_dict(),
        "versions": step.get("versions", {}),
    }


def impl_available(impl: str, device: str) -> str | None:
    """None if ``impl`` can run on ``device`` here, else the reason it is skipped."""
    import importlib.util

    if impl == "pcseg":
        return None
    if impl == "spconv":
        if importlib.util.find_spec("spconv") is None:
            return "spconv not installed"
        if device == "cuda":
            from spconv.cppconstants import CPU_ONLY_BUILD

            if CPU_ONLY_BUILD:
                return "the installed spconv is the CPU-only build"
        return None
    if impl == "minkowski":
        from pcseg.sparse.backends import BackendUnavailableError

        try:
            from pcseg.sparse.backend_minkowski import import_minkowski

            import_minkowski()
        except BackendUnavailableError:
            return "MinkowskiEngine not importable (see pcseg.sparse.backends.MINKOWSKI_INSTALL)"
        return None
    return f"unknown implementation {impl!r}"
