"""Full-resolution evaluation: predict every ORIGINAL point of a split.

For every scene and every test-time augmentation (TTA) variant — rotations about z by
``2 pi r / R`` for r < R = ``test.tta_rotations``, each also mirrored in x when
``test.tta_flips`` — the points are transformed about their centre, voxelized (test
mode: deterministic), the network is run, and the voxel softmax is copied to the
original points through the inverse map. Softmax outputs are summed over the variants
(the benchmarks' convention). Per point: ``pred`` = argmax of the sum, ``confidence`` = max of
the mean distribution, ``entropy`` = its entropy (nats), ``pseudo`` = argmax of the
method's pseudo-label distribution p on the un-augmented pass (-1 when the method has
none). One confusion matrix is accumulated over the whole split.

Outputs (``OUT`` = ``RUN/test`` by default)::

    OUT/metrics.json                {"miou", "oa", "macc", "per_class_iou": {name: iou|null},
                                     "iou", "confusion", "class_names", "num_points", "split",
                                     "checkpoint", "data_root", "label_spec", "tta": {...},
                                     "scenes"}
    OUT/predictions/<scene>.npz     pred int64 (N,), pseudo int64 (N,), confidence float32 (N,),
                                    entropy float32 (N,)
    OUT/submission/<scene>.txt      ScanNet: one NYU40 id per vertex
    OUT/submission/sequences/<seq>/predictions/<frame>.label
                                    SemanticKITTI: uint32 raw ids via learning_map_inv
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pcseg.config import Config, is_image_data
from pcseg.data import processed
from pcseg.data.classes import SCANNET_NYU40_IDS
from pcseg.data.dataset import collate
from pcseg.engine.builders import build_method, build_model, model_feature_dim
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.data import batch_to_device, build_dataset
from pcseg.engine.setup import autocast_factory, autocast_policy, resolve_device, torch_globals
from pcseg.io.atomic import (
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from pcseg.metrics import ConfusionMatrix, format_table, json_safe
from pcseg.models.inputs import sparse_input
from pcseg.utils.progress import progress_bar

if TYPE_CHECKING:
    from pcseg.methods.base import Method


class FixedRotateFlip:
    """Deterministic TTA transform: optional x-mirror, then rotation by ``angle`` about z,
    both about the cloud's centre (mean x, y; z = 0) — ``t(data, rng) -> data``."""

    def __init__(self, angle: float, flip_x: bool) -> None:
        self.angle, self.flip_x = float(angle), bool(flip_x)

    def __call__(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        c = np.asarray(data["coords"], dtype=np.float64)
        ctr = c.mean(axis=0)
        ctr[2] = 0.0
        x = c - ctr
        if self.flip_x:
            x[:, 0] = -x[:, 0]
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
        return {**data, "coords": (x @ rot.T + ctr).astype(np.float32)}

    def __repr__(self) -> str:
        return f"FixedRotateFlip(angle={self.angle:.4f}, flip_x={self.flip_x})"


def tta_variants(rotations: int, flips: bool) -> list[FixedRotateFlip | None]:
    """The TTA transforms: None (identity) first, then the other rotations / flips."""
    out: list[FixedRotateFlip | None] = []
    for f in [False, True] if flips else [False]:
        for r in range(rotations):
            identity = r == 0 and not f
            out.append(None if identity else FixedRotateFlip(2 * math.pi * r / rotations, f))
    return out


class _SceneVariants(torch.utils.data.Dataset):
    """Item i = list of collated single-scene batches, one per TTA variant."""

    def __init__(self, datasets: list) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return len(self.datasets[0])

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(0)  # test-mode samples draw nothing; a fixed generator anyway
        return [collate([ds.get_sample(i, rng)]) for ds in self.datasets]


def _first(x: list) -> Any:
    return x[0]


def load_model_for_eval(
    cfg: Config, checkpoint: str | Path, device: torch.device
) -> tuple[torch.nn.Module, Method, dict[str, Any]]:
    """Build model + method from ``cfg`` and load ``checkpoint`` into them (eval mode)."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    for key in ("in_channels", "num_classes", "feature_dim"):
        if key not in state:
            raise ValueError(
                f"checkpoint {checkpoint} lacks {key!r} (not written by pcseg.engine.trainer?)"
            )
    model = build_model(cfg, int(state["in_channels"]), int(state["num_classes"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit model {cfg.model.name!r}: {e}"
        ) from e
    method = build_method(cfg, int(state["num_classes"]), model_feature_dim(model))
    method.on_train_start(model)
    try:
        method.load_state_dict(state["method"])
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit method {cfg.method.name!r}: {e}"
        ) from e
    model.to(device).eval()
    method.to(device).eval()
    return model, method, state


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -(p * logp).sum(1)


def _kitti_learning_map_inv(cfg: Config, root: Path, scene: str) -> dict[int, int]:
    path = cfg.data.semantickitti_yaml
    if not path:
        meta = processed.read_meta(root)
        path = meta.get("semantickitti_yaml")
    if not path:
        info = processed.read_scene_info(root, scene)
        path = (info.get("extra") or {}).get("config")
    if not path or not Path(path).is_file():
        raise FileNotFoundError(
            f"SemanticKITTI submission needs semantic-kitti.yaml: set data.semantickitti_yaml "
            f"(looked at config, {root / 'meta.json'} and the scene info; got {path!r})"
        )
    import yaml

    with open(path, encoding="utf-8") as f:
        y = yaml.safe_load(f)
    inv = y.get("learning_map_inv") if isinstance(y, dict) else None
    if not isinstance(inv, dict):
        raise ValueError(f"{path}: no 'learning_map_inv' mapping")
    return {int(k): int(v) for k, v in inv.items()}


def kitti_raw_ids(pred: np.ndarray, learning_map_inv: dict[int, int]) -> np.ndarray:
    """Training classes k in [0, 19) -> uint32 raw SemanticKITTI ids (learning id k + 1)."""
    size = max(learning_map_inv) + 1
    lut = np.zeros(size, dtype=np.uint32)
    for k, v in learning_map_inv.items():
        lut[k] = v
    learning = pred.astype(np.int64) + 1
    if learning.size and (learning.min() < 0 or learning.max() >= size):
        raise ValueError(f"prediction outside learning ids 0..{size - 1}")
    return lut[learning]


def scannet_nyu40_ids(pred: np.ndarray) -> np.ndarray:
    """Training classes k in [0, 20) -> NYU40 ids (pcseg.data.classes.SCANNET_NYU40_IDS), int64."""
    return np.asarray(SCANNET_NYU40_IDS, dtype=np.int64)[pred]


def _write_submission(
    cfg: Config,
    root: Path,
    out: Path,
    scene: str,
    pred: np.ndarray,
    lmi_cache: dict[str, dict[int, int]],
) -> Path | None:
    ds = cfg.data.dataset
    if ds == "scannet":
        path = out / "submission" / f"{scene}.txt"
        atomic_write_text(path, "\n".join(str(int(v)) for v in scannet_nyu40_ids(pred)) + "\n")
        return path
    if ds == "semantickitti":
        if "lmi" not in lmi_cache:
            lmi_cache["lmi"] = _kitti_learning_map_inv(cfg, root, scene)
        m = re.fullmatch(r"(\d+)_(\d+)", scene)
        rel = (
            Path("sequences") / m.group(1) / "predictions" / f"{m.group(2)}.label"
            if m
            else Path(f"{scene}.label")
        )
        path = out / "submission" / rel
        atomic_write_bytes(path, kitti_raw_ids(pred, lmi_cache["lmi"]).astype("<u4").tobytes())
        return path
    return None


def _scene_loader(datasets: list, num_workers: int) -> torch.utils.data.DataLoader:
    """Scene i -> the list of its collated TTA variants, in order, one scene at a time."""
    return torch.utils.data.DataLoader(
        _SceneVariants(datasets),
        batch_size=1,
        shuffle=False,
        collate_fn=_first,
        num_workers=num_workers,
    )


def _test_datasets(
    cfg: Config,
    split: str,
    variants: list[FixedRotateFlip | None],
    unlabelled_only: bool,
    state: dict[str, Any],
) -> list:
    """One test-mode dataset of ``split`` per TTA variant (input channels checked against
    the checkpoint). The first, untransformed, carries the weak labels when
    ``unlabelled_only``: they mark the voxels to leave out of the score."""
    datasets = [
        build_dataset(cfg, split, "test", transforms=v, with_weak_labels=unlabelled_only and i == 0)
        for i, v in enumerate(variants)
    ]
    if datasets[0].in_channels != int(state["in_channels"]):
        raise ValueError(
            f"data gives {datasets[0].in_channels} input channels, checkpoint "
            f"expects {state['in_channels']}"
        )
    return datasets


def predict_scene(
    model: torch.nn.Module,
    method: Method,
    batches: list[dict[str, Any]],
    num_classes: int,
    device: torch.device,
    autocast: Callable[[], Any],
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, pseudo)`` of one scene from its TTA variant batches (the first untransformed):
    (N, K) float32 softmax averaged over the variants, per original point, and (N,) int64
    argmax of the method's pseudo-label distribution on the first pass (-1 without one)."""
    n = int(batches[0]["point_offsets"][-1])
    prob = torch.zeros(n, num_classes, dtype=torch.float32, device=device)
    pseudo = torch.full((n,), -1, dtype=torch.int64, device=device)
    for vi, batch in enumerate(batches):
        batch = batch_to_device(batch, device)
        with autocast():
            logits, feats = model(sparse_input(batch))
        inv = batch["inverse"]
        prob += torch.softmax(logits.float(), dim=1)[inv]
        if vi == 0:
            p = method.pseudo_label_probs(logits.float(), feats.float(), batch)
            if p is not None:
                pseudo = p.argmax(1)[inv]
    mean = (prob / len(batches)).cpu().numpy()
    return mean, pseudo.cpu().numpy().astype(np.int64)


def _score_scene(
    conf: ConfusionMatrix, first: dict[str, Any], pred: np.ndarray, unlabelled_only: bool
) -> None:
    """Add a scene's points to ``conf`` (only those whose voxel has no weak label when
    ``unlabelled_only``); ``first`` is the scene's untransformed batch."""
    labels = first["point_labels"]
    if unlabelled_only:
        weak_voxel = first["weak_labels"] >= 0
        keep = ~weak_voxel[first["inverse"]]
        conf.update(pred[keep.numpy()], labels[keep])
    else:
        conf.update(pred, labels)


def _write_scene(
    cfg: Config,
    out: Path,
    name: str,
    pred: np.ndarray,
    mean: np.ndarray,
    pseudo: np.ndarray,
    lmi_cache: dict[str, dict[int, int]],
) -> None:
    """``OUT/predictions/<scene>.npz`` (test.save_predictions) and the submission file
    (test.submission) of a scene: ``pred`` (N,), ``mean`` (N, K), ``pseudo`` (N,)."""
    if cfg.test.save_predictions:
        atomic_save_npz(
            out / "predictions" / f"{name}.npz",
            pred=pred,
            pseudo=pseudo,
            confidence=mean.max(1).astype(np.float32),
            entropy=_entropy(mean).astype(np.float32),
        )
    if cfg.test.submission:
        _write_submission(cfg, Path(cfg.data.root), out, name, pred, lmi_cache)


@torch.no_grad()
def evaluate(
    cfg: Config,
    checkpoint: str | Path,
    split: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on every original point of ``split`` and write the outputs
    (image data: every pixel, pcseg.engine.evaluate_images).

    Args:
        cfg: config (model, method, data, test sections are used; ``train.device``,
            ``train.amp`` / ``amp_dtype`` and ``train.threads`` too).
        checkpoint: a ``.pt`` written by the trainer.
        split: split name (default ``data.test_split``).
        out_dir: output folder (default ``RUN/test``).
        progress: show a tqdm bar.
    Returns:
        the metrics dict also written to ``OUT/metrics.json``.
    """
    t0 = time.time()
    with torch_globals(threads=cfg.train.threads):
        return _evaluate(cfg, checkpoint, split, out_dir, progress, t0)


def _evaluate(
    cfg: Config,
    checkpoint: str | Path,
    split: str | None,
    out_dir: str | Path | None,
    progress: bool,
    t0: float,
) -> dict[str, Any]:
    split = split or cfg.data.test_split
    out = Path(out_dir) if out_dir is not None else Path(cfg.run_dir) / "test"
    device = resolve_device(cfg.train.device)
    model, method, state = load_model_for_eval(cfg, checkpoint, device)
    if is_image_data(cfg.data):
        from pcseg.engine.evaluate_images import evaluate_images

        autocast = autocast_factory(
            *autocast_policy(cfg.train.amp, cfg.train.amp_dtype, device), device
        )
        from pcseg.models.dense import PixelRows

        assert isinstance(model, PixelRows)
        return evaluate_images(
            cfg, model, method, state, checkpoint, device, autocast, split, out, progress
        )
    variants = tta_variants(cfg.test.tta_rotations, cfg.test.tta_flips)
    unlabelled_only = cfg.test.score == "unlabelled"
    if unlabelled_only and cfg.data.label_spec == "full":
        raise ValueError(
            "test.score='unlabelled' needs a weak data.label_spec (e.g. '1%'); with "
            "'full' every labelled point is a training label and none is left to "
            "score"
        )
    datasets = _test_datasets(cfg, split, variants, unlabelled_only, state)
    class_names = list(state.get("class_names") or []) or list(datasets[0].class_names)
    autocast = autocast_factory(
        *autocast_policy(cfg.train.amp, cfg.train.amp_dtype, device), device
    )
    conf = ConfusionMatrix(len(class_names))
    lmi_cache: dict[str, dict[int, int]] = {}
    scenes: list[str] = []
    for batches in progress_bar(
        _scene_loader(datasets, cfg.data.num_workers),
        total=len(datasets[0]),
        desc=f"test {split}",
        disable=not progress,
        dynamic_ncols=True,
    ):
        name = batches[0]["scene_names"][0]
        mean, pseudo = predict_scene(model, method, batches, len(class_names), device, autocast)
        pred = mean.argmax(1).astype(np.int64)
        _score_scene(conf, batches[0], pred, unlabelled_only)
        scenes.append(name)
        _write_scene(cfg, out, name, pred, mean, pseudo, lmi_cache)
    metrics = conf.metrics(class_names)
    metrics.update(
        {
            "split": split,
            "checkpoint": str(checkpoint),
            "data_root": str(Path(cfg.data.root).resolve()) if cfg.data.root else None,
            "label_spec": cfg.data.label_spec,
            "iteration": state.get("iteration"),
            "tta": {
                "rotations": cfg.test.tta_rotations,
                "flips": cfg.test.tta_flips,
                "passes": len(variants),
            },
            "score": cfg.test.score,
            "scenes": scenes,
            "seconds": time.time() - t0,
            "method": cfg.method.name,
            "model": cfg.model.name,
        }
    )
    atomic_write_json(out / "metrics.json", json_safe(metrics))
    scored = "points without a weak label" if unlabelled_only else "labelled points"
    print(
        f"[test] {len(scenes)} scenes of split {split!r}, {metrics['num_points']:,} {scored}, "
        f"{len(variants)} pass(es) per scene"
    )
    print(format_table(metrics))
    return metrics
