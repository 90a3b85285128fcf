"""Train a config (its data prepared first, on rank 0) and test a checkpoint.

Relative paths of the built-in demo config are anchored at the source checkout, so
``pcseg train`` with no config works from any directory of a clone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pcseg import distributed as du
from pcseg.config import (
    Config,
    ConfigError,
    config_to_dict,
    is_image_data,
    load_config,
)
from pcseg.config_files import shipped_config_dir
from pcseg.data import processed
from pcseg.data.superpoints import ensure_superpoints
from pcseg.engine.setup import device_kind

_PACKAGE = Path(__file__).resolve().parents[1]


def source_checkout(package: Path = _PACKAGE) -> Path | None:
    """The source checkout the pcseg ``package`` folder is imported from (its parent holds
    ``pyproject.toml`` and ``configs/``: a clone, an editable install), or None for an
    installed package (its parent is site-packages)."""
    root = package.parent
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


#: the checkout pcseg runs from, None when installed
CHECKOUT = source_checkout()
CONFIG_DIR = shipped_config_dir() or Path("configs")  # installed: pcseg/configs


def default_root() -> Path:
    """Where default outputs (``runs/``, the demo's data) go: the checkout pcseg runs from,
    else the current working directory (never site-packages)."""
    return CHECKOUT if CHECKOUT is not None else Path.cwd()


def _anchor(path: str | None) -> str | None:
    if path is None or Path(path).is_absolute():
        return path
    return str(default_root() / path)


def load_run_config(config: str | Path | None, overrides: list[str]) -> Config:
    """The config of a run: ``config`` with ``--set`` overrides, or the demo config (its
    relative paths anchored at the checkout) when ``config`` is None. Raises ConfigError."""
    if config is not None:
        return load_config(config, overrides)
    demo_config = CONFIG_DIR / "demo" / "erda.yaml"
    if not demo_config.is_file():
        raise ConfigError(
            f"no CONFIG given and the demo config {demo_config} is not here "
            "(pcseg was installed without its configs/): pass a CONFIG file"
        )
    cfg = load_config(demo_config, overrides)
    cfg.data.root = _anchor(cfg.data.root) or ""
    cfg.data.raw = _anchor(cfg.data.raw)
    cfg.run_dir = _anchor(cfg.run_dir) or cfg.run_dir
    return cfg


def _scenes(cfg: Config, split: str | None) -> set[str]:
    if not split:
        return set()
    if is_image_data(cfg.data):
        from pcseg.images.processed import read_meta

        splits = read_meta(Path(cfg.data.root)).splits
        return {i for part in split.split("+") for i in splits.get(part, [])}
    return set(processed.split_scenes(cfg.data.root, split.split("+")))


def selection_note(cfg: Config) -> str | None:
    """A warning when the validation scenes (which choose ``best.pt``) are also test or
    training scenes, so that a reader of the numbers knows which labels chose the checkpoint;
    None when validation is apart from both."""
    val = _scenes(cfg, cfg.data.val_split)
    if not val:
        return None
    notes = []
    if val & _scenes(cfg, cfg.data.test_split):
        notes.append(
            f"the validation split {cfg.data.val_split!r} is also the test split: "
            f"best.pt is chosen by test labels (as in the S3DIS Area 5 literature); "
            f"report the last.pt figure beside it"
        )
    if val & _scenes(cfg, cfg.data.train_split) and cfg.data.label_spec != "full":
        notes.append(
            f"the validation split {cfg.data.val_split!r} holds training scenes scored "
            f"with their full ground truth, more than the {cfg.data.label_spec} "
            f"labels: test last.pt for label-honest numbers"
        )
    return "; ".join(notes) or None


def train_with_data(
    cfg: Config, resume: bool | str = False, init: str | Path | None = None
) -> dict[str, Any]:
    """Prepare ``cfg``'s data when missing (rank 0, the other ranks wait), then train
    (from the network weights of checkpoint ``init`` when given: fine-tuning).

    Returns the trainer's end-of-run summary (see :func:`pcseg.engine.trainer.train`).
    """
    from pcseg.engine.trainer import train
    from pcseg.workflows.prepare import prepare_if_missing

    rank, _, _ = du.init_distributed(device_kind(cfg.train.device))
    if rank == 0:
        prepare_if_missing(cfg)
        if cfg.data.superpoints is not None:
            ensure_superpoints(
                cfg.data.root,
                sorted(_scenes(cfg, cfg.data.train_split)),
                cfg.data.superpoints,
                progress=cfg.train.progress,
            )
        note = selection_note(cfg)
        if note:
            print(f"[train] note: {note}", flush=True)
    du.barrier()
    return train(cfg, resume=resume, init=init)


def test_checkpoint(
    cfg: Config,
    checkpoint: str | Path | None = None,
    split: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` (default RUN/checkpoints/best.pt) on every original point of
    ``split`` (default ``data.test_split``); returns the metrics (see pcseg.engine.evaluate)."""
    from pcseg.engine.evaluate import evaluate

    ckpt = checkpoint or Path(cfg.run_dir) / "checkpoints" / "best.pt"
    return evaluate(
        cfg,
        str(ckpt),
        split=split,
        out_dir=None if out_dir is None else str(out_dir),
        progress=progress,
    )


def run_finished(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a finished training (summary.json) and its test metrics."""
    s = run_dir / "summary.json"
    if not (s.is_file() and (run_dir / "test" / "metrics.json").is_file()):
        return False
    try:
        return bool(json.loads(s.read_text()).get("finished"))
    except (OSError, json.JSONDecodeError):
        return False


#: settings that change how fast, where or how verbosely a run goes, not what it computes;
#: a finished run is reused when everything else in its saved config.yaml matches
RUN_ONLY_KEYS = frozenset({"train.threads", "train.progress", "train.device", "data.num_workers"})


class StaleRunError(ValueError):
    """A finished run exists where a run is asked for, trained with a different config."""


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(saved: Config, wanted: Config) -> list[str]:
    """``'key: saved -> wanted'`` for every setting (dotted key) that differs between two
    configs, leaving out RUN_ONLY_KEYS and ``run_dir``; [] when they describe the same run."""
    a, b = _flat(config_to_dict(saved)), _flat(config_to_dict(wanted))
    skip = RUN_ONLY_KEYS | {"run_dir"}
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if k not in skip and a.get(k) != b.get(k)
    ]


def _run_sets(overrides: list[str], seed: int, run_dir: Path) -> list[str]:
    return [*overrides, f"train.seed={seed}", f"run_dir={run_dir}"]


def stale_run(config: Path, seed: int, run_dir: Path, overrides: list[str]) -> str | None:
    """Why the finished run in ``run_dir`` cannot stand for ``config`` + ``overrides`` at
    ``seed`` (its saved config.yaml differs: the differing keys), or None when it can or when
    no finished run is there (a saved config that is missing or no longer valid is a reason)."""
    if not run_finished(run_dir):
        return None
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return f"{run_dir}: finished, but it has no config.yaml to check it against"
    wanted = load_config(config, _run_sets(overrides, seed, run_dir))
    try:
        saved = load_config(saved_path)
    except ConfigError as e:
        return f"{run_dir}: finished, but its config.yaml is not a valid config now ({e})"
    diff = config_differences(saved, wanted)
    if not diff:
        return None
    shown = "; ".join(diff[:6]) + (f"; ... ({len(diff)} settings)" if len(diff) > 6 else "")
    return f"{run_dir}: finished with a different config ({shown})"


def check_reusable(runs: list[tuple[Path, int, Path, list[str]]]) -> None:
    """Raise StaleRunError listing every (config, seed, run_dir, overrides) whose finished
    run was trained with a different config, before anything is trained."""
    stale = [r for r in (stale_run(*run) for run in runs) if r is not None]
    if stale:
        raise StaleRunError(
            "finished runs would be reused for a different config:\n  "
            + "\n  ".join(stale)
            + "\npass --rerun to retrain them, or choose another --run-root"
        )


def train_and_test(
    config: Path,
    seed: int,
    run_dir: Path,
    overrides: list[str],
    rerun: bool = False,
    checkpoint: str = "best.pt",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` with ``train.seed=seed`` into ``run_dir`` and test its ``checkpoint``;
    a finished run is reused unless ``rerun`` (StaleRunError when its saved config differs in
    anything but RUN_ONLY_KEYS). Returns {"train": summary, "test": metrics}."""
    if not rerun:
        check_reusable([(config, seed, run_dir, overrides)])
    if rerun or not run_finished(run_dir):
        cfg = load_config(config, _run_sets(overrides, seed, run_dir))
        summary = train_with_data(cfg)
        metrics = test_checkpoint(cfg, run_dir / "checkpoints" / checkpoint, progress=progress)
        return {"train": summary, "test": metrics}
    return {
        "train": json.loads((run_dir / "summary.json").read_text()),
        "test": json.loads((run_dir / "test" / "metrics.json").read_text()),
    }
