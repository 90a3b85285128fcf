"""Check a CUDA machine in one command: ``python -m pcseg.benchmarks.gpu_check``.

1. torch / CUDA versions and the device name;
2. ``pytest -m gpu`` (the GPU tests of the checkout, in a subprocess);
3. the sparse benchmark on CUDA, pcseg vs spconv, case b (MinkUNet34C forward + backward on
   a synthetic room at 2 cm), with the pcseg / spconv ratios and peak memory;
4. a ``--iterations`` (200) MinkUNet34C training under autocast on synthetic S3DIS rooms
   (pcseg.readers.synthetic.write_synthetic_s3dis -> pcseg.readers.prepare.prepare_dataset
   into a temporary folder -> pcseg.engine.trainer.train with configs/demo/supervised.yaml),
   printing iterations/s and peak memory.

Every step runs under what is left of ``--budget`` seconds (default 450, under 8 minutes in
all). Exit code 0 when every step passed, 1 when one failed or ran out of time, 2 (with a
one-line message) on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pcseg.benchmarks.harness import PACKAGE_ROOT, run_worker

#: the config the training step starts from (relative to the checkout)
DEMO_CONFIG = PACKAGE_ROOT / "configs" / "demo" / "supervised.yaml"
#: worker target of the training step
TRAIN_WORKER = "pcseg.benchmarks.gpu_check:train_job"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m pcseg.benchmarks.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all steps")
    p.add_argument("--iterations", type=int, default=200, help="training iterations")
    p.add_argument(
        "--amp-dtype",
        choices=("bf16", "fp16"),
        default="bf16",
        help="autocast dtype of the training step",
    )
    p.add_argument(
        "--max-voxels", type=int, default=50_000, help="training crop size (data.max_voxels)"
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=("pytest", "sparse", "train"),
        help="steps to leave out",
    )
    return p.parse_args(None if argv is None else list(argv))


def train_overrides(
    root: Path, run_dir: Path, device: str, iterations: int, amp_dtype: str, max_voxels: int | None
) -> list[str]:
    """``key=value`` overrides of configs/demo/supervised.yaml for the training step:
    MinkUNet34C at its own widths, autocast, a fixed iteration count, validation at the end."""
    return [
        f"data.root={root}",
        "data.raw=null",
        "data.synthetic=null",
        f"data.max_voxels={'null' if max_voxels is None else max_voxels}",
        "model.name=MinkUNet34C",
        "model.planes=null",
        "model.init_dim=null",
        f"train.device={device}",
        f"train.iterations={iterations}",
        "train.amp=true",
        f"train.amp_dtype={amp_dtype}",
        "train.val_every=0",
        "train.checkpoint_every=0",
        "train.progress=false",
        f"train.log_every={max(1, iterations // 4)}",
        f"run_dir={run_dir}",
    ]


def train_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Synthetic rooms -> prepared folder -> training (worker target); ``spec``: tmp, device,
    iterations, amp_dtype, max_voxels, rooms_per_area. Returns the figures of the run."""
    import torch

    from pcseg.config import load_config
    from pcseg.engine.trainer import train
    from pcseg.readers.prepare import PrepareOptions, prepare_dataset
    from pcseg.readers.synthetic import write_synthetic_s3dis

    tmp = Path(spec["tmp"])
    t0 = time.perf_counter()
    write_synthetic_s3dis(
        tmp / "raw", num_areas=3, rooms_per_area=int(spec["rooms_per_area"]), seed=0, spacing=0.05
    )
    prepare_dataset(
        PrepareOptions(
            dataset="s3dis",
            raw=tmp / "raw",
            out=tmp / "processed",
            labels=["1%"],
            splits=["Area_1", "Area_2", "Area_3"],
        )
    )
    data_s = time.perf_counter() - t0
    cfg = load_config(
        DEMO_CONFIG,
        train_overrides(
            tmp / "processed",
            tmp / "run",
            spec["device"],
            int(spec["iterations"]),
            spec["amp_dtype"],
            spec.get("max_voxels"),
        ),
    )
    if spec["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    s = train(cfg)
    fv = s.get("final_val") or {}
    return {
        "model": s["model"],
        "device": s["device"],
        "iterations": s["iterations"],
        "amp_dtype": spec["amp_dtype"],
        "iterations_per_s": s["iterations_per_s"],
        "train_time_s": s["train_time_s"],
        "data_time_s": data_s,
        "peak_memory_mb": s["peak_memory_mb"],
        "peak_memory_kind": s["peak_memory_kind"],
        "final_miou": fv.get("miou"),
        "final_train": s.get("final_train"),
    }


class Budget:
    """Seconds left of the whole check."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def _step(name: str) -> None:
    print(f"\n=== gpu_check: {name}", flush=True)


def run_pytest(timeout: float) -> bool:
    """``pytest -m gpu`` on the checkout's tests (its output streamed)."""
    tests = PACKAGE_ROOT / "tests"
    if not tests.is_dir():
        print(f"no tests folder at {tests}; skipped")
        return True
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(tests)]
    try:
        p = subprocess.run(cmd, cwd=PACKAGE_ROOT, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"pytest -m gpu: timed out after {timeout:.0f} s")
        return False
    # exit code 5: no test selected (no gpu-marked tests) -- not a failure
    print(f"pytest -m gpu: exit code {p.returncode}")
    return p.returncode in (0, 5)


