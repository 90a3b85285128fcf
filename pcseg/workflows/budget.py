"""The label-budget study: test mIoU against the labelled fraction, per method, over seeds.

For every budget B (a weak-label spec: ``1pt``, ``0.1%``, ``1%``, ``full``, ...), method M and
seed S, ``CONFIG_DIR/M.yaml`` is trained with ``data.label_spec=B`` into
``RUN_ROOT/<B dir>/M/seed_S`` and its ``last.pt`` tested (the checkpoint is never chosen by a
score, so no test or full label picks it). Finished runs are reused, so an interrupted study
resumes; results accumulate in one JSON (a later call with other methods or budgets adds to
it), from which the table and the plot are drawn. A transductive study (``test.score:
unlabelled``, e.g. the real KITTI scan) scores ``full`` on every labelled point, since full
labels leave no unlabelled one; the budget's ``score`` in the JSON and a mark in the table say
so. Image configs (``data.dataset`` images / voc / cityscapes) take the image label specs
(``1%`` of the pixels of each class per image, ``1/8`` of the images, ...); their fraction is
of pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.config import is_image_data, load_config
from pcseg.data import processed
from pcseg.data.weak_labels import parse_spec, spec_dirname
from pcseg.images import processed as image_processed
from pcseg.images.labels import parse_image_spec
from pcseg.io.atomic import atomic_write_json, atomic_write_text
from pcseg.workflows.compare import run_one
from pcseg.workflows.runs import check_reusable


def spec_parts(spec: str, images: bool = False) -> tuple[str, str, bool]:
    """``(canonical name, folder name, is full)`` of a point-cloud or (``images``) image label
    spec; SpecError / ValueError for a bad one."""
    if images:
        sp = parse_image_spec(spec)
        return sp.name, sp.dirname, sp.kind == "full"
    name = parse_spec(spec).name
    return name, spec_dirname(name), parse_spec(spec).kind == "full"


def image_labelled_fraction(root: Path, spec: str, split: str) -> float:
    """Pixels with a weak label of ``spec`` over all pixels of the images of ``split`` (a
    processed image folder; ``a+b`` joins splits)."""
    splits = image_processed.read_meta(root).splits
    total = labelled = 0
    for image_id in dict.fromkeys(i for part in split.split("+") for i in splits[part]):
        weak = image_processed.load_weak_mask(root, spec, image_id)
        total += weak.size
        labelled += int((weak != 255).sum())
    return labelled / total if total else float("nan")


def _is_image_folder(root: Path) -> bool:
    try:
        return bool(json.loads((Path(root) / "meta.json").read_text()).get("kind") == "images")
    except (OSError, ValueError, AttributeError):
        return False


def labelled_fraction(root: Path, spec: str, split: str) -> float:
    """Labelled points of ``spec`` over all points of the scenes of ``split`` (full: the points
    that carry a ground-truth class); of a processed image folder, pixels
    (:func:`image_labelled_fraction`)."""
    if _is_image_folder(root):
        return image_labelled_fraction(root, spec, split)
    total = labelled = 0
    for sid in processed.split_scenes(root, split.split("+")):
        info = processed.read_scene_info(root, sid)
        total += int(info["num_points"])
        if parse_spec(spec).kind == "full":
            labelled += int(sum(info["class_counts"]))
        else:
            labelled += int(processed.read_labels(root, spec, sid).shape[0])
    return labelled / total if total else float("nan")


def _load(json_out: Path | None) -> dict[str, Any]:
    if json_out is not None and json_out.is_file():
        return dict(json.loads(json_out.read_text()))
    return {"budgets": {}}


def _spec_sets(config: Path, spec: str, overrides: list[str]) -> tuple[list[str], str]:
    """The overrides that train ``config`` at budget ``spec`` and the points it is scored on."""
    sets = [*overrides, f"data.label_spec={spec}", f"data.prepare_specs=[{spec!r}]"]
    cfg = load_config(config, overrides)
    score = cfg.test.score
    if spec_parts(spec, is_image_data(cfg.data))[2] and score == "unlabelled":
        # a transductive study (scored on the points without a weak label): full labels
        # leave none, so its ceiling is scored on every labelled point, and says so
        sets.append("test.score=all")
        score = "all"
    return sets, score


def run_budget_study(
    config_dir: Path,
    methods: list[str],
    budgets: list[str],
    seeds: list[int],
    run_root: Path,
    overrides: list[str] | None = None,
    rerun: bool = False,
    json_out: Path | None = None,
    table_out: Path | None = None,
    plot_out: Path | None = None,
) -> dict[str, Any]:
    """Run (or reuse) every (budget, method, seed); returns the accumulated results
    ``{"budgets": {spec: {"fraction": f, "methods": {m: [run, ...]}}}}`` (also in ``json_out``),
    prints the table (and writes it to ``table_out``) and draws ``plot_out`` (PNG) and, beside
    it, ``<plot>_val.png``: supervised-only's validation curves (is the schedule long enough)."""
    overrides = list(overrides or [])
    for m in methods:
        if not (config_dir / f"{m}.yaml").is_file():
            raise FileNotFoundError(f"{config_dir / (m + '.yaml')} does not exist")
    images = is_image_data(load_config(config_dir / f"{methods[0]}.yaml", overrides).data)
    specs = [spec_parts(b, images)[0] for b in budgets]
    spec_sets = {
        spec: _spec_sets(config_dir / f"{methods[0]}.yaml", spec, overrides) for spec in specs
    }

    def run_dir(spec: str, m: str, seed: int) -> Path:
        return run_root / spec_parts(spec, images)[1] / m / f"seed_{seed}"

    if not rerun:  # before anything trains: a changed config must not reuse an old run
        check_reusable(
            [
                (config_dir / f"{m}.yaml", seed, run_dir(spec, m, seed), spec_sets[spec][0])
                for spec in specs
                for m in methods
                for seed in seeds
            ]
        )
    results = _load(json_out)
    for spec in specs:
        sets, score = spec_sets[spec]
        entry = results["budgets"].setdefault(spec, {"methods": {}})
        entry["score"] = score
        for m in methods:
            runs = {r["seed"]: r for r in entry["methods"].get(m, [])}
            for seed in seeds:
                print(f"[budget] {spec} {m} seed {seed}", flush=True)
                runs[seed] = run_one(
                    config_dir / f"{m}.yaml",
                    seed,
                    run_dir(spec, m, seed),
                    sets,
                    rerun,
                    checkpoint="last.pt",
                )
            entry["methods"][m] = [runs[s] for s in sorted(runs)]
            cfg = load_config(config_dir / f"{m}.yaml", sets)
            entry["fraction"] = labelled_fraction(Path(cfg.data.root), spec, cfg.data.train_split)
        if json_out is not None:
            atomic_write_json(json_out, results)
    table = format_budget_matrix(results) + "\n" + format_budget_table(results)
    print(table)
    if table_out is not None:
        atomic_write_text(table_out, table)
    if plot_out is not None:
        from pcseg.viz.budget import plot_budget_curve, plot_validation_curves

        plot_budget_curve(results, plot_out)
        plot_validation_curves(results, plot_out.with_name(plot_out.stem + "_val.png"))
    return results


