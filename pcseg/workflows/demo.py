"""The end-to-end demo behind ``make demo`` / ``pcseg demo``.

synthetic raw S3DIS-format rooms -> prepare -> train (MinkUNet: supervised-only with every
label as the ceiling, then supervised-only and ERDA at 1 % and at 0.1 % labels, each pair with
the same budget) -> test (every original point of the test area) -> PNG panels (GT | weak
labels | pseudo-labels | prediction) and training curves of the 1 % runs -> a table of mIoU
printed and written to OUT/results.md.

Every number printed comes from this run (the metrics that the test step writes); nothing
is read from a stored table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pcseg.data.weak_labels import spec_dirname
from pcseg.io.atomic import atomic_write_json, atomic_write_text
from pcseg.workflows.runs import CONFIG_DIR, train_and_test

DEMO_CONFIGS = CONFIG_DIR / "demo"
METHOD_TITLES = {
    "supervised": "supervised-only",
    "pseudo_threshold": "pseudo-threshold",
    "erda": "ERDA",
    "u2pl": "U2PL",
    "erda_u2pl": "ERDA + U2PL negatives",
}


def run_method(
    method: str, budget: str, out: Path, seed: int, overrides: list[str]
) -> dict[str, Any]:
    """Train and test one method at one label budget (a weak-label spec, ``full`` for every
    label); returns {"train": summary, "test": metrics, "run_dir": Path, "method", "budget"}."""
    cfg = DEMO_CONFIGS / f"{method}.yaml"
    if not cfg.is_file():
        raise FileNotFoundError(f"no demo config for method {method!r}: {cfg} does not exist")
    run_dir = out / "runs" / spec_dirname(budget) / method
    title = METHOD_TITLES.get(method, method)
    print(
        f"\n=== {title}, {budget} labels: training and full-resolution test ({cfg}) ===", flush=True
    )
    sets = [*overrides, f"data.label_spec={budget}", f"data.prepare_specs=[{budget!r}]"]
    res = train_and_test(cfg, seed, run_dir, sets, rerun=True)
    return {**res, "run_dir": run_dir, "method": method, "budget": budget}


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


def results_table(results: list[dict[str, Any]]) -> str:
    """Markdown table of the test metrics of each run (numbers from this run)."""
    rows = [
        "| labels | method | mIoU | OA | mAcc | pseudo-label acc. (unlabelled, end) | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m, s = r["test"], r["train"]
        pacc = s.get("final_diagnostics", {}).get("diag/pseudo_acc")
        title = METHOD_TITLES.get(r["method"], r["method"])
        if r["budget"] == "full":
            title += " (full-label ceiling)"
        rows.append(
            f"| {r['budget']} | {title} | {100 * m['miou']:.1f} | {100 * m['oa']:.1f} | "
            f"{100 * m['macc']:.1f} | {'-' if pacc is None else f'{100 * pacc:.1f}'} | "
            f"{s.get('train_time_s', float('nan')):.0f} s |"
        )
    return "\n".join(rows)


def run_demo(
    out: Path,
    methods: list[str],
    seed: int = 0,
    overrides: list[str] | None = None,
    budgets: tuple[str, ...] = ("1%", "0.1%"),
    ceiling: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out``: supervised-only with every label (the ceiling, unless
    ``ceiling`` is False), then every method at every budget; the runs of the first budget
    are rendered. Returns {"results": [run, ...], "table": str, "pictures": [Path]}."""
    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    todo = ([("supervised", "full")] if ceiling else []) + [
        (m, b) for b in budgets for m in methods
    ]
    results = [run_method(m, b, out, seed, list(overrides or [])) for m, b in todo]

    print("\n=== rendering ===", flush=True)
    pictures: list[Path] = []
    scene = ""
    for r in results:
        if r["budget"] != budgets[0]:
            continue
        panel = out / f"panel_{r['method']}.png"
        curves = out / f"curves_{r['method']}.png"
        scene = render(r["run_dir"], panel, curves)
        pictures += [panel, curves]
    table = results_table(results)
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_json(
        out / "results.json",
        [
            {
                "method": r["method"],
                "budget": r["budget"],
                "miou": r["test"]["miou"],
                "oa": r["test"]["oa"],
                "macc": r["test"]["macc"],
                "per_class_iou": r["test"]["per_class_iou"],
            }
            for r in results
        ],
    )
    print(
        f"\npcseg demo: synthetic S3DIS-format rooms, labels {', '.join(budgets)}"
        f"{' and full' if ceiling else ''}, scene {scene} rendered, "
        f"{time.perf_counter() - t0:.0f} s in all\n"
    )
    print(table)
    print(
        "\npictures (GT | weak labels | pseudo-labels | prediction | error, and training curves):"
    )
    for p in pictures:
        print(f"  {p}")
    print(f"table: {out / 'results.md'}\nopen the viewer: pcseg view {results[-1]['run_dir']}")
    return {"results": results, "table": table, "pictures": pictures}
