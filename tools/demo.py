#!/usr/bin/env python
"""The end-to-end demo behind ``make demo``.

synthetic raw S3DIS-format rooms -> tools/prepare_data.py (1 % labels) -> tools/train.py
(MinkUNet, supervised-only and ERDA with the same budget) -> tools/test.py (every original
point of the validation area) -> PNG panels (GT | weak labels | pseudo-labels | prediction)
and training curves -> a table of mIoU printed and written to OUT/results.md.

Usage:
    python tools/demo.py [--out demo_out] [--methods supervised,erda] [--seed 0]

Every number printed comes from this run (the metrics.json files that tools/test.py
writes); nothing is read from a stored table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONFIG_DIR = REPO / "configs" / "demo"
METHOD_TITLES = {
    "supervised": "supervised-only",
    "pseudo_threshold": "pseudo-threshold",
    "erda": "ERDA",
    "u2pl": "U2PL",
    "erda_u2pl": "ERDA + U2PL negatives",
}


def _tool(name: str) -> Any:
    """Import ``tools/<name>.py`` (tools/ is not a package)."""
    import importlib.util

    path = REPO / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pcseg_tools_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="pcseg end-to-end demo on synthetic S3DIS-format rooms")
    p.add_argument("--out", type=Path, default=REPO / "demo_out", help="output folder (runs, PNGs, table)")
    p.add_argument("--methods", default="supervised,erda",
                   help=f"comma-separated methods from configs/demo/ ({', '.join(METHOD_TITLES)})")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="extra config overrides applied to every method (e.g. train.iterations=200)")
    return p.parse_args(argv)


def run_method(method: str, out: Path, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Train and test one method; returns {"train": summary, "test": metrics, "run_dir": Path}."""
    cfg = CONFIG_DIR / f"{method}.yaml"
    if not cfg.is_file():
        raise SystemExit(f"no demo config for method {method!r}: {cfg} does not exist")
    run_dir = out / "runs" / method
    sets = [f"run_dir={run_dir}", f"train.seed={seed}", *overrides]
    print(f"\n=== {METHOD_TITLES.get(method, method)}: training ({cfg.relative_to(REPO)}) ===", flush=True)
    summary = _tool("train").main([str(cfg), "--set", *sets])
    print(f"\n=== {METHOD_TITLES.get(method, method)}: full-resolution test ===", flush=True)
    metrics = _tool("test").main([str(cfg), "--set", *sets,
                                  "--checkpoint", str(run_dir / "checkpoints" / "best.pt")])
    return {"train": summary, "test": metrics, "run_dir": run_dir}


def render(run_dir: Path, out_png: Path, curves_png: Path) -> str:
    """Panel GT | weak | pseudo | pred | error of the first test scene, and the training curves."""
    from pcseg.viz.colors import available_modes
    from pcseg.viz.curves import plot_curves
    from pcseg.viz.data import load_view_data
    from pcseg.viz.render import render_modes

    view = load_view_data(run_dir)
    # supervised-only has no pseudo-labels: its panel leaves that mode out
    modes = [m for m in ("gt", "weak", "pseudo", "pred", "error") if m in available_modes(view)]
    render_modes(view, modes, out_png, view="iso", width=560, height=420)
    plot_curves(run_dir, curves_png)
    return view.name


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the test metrics of each method (numbers from this run)."""
    rows = ["| method | mIoU | OA | mAcc | pseudo-label acc. (unlabelled, end) | train time |",
            "|---|---|---|---|---|---|"]
    for method, r in results.items():
        m, s = r["test"], r["train"]
        pacc = s.get("final_diagnostics", {}).get("diag/pseudo_acc")
        rows.append(
            f"| {METHOD_TITLES.get(method, method)} | {100 * m['miou']:.1f} | {100 * m['oa']:.1f} | "
            f"{100 * m['macc']:.1f} | {'-' if pacc is None else f'{100 * pacc:.1f}'} | "
            f"{s.get('train_time_s', float('nan')):.0f} s |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = {m: run_method(m, out, args.seed, args.set) for m in methods}

    print("\n=== rendering ===", flush=True)
    pictures = []
    for m in methods:
        panel = out / f"panel_{m}.png"
        curves = out / f"curves_{m}.png"
        scene = render(results[m]["run_dir"], panel, curves)
        pictures += [panel, curves]
    table = results_table(results)
    from pcseg.utils.io import atomic_write_json, atomic_write_text

    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_json(out / "results.json", {
        m: {"miou": r["test"]["miou"], "oa": r["test"]["oa"], "macc": r["test"]["macc"],
            "per_class_iou": r["test"]["per_class_iou"]} for m, r in results.items()})
    print(f"\npcseg demo: synthetic S3DIS-format rooms, 1% labels, scene {scene} rendered, "
          f"{time.perf_counter() - t0:.0f} s in all\n")
    print(table)
    print("\npictures (GT | weak labels | pseudo-labels | prediction | error, and training curves):")
    for p in pictures:
        print(f"  {p}")
    print(f"table: {out / 'results.md'}\nopen the viewer: python tools/visualize.py {results[methods[-1]]['run_dir']}")
    return {"results": results, "table": table, "pictures": pictures}


if __name__ == "__main__":
    main()