def _mean_std(vals: list[float]) -> tuple[float, float]:
    v = [100 * x for x in vals if x is not None and math.isfinite(x)]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _score_mark(results: dict[str, Any], entry: dict[str, Any]) -> str:
    """ " †" on a budget scored on every labelled point when others are scored otherwise."""
    scores = {e.get("score", "all") for e in results["budgets"].values()}
    return " †" if len(scores) > 1 and entry.get("score", "all") == "all" else ""


def format_budget_table(results: dict[str, Any]) -> str:
    """Markdown: one row per (budget, method): labelled fraction, test mIoU mean ± sample std
    over seeds, and the per-seed mIoUs."""
    lines = [
        "| budget | labelled fraction | method | test mIoU (mean ± std) | mIoU per seed |",
        "|---|---|---|---|---|",
    ]
    order = sorted(results["budgets"].items(), key=lambda kv: kv[1].get("fraction", 0.0))
    for spec, entry in order:
        mark = _score_mark(results, entry)
        for m, runs in entry["methods"].items():
            mean, sd = _mean_std([r["miou"] for r in runs])
            per_seed = ", ".join(f"{100 * r['miou']:.1f}" for r in runs)
            lines.append(
                f"| {spec}{mark} | {100 * entry.get('fraction', float('nan')):.3g} % | {m} | "
                f"{mean:.1f} ± {sd:.1f} | {per_seed} |"
            )
    if len({e.get("score", "all") for e in results["budgets"].values()}) > 1:
        lines += [
            "",
            "† scored on every labelled point (full labels leave no unlabelled point: the "
            "ceiling of fitting the scene); the other rows on the points without a weak label.",
        ]
    return "\n".join(lines) + "\n"


