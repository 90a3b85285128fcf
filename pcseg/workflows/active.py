"""Does "click where the model is unsure" help? A simulated-user active-labelling study.

Round 0 trains on the start spec's labels (e.g. ``1pt``), written as (M, 2) [point, true
class] rows. Each later round, for every TRAINING scene, a simulated user makes ``k`` clicks
and labels each clicked point with its ground-truth class (points of class -1 are never
clicked), adding them to the previous round's labels; then the config is retrained FROM
SCRATCH with the same seed and schedule and its ``last.pt`` tested on the test split. Two
users, the same number of clicks per round:

* ``suggested``: the previous round's run predicts the training scenes
  (``RUN/train_pred/predictions``), :func:`pcseg.annotate.suggest.uncertainty` (prediction
  entropy, plus p/q disagreement for runs with pseudo-labels such as ERDA) scores the points,
  :func:`pcseg.annotate.suggest.suggest_spots` (cell ``max(diag / 40, 0.05)`` m, as in
  ``pcseg annotate``) proposes ``k`` spread-out spots, and each spot is ONE click: the
  unlabelled point of class >= 0 nearest to the spot. When fewer than ``k`` distinct clicks
  come out (too few cells), the most uncertain remaining points fill up to ``k``.
* ``random``: ``k`` points drawn uniformly (without replacement) among the unlabelled points
  of class >= 0, with a generator seeded by (seed, round, scene).

Layout under RUN_ROOT: ``seed_S/round_0`` (shared by the strategies) and
``seed_S/<strategy>/round_R``; label files ``labels/import_active_<strategy>_sS_rR/`` in the
processed folder (``import:active_start_<spec>`` for round 0), each round's click statistics
in ``RUN/active_clicks.json``. A finished run is not repeated, so an interrupted study resumes
with the same command; results accumulate in one JSON (keyed by strategy, seed and round).
The runs go round by round (every seed and strategy reaches round R before any reaches R + 1),
so a study cut short has every seed at the rounds it reports.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.annotate.suggest import suggest_spots, uncertainty
from pcseg.config import Config, load_config
from pcseg.data import processed
from pcseg.data.weak_labels import parse_spec, spec_dirname
from pcseg.io.atomic import atomic_write_json, atomic_write_text
from pcseg.workflows.runs import run_finished, test_checkpoint, train_and_test

STRATEGIES = ("suggested", "random")


# --------------------------------------------------------------------------- simulated user


class StudyError(ValueError):
    """Settings of an active study that cannot run (unknown strategy, bad counts, a JSON of
    another study): a user's mistake, the message names the option."""


def default_cell(coords: np.ndarray) -> float:
    """The suggestion grid of ``pcseg annotate``: ``max(scene diagonal / 40, 0.05)`` metres."""
    ext = float(np.linalg.norm(np.ptp(np.asarray(coords, dtype=np.float64), axis=0))) or 1.0
    return max(ext / 40, 0.05)


