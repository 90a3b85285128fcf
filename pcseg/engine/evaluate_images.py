"""Full-resolution evaluation of an image checkpoint (``pcseg test`` on image data).

Every image of the split is predicted at its own resolution, never cropped or rescaled:
``data.images.test_mode: whole`` runs the network once over the whole image; ``sliding``
tiles it with ``window`` x ``window`` windows every ``stride`` pixels (an image smaller than
the window is padded) and averages the softmax where windows overlap. Per pixel: ``pred`` =
argmax, ``confidence`` = max probability, ``entropy`` (nats), ``pseudo`` = argmax of the
method's pseudo-label distribution (-1 when the method has none). One confusion matrix over
the split; mask value 255 (ignore) is left out.

Outputs (``OUT`` = ``RUN/test`` by default)::

    OUT/metrics.json              as for point clouds (pcseg.engine.evaluate); "num_points"
                                  counts the scored pixels, "scenes" the image ids
    OUT/predictions/<id>.npz      pred int64 (H, W), pseudo int64 (H, W), confidence float32
                                  (H, W), entropy float32 (H, W)
    OUT/predictions/<id>.png      the class index per pixel (uint8 PNG)
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pcseg.config import Config
from pcseg.engine.data import build_dataset
from pcseg.images.dataset import ImageDataset
from pcseg.images.transforms import ImageOptions, sliding_windows
from pcseg.io.atomic import atomic_save_npz, atomic_write_bytes, atomic_write_json
from pcseg.metrics import ConfusionMatrix, format_table, json_safe
from pcseg.models.dense import PixelRows, rows
from pcseg.utils.progress import progress_bar

if TYPE_CHECKING:
    from pcseg.methods.base import Method


def _window_size(options: ImageOptions) -> tuple[int, int]:
    window = options.window or options.crop_size
    return window, options.stride or max(1, (2 * window) // 3)


def _pass(
    model: PixelRows, method: Method, x: torch.Tensor, autocast: Callable[[], Any]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax (K, h, w) and pseudo-label distribution (K, h, w) or None of one (1, 3, h, w)
    input."""
    with autocast():
        logits, feats = model.dense(x)
    h, w = x.shape[-2:]
    prob = torch.softmax(logits.float(), dim=1)[0]
    p = method.pseudo_label_probs(rows(logits.float()), rows(feats.float()), {"images": x})
    pseudo = None if p is None else p.reshape(h, w, -1).permute(2, 0, 1)
    return prob, pseudo


@torch.no_grad()
def predict_image(
    model: PixelRows,
    method: Method,
    image: torch.Tensor,
    options: ImageOptions,
    autocast: Callable[[], Any],
) -> tuple[np.ndarray, np.ndarray]:
    """``(prob (K, H, W) float32, pseudo (H, W) int64)`` of one normalised (3, H, W) image on
    the model's device, whole or by sliding window (``options.test_mode``); ``pseudo`` is -1
    where the method has no pseudo-labels."""
    x = image[None]
    h, w = x.shape[-2:]
    if options.test_mode == "whole":
        prob, pseudo = _pass(model, method, x, autocast)
    else:
        window, stride = _window_size(options)
        xp = F.pad(x, (0, max(window - w, 0), 0, max(window - h, 0)))
        hp, wp = xp.shape[-2:]
        k = model.num_classes
        prob = torch.zeros(k, hp, wp, device=x.device)
        pseudo_sum: torch.Tensor | None = None
        count = torch.zeros(1, hp, wp, device=x.device)
        for y0, x0 in sliding_windows(hp, wp, window, stride):
            tile = xp[..., y0 : y0 + window, x0 : x0 + window]
            pr, ps = _pass(model, method, tile, autocast)
            prob[:, y0 : y0 + window, x0 : x0 + window] += pr
            count[:, y0 : y0 + window, x0 : x0 + window] += 1
            if ps is not None:
                if pseudo_sum is None:
                    pseudo_sum = torch.zeros(ps.shape[0], hp, wp, device=x.device)
                pseudo_sum[:, y0 : y0 + window, x0 : x0 + window] += ps
        prob = (prob / count)[:, :h, :w]
        pseudo = None if pseudo_sum is None else pseudo_sum[:, :h, :w]
    pseudo_map = (
        np.full((h, w), -1, dtype=np.int64)
        if pseudo is None
        else pseudo.argmax(0).cpu().numpy().astype(np.int64)
    )
    return prob.cpu().numpy().astype(np.float32), pseudo_map