def format_budget_matrix(results: dict[str, Any]) -> str:
    """Markdown: one row per budget (with its labelled fraction), one column per method, each
    cell test mIoU mean ± sample std over seeds and the per-seed mIoUs in brackets; the best
    mean of a row in bold (every cell from ``results``, nothing typed by hand)."""
    order = sorted(results["budgets"].items(), key=lambda kv: kv[1].get("fraction", 0.0))
    methods = list(dict.fromkeys(m for _, e in order for m in e["methods"]))
    lines = [
        "| labels (fraction of points) | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for spec, entry in order:
        cells = {}
        for m, runs in entry["methods"].items():
            mean, sd = _mean_std([r["miou"] for r in runs])
            per_seed = ", ".join(f"{100 * r['miou']:.1f}" for r in runs)
            cells[m] = (mean, f"{mean:.1f} ± {sd:.1f} ({per_seed})")
        finite = [v for v, _ in cells.values() if math.isfinite(v)]
        best = max(finite) if len(cells) > 1 and finite else None
        row = [
            f"**{text}**" if best is not None and f"{mean:.1f}" == f"{best:.1f}" else text
            for mean, text in (cells.get(m, (float("nan"), "-")) for m in methods)
        ]
        mark = _score_mark(results, entry)
        frac = f"{100 * entry.get('fraction', float('nan')):.3g} %"
        lines.append(f"| {spec}{mark} ({frac}) | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def merge_budget_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One study from several study JSONs (``{"budgets": {spec: {"methods": {...}}}}``): the
    methods of each budget side by side; a method in a later part replaces the same name in an
    earlier one; a budget's fraction / score come from the first part that has the budget."""
    out: dict[str, Any] = {"budgets": {}}
    for part in parts:
        for spec, entry in part["budgets"].items():
            dst = out["budgets"].setdefault(
                spec, {k: v for k, v in entry.items() if k != "methods"} | {"methods": {}}
            )
            dst["methods"].update(entry["methods"])
    return out


def final_validation_miou(run: dict[str, Any]) -> float:
    """The validation mIoU (%) of a run's last validation (its ``last.pt``, the checkpoint the
    study tests); NaN when the run has no validation history."""
    hist = run.get("val_history") or []
    return 100 * float(hist[-1]["miou"]) if hist else float("nan")


def choose_on_validation(results: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Per budget, the method with the highest mean final validation mIoU over seeds, and that
    mean (%): a choice that uses the validation split only, never the test scores."""
    chosen: dict[str, tuple[str, float]] = {}
    for spec, entry in results["budgets"].items():
        means = {
            m: float(np.mean([final_validation_miou(r) for r in runs]))
            for m, runs in entry["methods"].items()
        }
        finite = {m: v for m, v in means.items() if math.isfinite(v)}
        if finite:
            best = max(finite, key=lambda m: finite[m])
            chosen[spec] = (best, finite[best])
    return chosen


def format_validation_matrix(results: dict[str, Any]) -> str:
    """Markdown like :func:`format_budget_matrix` but of the final VALIDATION mIoU (mean ± sample
    std over seeds); the method :func:`choose_on_validation` picks is in bold."""
    order = sorted(results["budgets"].items(), key=lambda kv: kv[1].get("fraction", 0.0))
    methods = list(dict.fromkeys(m for _, e in order for m in e["methods"]))
    chosen = choose_on_validation(results)
    lines = [
        "| labels | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for spec, entry in order:
        row = []
        for m in methods:
            runs = entry["methods"].get(m)
            if not runs:
                row.append("-")
                continue
            mean, sd = _mean_std([final_validation_miou(r) / 100 for r in runs])
            text = f"{mean:.1f} ± {sd:.1f}"
            row.append(f"**{text}**" if chosen.get(spec, ("",))[0] == m else text)
        lines.append(f"| {spec} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def select_budget_results(
    results: dict[str, Any],
    budgets: list[str] | None = None,
    methods: list[str] | None = None,
) -> dict[str, Any]:
    """The part of a study with only ``budgets`` and ``methods`` (None: all), in that order."""
    out: dict[str, Any] = {"budgets": {}}
    for spec in budgets or list(results["budgets"]):
        entry = results["budgets"].get(spec)
        if entry is None:
            continue
        keep = {
            m: entry["methods"][m] for m in (methods or entry["methods"]) if m in entry["methods"]
        }
        if keep:
            out["budgets"][spec] = {k: v for k, v in entry.items() if k != "methods"}
            out["budgets"][spec]["methods"] = keep
    return out


#: the p-vs-q diagnostics of a study run (``<field>_first_last``: means over the first and the
#: last tenth of training) and their column titles
PQ_FIELDS = (
    ("pseudo_acc", "p OA"),
    ("pred_acc_unlabelled", "q OA"),
    ("pseudo_macc", "p mAcc"),
    ("pred_unlabelled_macc", "q mAcc"),
    ("pseudo_miou", "p mIoU"),
    ("pred_unlabelled_miou", "q mIoU"),
)


def format_pq_table(results: dict[str, Any]) -> str:
    """Markdown: per (budget, method), the end-of-training accuracy of argmax p (the method's
    pseudo-labels) and argmax q (the network) on the unlabelled training voxels against their
    hidden labels, as OA, per-class accuracy and mIoU (mean over seeds, %; '-' where the run
    did not record it)."""
    lines = [
        "| labels | method | " + " | ".join(t for _, t in PQ_FIELDS) + " |",
        "|---|---|" + "---|" * len(PQ_FIELDS),
    ]
    order = sorted(results["budgets"].items(), key=lambda kv: kv[1].get("fraction", 0.0))
    for spec, entry in order:
        for m, runs in entry["methods"].items():
            cells = []
            for key, _ in PQ_FIELDS:
                ends = [r[f"{key}_first_last"][1] for r in runs if r.get(f"{key}_first_last")]
                cells.append(f"{100 * float(np.mean(ends)):.1f}" if ends else "-")
            lines.append(f"| {spec} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