def true_rows(idx: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """(M, 2) int64 [point, ground-truth class] rows of the points ``idx`` of class >= 0,
    sorted by point and unique."""
    idx = np.unique(np.asarray(idx, dtype=np.int64))
    idx = idx[np.asarray(semantic)[idx] >= 0]
    return np.stack([idx, np.asarray(semantic)[idx].astype(np.int64)], axis=1)


def add_clicks(rows: np.ndarray, clicks: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """``rows`` (M, 2) plus the ``clicks`` with their true classes, sorted by point; ValueError
    when a click repeats a labelled point, repeats itself, or is a point of class -1."""
    clicks = np.asarray(clicks, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    if len(np.unique(clicks)) != len(clicks) or np.isin(clicks, rows[:, 0]).any():
        raise ValueError("add_clicks: a click repeats an already labelled point")
    if len(clicks) and (np.asarray(semantic)[clicks] < 0).any():
        raise ValueError("add_clicks: a click on a point without ground truth (class -1)")
    new = np.stack([clicks, np.asarray(semantic)[clicks].astype(np.int64)], axis=1)
    out = np.concatenate([rows, new])
    return out[np.argsort(out[:, 0], kind="stable")]


def _eligible(semantic: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    return (np.asarray(semantic) >= 0) & ~np.asarray(labelled, dtype=bool)


def suggested_clicks(
    coords: np.ndarray,
    semantic: np.ndarray,
    scores: np.ndarray,
    labelled: np.ndarray,
    k: int,
    cell: float | None = None,
) -> np.ndarray:
    """``k`` click points (int64, in suggestion order) of the ``suggested`` user: one click per
    spot of :func:`suggest_spots` on ``scores``, at the unlabelled point of class >= 0 nearest
    to the spot; filled up with the most uncertain remaining such points when the spots give
    fewer than ``k`` distinct clicks (fewer only when the scene has fewer such points)."""
    coords = np.asarray(coords, dtype=np.float64)
    ok = _eligible(semantic, labelled)
    cand = np.flatnonzero(ok)
    k = min(int(k), len(cand))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    cell = default_cell(coords) if cell is None else cell
    spots = suggest_spots(coords, scores, k=k, cell=cell, labelled=labelled)
    chosen: list[int] = []
    taken = np.zeros(len(coords), dtype=bool)
    for s in spots:
        free = cand[~taken[cand]]
        if not len(free):
            break
        p = int(free[np.argmin(np.linalg.norm(coords[free] - s.position, axis=1))])
        if not taken[p]:
            chosen.append(p)
            taken[p] = True
    if len(chosen) < k:
        rest = cand[~taken[cand]]
        rest = rest[np.argsort(-np.asarray(scores)[rest], kind="stable")]
        chosen.extend(int(p) for p in rest[: k - len(chosen)])
    return np.asarray(chosen, dtype=np.int64)


def click_rng(seed: int, round_: int, scene: str) -> np.random.Generator:
    """The random user's generator for one (seed, round, scene)."""
    return np.random.default_rng([int(seed), int(round_), zlib.crc32(scene.encode())])


def random_clicks(
    semantic: np.ndarray, labelled: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` points (int64, sorted) drawn uniformly without replacement among the unlabelled
    points of class >= 0 (all of them when there are fewer)."""
    cand = np.flatnonzero(_eligible(semantic, labelled))
    pick = rng.choice(len(cand), size=min(int(k), len(cand)), replace=False)
    return np.sort(cand[pick]).astype(np.int64)


@dataclass
class ScenePrediction:
    """A run's prediction of one scene: ``pred`` (N,), ``entropy`` (N,), ``pseudo`` (N,) or
    None, ``confidence`` (N,) or None."""

    pred: np.ndarray
    entropy: np.ndarray | None
    pseudo: np.ndarray | None = None
    confidence: np.ndarray | None = None

    @classmethod
    def load(cls, path: Path) -> ScenePrediction:
        with np.load(path) as z:
            get = {
                k: np.asarray(z[k])
                for k in ("pred", "entropy", "pseudo", "confidence")
                if k in z.files
            }
        return cls(get["pred"], get.get("entropy"), get.get("pseudo"), get.get("confidence"))

    def scores(self, num_classes: int) -> np.ndarray:
        """Per-point uncertainty (entropy, plus p/q disagreement where there is a pseudo-label)."""
        return uncertainty(
            self.entropy,
            num_classes,
            pred=self.pred,
            pseudo=self.pseudo,
            confidence=self.confidence,
        )


def simulate_round(
    strategy: str,
    coords: np.ndarray,
    semantic: np.ndarray,
    rows: np.ndarray,
    k: int,
    prediction: ScenePrediction | None,
    num_classes: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One user round on one scene: ``(clicks, new rows)``. ``rows`` (M, 2) are the labels so
    far; ``prediction`` the previous run's (required for ``suggested``), ``rng`` for
    ``random``."""
    labelled = np.zeros(len(semantic), dtype=bool)
    labelled[np.asarray(rows, dtype=np.int64).reshape(-1, 2)[:, 0]] = True
    if strategy == "suggested":
        if prediction is None:
            raise ValueError("the suggested user needs the previous run's prediction")
        clicks = suggested_clicks(coords, semantic, prediction.scores(num_classes), labelled, k)
    elif strategy == "random":
        if rng is None:
            raise ValueError("the random user needs a seeded generator")
        clicks = random_clicks(semantic, labelled, k, rng)
    else:
        raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    return clicks, add_clicks(rows, clicks, semantic)


# --------------------------------------------------------------------------- the study


def round_spec(strategy: str, seed: int, round_: int, start_spec: str) -> str:
    """The label spec of a round: ``import:active_start_<start>`` for round 0, else
    ``import:active_<strategy>_s<seed>_r<round>``."""
    if round_ == 0:
        return f"import:active_start_{spec_dirname(start_spec)}"
    return f"import:active_{strategy}_s{seed}_r{round_}"


def round_dir(run_root: Path, strategy: str, seed: int, round_: int) -> Path:
    """``RUN_ROOT/seed_S/round_0`` or ``RUN_ROOT/seed_S/<strategy>/round_R``."""
    base = Path(run_root) / f"seed_{seed}"
    return base / "round_0" if round_ == 0 else base / strategy / f"round_{round_}"


def _settings(config: Path, start_spec: str, clicks: int, overrides: list[str]) -> dict[str, Any]:
    return {
        "config": str(config),
        "start_spec": start_spec,
        "clicks_per_round": int(clicks),
        "overrides": list(overrides),
    }


def _load(json_out: Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    if json_out is None or not json_out.is_file():
        return {"settings": settings, "runs": []}
    res = dict(json.loads(json_out.read_text()))
    if res.get("settings") != settings:
        raise StudyError(
            f"{json_out} holds a study with other settings ({res.get('settings')}); "
            f"this call has {settings}: choose another --json"
        )
    return res


def _record(results: dict[str, Any], rec: dict[str, Any]) -> None:
    key = (rec["strategy"], rec["seed"], rec["round"])
    runs = [r for r in results["runs"] if (r["strategy"], r["seed"], r["round"]) != key]
    runs.append(rec)
    runs.sort(key=lambda r: (r["strategy"], r["seed"], r["round"]))
    results["runs"] = runs


def _write_start(
    root: Path, scenes: list[str], start_spec: str, spec: str, num_classes: int
) -> int:
    total = 0
    for sid in scenes:
        sem = processed.read_scene(root, sid).semantic
        rows = true_rows(processed.read_labels(root, start_spec, sid, num_points=len(sem)), sem)
        processed.write_labels(root, spec, sid, rows, len(sem), num_classes)
        total += len(rows)
    return total


def _train_predictions(cfg: Config, run_dir: Path, split: str) -> Path:
    """``RUN/train_pred/predictions`` of the run's ``last.pt`` on ``split`` (made once)."""
    out = run_dir / "train_pred"
    if not (out / "metrics.json").is_file():
        test_checkpoint(
            cfg, run_dir / "checkpoints" / "last.pt", split=split, out_dir=out, progress=False
        )
    return out / "predictions"


def _run_cfg(config: Path, sets: list[str], seed: int, run_dir: Path) -> Config:
    return load_config(config, [*sets, f"train.seed={seed}", f"run_dir={run_dir}"])


def _make_round(
    strategy: str,
    seed: int,
    round_: int,
    root: Path,
    scenes: list[str],
    prev_spec: str,
    spec: str,
    pred_dir: Path,
    k: int,
    num_classes: int,
) -> dict[str, Any]:
    """Write the labels of one round (deterministic, so a rerun writes the same); the click
    statistics."""
    clicks = miscls = labels = 0
    for sid in scenes:
        scene = processed.read_scene(root, sid)
        sem = scene.semantic
        prev_idx, prev_cls = processed.read_label_classes(root, prev_spec, sid, sem, num_classes)
        rows = np.stack([prev_idx, prev_cls], axis=1)
        pred = ScenePrediction.load(pred_dir / f"{sid}.npz")
        c, new = simulate_round(
            strategy,
            scene.coords,
            sem,
            rows,
            k,
            pred,
            num_classes,
            rng=click_rng(seed, round_, sid),
        )
        processed.write_labels(root, spec, sid, new, len(sem), num_classes)
        clicks += len(c)
        miscls += int((pred.pred[c] != sem[c]).sum())
        labels += len(new)
    return {
        "clicks": clicks,
        "clicks_misclassified": miscls,
        "misclassified_fraction": miscls / clicks if clicks else float("nan"),
        "labels": labels,
    }


@dataclass
class _Study:
    """What every round of one active-learning study shares (see :func:`run_active_study`)."""

    config: Path
    overrides: list[str]
    strategies: list[str]
    run_root: Path
    start_spec: str
    clicks_per_round: int
    root: Path
    split: str
    scenes: list[str]
    num_classes: int
    results: dict[str, Any]
    json_out: Path | None

    def train_round(self, spec: str, seed: int, run_dir: Path) -> dict[str, Any]:
        """Train (from scratch, the same seed and schedule every round) on ``spec``; test."""
        sets = [*self.overrides, f"data.label_spec={spec}"]
        return train_and_test(
            self.config, seed, run_dir, sets, checkpoint="last.pt", progress=False
        )

    def record(self, rec: dict[str, Any], res: dict[str, Any], run_dir: Path, spec: str) -> None:
        """Add one run's row (``rec``, its test mIoU / OA, run folder, label spec); rewrite
        ``json_out``."""
        test = res["test"]
        rec = {**rec, "miou": test["miou"], "oa": test["oa"], "run_dir": str(run_dir), "spec": spec}
        _record(self.results, rec)
        if self.json_out is not None:
            atomic_write_json(self.json_out, self.results)

    def round_zero(self, seed: int, spec0: str, n0: int) -> None:
        """Round 0: one run on the start labels, recorded once per strategy."""
        d0 = round_dir(self.run_root, "", seed, 0)
        print(f"[active] seed {seed} round 0 ({self.start_spec}: {n0} labels)", flush=True)
        res0 = self.train_round(spec0, seed, d0)
        for s in self.strategies:
            rec = {"strategy": s, "seed": seed, "round": 0, "labels": n0, "clicks": 0}
            self.record({**rec, "misclassified_fraction": None}, res0, d0, spec0)

    def clicks(self, strategy: str, seed: int, r: int, spec: str, d: Path) -> dict[str, Any]:
        """The click statistics of round ``r`` (> 0; labels ``spec``, run folder ``d``),
        writing its labels from the previous round's predictions unless its run finished."""
        prev_spec = round_spec(strategy, seed, r - 1, self.start_spec)
        prev_dir = round_dir(self.run_root, strategy, seed, r - 1)
        prev_sets = [*self.overrides, f"data.label_spec={prev_spec}"]
        stats_path = d / "active_clicks.json"
        if not (run_finished(d) and stats_path.is_file()):
            pred_dir = _train_predictions(
                _run_cfg(self.config, prev_sets, seed, prev_dir), prev_dir, self.split
            )
            stats = _make_round(
                strategy,
                seed,
                r,
                self.root,
                self.scenes,
                prev_spec,
                spec,
                pred_dir,
                self.clicks_per_round,
                self.num_classes,
            )
            print(
                f"[active] seed {seed} {strategy} round {r}: {stats['clicks']} clicks "
                f"({stats['clicks_misclassified']} on misclassified points), "
                f"{stats['labels']} labels",
                flush=True,
            )
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_json(stats_path, stats)
        return dict(json.loads(stats_path.read_text()))

    def active_round(self, strategy: str, seed: int, r: int) -> None:
        """Round ``r`` (> 0) of ``strategy``: clicks on the previous round's run, then train."""
        spec = round_spec(strategy, seed, r, self.start_spec)
        d = round_dir(self.run_root, strategy, seed, r)
        stats = self.clicks(strategy, seed, r, spec, d)
        res = self.train_round(spec, seed, d)
        self.record({"strategy": strategy, "seed": seed, "round": r, **stats}, res, d, spec)
        print(
            f"[active] seed {seed} {strategy} round {r}: test mIoU {100 * res['test']['miou']:.1f}",
            flush=True,
        )


def _check_study(strategies: list[str], rounds: int, clicks_per_round: int, start: str) -> str:
    """ValueError on an unknown strategy, no clicks, negative rounds or a start spec that is
    not sampled; returns the start spec's canonical name."""
    for s in strategies:
        if s not in STRATEGIES:
            raise StudyError(f"unknown strategy {s!r} (choose from {', '.join(STRATEGIES)})")
    if clicks_per_round <= 0 or rounds < 0:
        raise StudyError("--clicks-per-round must be > 0 and --rounds >= 0")
    name = parse_spec(start).name
    if parse_spec(name).kind in ("full", "import"):
        raise StudyError(f"--start-spec {name!r}: choose a sampled spec such as 1pt")
    return name


def run_active_study(
    config: Path,
    strategies: list[str],
    seeds: list[int],
    rounds: int,
    clicks_per_round: int,
    run_root: Path,
    start_spec: str = "1pt",
    overrides: list[str] | None = None,
    json_out: Path | None = None,
    table_out: Path | None = None,
    plot_out: Path | None = None,
) -> dict[str, Any]:
    """Run (or reuse) every (seed, strategy, round) of the study (module docstring).

    Returns ``{"settings": {...}, "runs": [{"strategy", "seed", "round", "labels", "clicks",
    "misclassified_fraction", "miou", "run_dir", ...}, ...]}`` (round 0 appears once per
    strategy, the same run), also written to ``json_out`` after every run; prints the table
    (also to ``table_out``) and draws ``plot_out``.
    """
    from pcseg.workflows.prepare import prepare_if_missing

    start_spec = _check_study(strategies, rounds, clicks_per_round, start_spec)
    overrides = list(overrides or [])
    settings = _settings(config, start_spec, clicks_per_round, overrides)
    results = _load(json_out, settings)
    cfg = load_config(config, overrides)
    cfg.data.prepare_specs = list(dict.fromkeys([*cfg.data.prepare_specs, start_spec]))
    cfg.data.label_spec = start_spec
    prepare_if_missing(cfg)
    root = Path(cfg.data.root)
    split = cfg.data.train_split
    scenes = processed.split_scenes(root, split.split("+"))
    num_classes = len(processed.read_meta(root)["class_names"])
    spec0 = round_spec("", 0, 0, start_spec)
    n0 = _write_start(root, scenes, start_spec, spec0, num_classes)
    study = _Study(
        config, overrides, strategies, run_root, start_spec, clicks_per_round, root, split,
        scenes, num_classes, results, json_out,
    )  # fmt: skip
    for r in range(rounds + 1):  # round-major: every seed reaches a round before the next
        for seed in seeds:
            if r == 0:
                study.round_zero(seed, spec0, n0)
                continue
            for s in strategies:
                study.active_round(s, seed, r)
    table = format_active_table(results)
    print(table)
    if table_out is not None:
        atomic_write_text(table_out, table)
    if plot_out is not None:
        from pcseg.viz.active import plot_active_curve

        plot_active_curve(results, plot_out)
    return results


def _mean_std(vals: list[float]) -> str:
    v = [100 * x for x in vals if x is not None and math.isfinite(x)]
    if not v:
        return "n/a"
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):.1f} ± {sd:.1f}"


def _paired(runs: list[dict[str, Any]], rnd: int) -> str:
    by = {(r["strategy"], r["seed"]): r["miou"] for r in runs if r["round"] == rnd}
    seeds = sorted(
        {sd for st, sd in by if st == "suggested"} & {sd for st, sd in by if st == "random"}
    )
    return _mean_std([by[("suggested", sd)] - by[("random", sd)] for sd in seeds])


def format_active_table(results: dict[str, Any]) -> str:
    """Markdown: one row per round: labels per strategy (mean over seeds), test mIoU mean ±
    sample std and per seed, the percentage of the round's clicks that hit points the
    previous run misclassified, and the suggested − random difference paired by seed."""
    runs = results["runs"]
    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in runs)]
    strategies += sorted({r["strategy"] for r in runs} - set(strategies))
    head = "| round |"
    rule = "|---|"
    for s in strategies:
        head += (
            f" {s}: labels | {s}: test mIoU (mean ± std) | {s}: per seed | "
            f"{s}: clicks on misclassified |"
        )
        rule += "---|---|---|---|"
    paired = {"suggested", "random"} <= set(strategies)
    if paired:
        head += " suggested − random (same seed, mean ± std) |"
        rule += "---|"
    lines = [head, rule]
    for rnd in sorted({r["round"] for r in runs}):
        row = f"| {rnd} |"
        for s in strategies:
            rs = sorted(
                (r for r in runs if r["strategy"] == s and r["round"] == rnd),
                key=lambda r: r["seed"],
            )
            if not rs:
                row += " | | | |"
                continue
            labels = np.mean([r["labels"] for r in rs])
            per = ", ".join(f"s{r['seed']} {100 * r['miou']:.1f}" for r in rs)
            mis = [
                r["misclassified_fraction"]
                for r in rs
                if r.get("misclassified_fraction") is not None
            ]
            mis_s = f"{100 * np.mean(mis):.0f} %" if mis else "-"
            row += f" {labels:.0f} | {_mean_std([r['miou'] for r in rs])} | {per} | {mis_s} |"
        if paired:
            row += f" {_paired(runs, rnd)} |"
        lines.append(row)
    return "\n".join(lines) + "\n"