def entropy_map(prob: np.ndarray) -> np.ndarray:
    """(K, H, W) probabilities -> (H, W) float32 entropy in nats."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(prob > 0, np.log(np.where(prob > 0, prob, 1.0)), 0.0)
    return (-(prob * logp).sum(0)).astype(np.float32)


def index_png(pred: np.ndarray) -> bytes:
    """(H, W) class indices (< 256) as an 8-bit PNG."""
    buf = io.BytesIO()
    Image.fromarray(pred.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write_image(
    out: Path, name: str, pred: np.ndarray, prob: np.ndarray, pseudo: np.ndarray
) -> None:
    atomic_save_npz(
        out / "predictions" / f"{name}.npz",
        pred=pred,
        pseudo=pseudo,
        confidence=prob.max(0).astype(np.float32),
        entropy=entropy_map(prob),
    )
    atomic_write_bytes(out / "predictions" / f"{name}.png", index_png(pred))


@torch.no_grad()
def evaluate_images(
    cfg: Config,
    model: PixelRows,
    method: Method,
    state: dict[str, Any],
    checkpoint: str | Path,
    device: torch.device,
    autocast: Callable[[], Any],
    split: str,
    out: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the loaded ``model`` (an image network, pcseg.models.dense) and ``method``
    (read from ``checkpoint``, whose contents are ``state``) on every pixel of the images of
    ``split``; writes OUT (module docstring) and returns the metrics."""
    t0 = time.time()
    unlabelled_only = cfg.test.score == "unlabelled"
    ds = build_dataset(cfg, split, "test", with_weak_labels=unlabelled_only)
    assert isinstance(ds, ImageDataset)
    class_names = list(state.get("class_names") or ds.class_names)
    conf = ConfusionMatrix(len(class_names))
    rng = np.random.default_rng(0)
    for i in progress_bar(range(len(ds)), desc=f"test {split}", disable=not progress):
        sample = ds.get_sample(i, rng)
        image = torch.from_numpy(sample["image"]).to(device)
        prob, pseudo = predict_image(model, method, image, cfg.data.images, autocast)
        name = sample["name"]
        pred = prob.argmax(0).astype(np.int64)
        if cfg.test.save_predictions:
            _write_image(out, name, pred, prob, pseudo)
        keep = sample["weak_labels"] < 0 if unlabelled_only else np.ones(pred.shape, bool)
        conf.update(pred[keep], sample["labels"][keep])
    metrics = conf.metrics(class_names)
    metrics.update(
        {
            "split": split,
            "checkpoint": str(checkpoint),
            "iteration": state.get("iteration"),
            "tta": {"rotations": 1, "flips": False, "passes": 1},
            "test_mode": cfg.data.images.test_mode,
            "score": cfg.test.score,
            "scenes": list(ds.scene_names),
            "seconds": time.time() - t0,
            "method": cfg.method.name,
            "model": cfg.model.name,
        }
    )
    atomic_write_json(out / "metrics.json", json_safe(metrics))
    print(
        f"[test] {len(ds)} images of split {split!r}, {metrics['num_points']:,} labelled "
        f"pixels, {cfg.data.images.test_mode} image"
    )
    print(format_table(metrics))
    return metrics


__all__ = ["entropy_map", "evaluate_images", "index_png", "predict_image"]
