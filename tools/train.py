#!/usr/bin/env python
"""Train a model with a method from a YAML config.

Usage:
    python tools/train.py                                   # the demo: configs/demo/erda.yaml
    python tools/train.py configs/s3dis/erda_1pct.yaml --set train.lr=0.05 data.batch_size=4
    python tools/train.py CONFIG --resume                   # continue RUN/checkpoints/last.pt
    python tools/train.py CONFIG --resume path/to/last.pt
    torchrun --nproc_per_node 2 tools/train.py CONFIG       # distributed (gloo on CPU, nccl on CUDA)

With no CONFIG the demo config runs, and its relative paths (data, run folder) are taken
relative to the repository. When ``data.root`` holds no processed data, it is prepared
first: from ``data.raw`` with tools/prepare_data.py, after generating a synthetic raw
dataset there when ``data.synthetic`` is set and ``data.raw`` does not exist. Relative
paths of an explicit CONFIG are relative to the current directory.

Writes RUN/config.yaml, RUN/tb/, RUN/checkpoints/{last,best}.pt and RUN/summary.json
(RUN = ``run_dir``); prints the end-of-run summary.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pcseg.config import Config, ConfigError, load_config  # noqa: E402

DEMO_CONFIG = REPO / "configs" / "demo" / "erda.yaml"


def _load_tool(name: str) -> Any:
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    path = REPO / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pcseg_tools_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _labels_ready(root: Path, spec: str) -> bool:
    from pcseg.data import processed
    from pcseg.data.weak_labels import parse_spec

    if parse_spec(spec).name == "full":
        return True
    d = processed.labels_path(root, spec, "x").parent
    return d.is_dir() and any(d.iterdir())


def prepare_data_if_missing(cfg: Config) -> None:
    """Create ``data.root`` (and the train label spec) when missing; see the module docstring.

    Raises FileNotFoundError naming what is missing when nothing can be prepared.
    """
    root = Path(cfg.data.root)
    specs = list(dict.fromkeys([cfg.data.label_spec, *cfg.data.prepare_specs]))
    if (root / "meta.json").is_file() and all(_labels_ready(root, s) for s in specs):
        return
    if cfg.data.raw is None:
        raise FileNotFoundError(
            f"data.root {root} has no processed data (meta.json) or lacks label spec(s) {specs}; "
            f"run tools/prepare_data.py or set data.raw"
        )
    raw = Path(cfg.data.raw)
    if not raw.exists():
        if cfg.data.synthetic is None:
            raise FileNotFoundError(f"data.raw {raw} does not exist")
        from pcseg.datasets.synthetic import write_synthetic_s3dis

        print(f"[train] generating synthetic raw data in {raw}")
        write_synthetic_s3dis(raw, **cfg.data.synthetic)
    argv = ["--dataset", cfg.data.dataset, "--raw", str(raw), "--out", str(root),
            "--voxel-size", str(cfg.data.voxel_size), "--seed", "0", "--labels", *specs]
    if cfg.data.prepare_splits:
        argv += ["--split", *cfg.data.prepare_splits]
    print(f"[train] preparing {root}: tools/prepare_data.py {' '.join(argv)}")
    rc = _load_tool("prepare_data").main(argv)
    if rc != 0 or not (root / "meta.json").is_file():
        raise RuntimeError(f"tools/prepare_data.py failed (exit code {rc}) for {raw} -> {root}")


def _anchor(path: str | None) -> str | None:
    if path is None or Path(path).is_absolute():
        return path
    return str(REPO / path)


def build_config(args: argparse.Namespace) -> Config:
    """Config from the parsed arguments (demo config with repository-anchored paths if none)."""
    if args.config is None:
        cfg = load_config(DEMO_CONFIG, args.set)
        cfg.data.root = _anchor(cfg.data.root) or ""
        cfg.data.raw = _anchor(cfg.data.raw)
        cfg.run_dir = _anchor(cfg.run_dir) or cfg.run_dir
        return cfg
    return load_config(args.config, args.set)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see ``--help``)."""
    p = argparse.ArgumentParser(description="Train a pcseg model (see the module docstring).")
    p.add_argument("config", nargs="?", default=None,
                   help=f"YAML config (default: the demo, {DEMO_CONFIG.relative_to(REPO)})")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.lr=0.01 method.name=erda (values parsed as YAML)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from RUN/checkpoints/last.pt (or the given checkpoint)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run training; returns the end-of-run summary dict (see pcseg.engine.trainer.train)."""
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except ConfigError as e:
        raise SystemExit(f"config error: {e}") from None
    from pcseg.engine.trainer import train

    return train(cfg, resume=args.resume, prepare=prepare_data_if_missing)


if __name__ == "__main__":
    main()