def run_sparse(timeout: float) -> bool:
    """The sparse benchmark on CUDA, pcseg vs spconv, case b."""
    from pcseg.benchmarks import build_parser, sparse

    per_run = max(20.0, timeout / 4)  # 2 implementations x (timing + memory pass)
    args = build_parser().parse_args(
        [
            "sparse",
            "--device",
            "cuda",
            "--impls",
            "pcseg,spconv",
            "--cases",
            "b",
            "--repeats",
            "5",
            "--warmup",
            "2",
            "--timeout",
            str(int(per_run)),
        ]
    )
    res = sparse.run(args)
    runs = res["cases"].get("b", {}).get("runs", {})
    ok = bool(runs) and all("error" not in r for r in runs.values())
    print(
        f"sparse case b: ratio_vs_spconv {res.get('ratio_vs_spconv')}, "
        f"memory_ratio_vs_spconv {res.get('memory_ratio_vs_spconv')}, "
        f"skipped {res.get('skipped_impls') or 'none'}"
    )
    return ok


def run_train(args: argparse.Namespace, timeout: float) -> bool:
    """The training step in a worker process (so that it can be stopped at the budget)."""
    with tempfile.TemporaryDirectory(prefix="pcseg_gpu_check_") as tmpdir:
        spec = {
            "tmp": tmpdir,
            "device": "cuda",
            "iterations": args.iterations,
            "amp_dtype": args.amp_dtype,
            "max_voxels": args.max_voxels,
            "rooms_per_area": 2,
        }
        r = run_worker(TRAIN_WORKER, spec, Path(tmpdir), timeout, tag="train")
    if "error" in r:
        print(f"training: ERROR {r['error']}")
        return False
    print(
        f"training {r['model']} ({r['iterations']} iterations, autocast {r['amp_dtype']}, "
        f"{r['device']}): {r['iterations_per_s']:.2f} iterations/s, peak memory "
        f"{r['peak_memory_mb']:.0f} MiB ({r['peak_memory_kind']}), data "
        f"{r['data_time_s']:.0f} s, final mIoU {r['final_miou']}"
    )
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; see the module docstring for the exit codes."""
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to check")
        return 2
    budget = Budget(args.budget)
    dev = torch.cuda.get_device_properties(0)
    print(
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}, device 0: {torch.cuda.get_device_name(0)} "
        f"({dev.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s))"
    )
    # fractions of the budget left at the start of each step
    steps = [
        ("pytest", 0.25, run_pytest),
        ("sparse", 0.4, run_sparse),
        ("train", 1.0, lambda t: run_train(args, t)),
    ]
    results: dict[str, str] = {}
    for name, share, fn in steps:
        if name in args.skip:
            results[name] = "skipped"
            continue
        left = budget.left()
        if left < 10:
            results[name] = "out of time"
            continue
        _step(f"{name} (up to {left * share:.0f} s)")
        t0 = time.perf_counter()
        try:
            ok = fn(left * share)
        except Exception as e:  # noqa: BLE001 - a failed step is reported, the next still runs
            print(f"{name}: {type(e).__name__}: {e}")
            ok = False
        results[name] = f"{'ok' if ok else 'FAILED'} ({time.perf_counter() - t0:.0f} s)"
    print("\n=== gpu_check: " + ", ".join(f"{k} {v}" for k, v in results.items()))
    return 0 if all(v.startswith(("ok", "skipped")) for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
