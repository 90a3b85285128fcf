"""Segmentation metrics from one confusion matrix accumulated over a whole split.

Conventions (those of the S3DIS / ScanNet / SemanticKITTI benchmarks):

* ``confusion[g, p]`` counts points with ground truth ``g`` predicted as ``p``; rows and
  columns are the K evaluated classes.
* Ground truth ``-1`` (or any value outside [0, K)) is ignored: the point is not counted.
* A prediction outside [0, K) on a labelled point is a miss: it adds to that class's
  false negatives (the row total) but to no column. This is why per-class totals are
  kept separately from the K x K matrix (``gt_count``).
* IoU_k = TP_k / (TP_k + FP_k + FN_k) over all evaluated classes. A class absent from
  both the ground truth and the predictions has 0/0: it is reported as NaN and left
  out of the mean (ScanNet / S3DIS practice). A class predicted but absent from the
  ground truth has IoU 0 and counts in the mean.
* OA = sum TP / number of labelled points; mean class accuracy = mean over classes
  present in the ground truth of TP_k / GT_k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pcseg.distributed import all_reduce_sum, is_distributed, reduce_device


def confusion_matrix(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix of one set of points.

    Args:
        pred: (N,) integer predictions (any value; outside [0, K) = miss).
        gt: (N,) integer ground truth; -1 / outside [0, K) = ignored.
        num_classes: K.
    Returns:
        ``(confusion (K, K) int64, gt_count (K,) int64)`` where ``gt_count[k]`` is the
        number of labelled points of class k (>= the row sum when some predictions are
        out of range).
    """
    pred_t = torch.as_tensor(pred).reshape(-1).long().cpu()
    gt_t = torch.as_tensor(gt).reshape(-1).long().cpu()
    if pred_t.shape != gt_t.shape:
        raise ValueError(f"pred has {pred_t.numel()} entries, gt has {gt_t.numel()}")
    k = int(num_classes)
    valid = (gt_t >= 0) & (gt_t < k)
    g = gt_t[valid]
    p = pred_t[valid]
    gt_count = torch.bincount(g, minlength=k)
    inside = (p >= 0) & (p < k)
    conf = torch.bincount(g[inside] * k + p[inside], minlength=k * k).reshape(k, k)
    return conf.numpy().astype(np.int64), gt_count.numpy().astype(np.int64)


class ConfusionMatrix:
    """Accumulates a K x K confusion matrix (plus per-class GT counts) over batches."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.gt_count = np.zeros(self.num_classes, dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> None:
        """Add points: ``pred`` and ``gt`` are (N,) integer arrays
        (see :func:`confusion_matrix`)."""
        c, n = confusion_matrix(pred, gt, self.num_classes)
        self.matrix += c
        self.gt_count += n

    def all_reduce(self) -> None:
        """Sum the matrix over the ranks of the default process group
        (no-op when not distributed)."""
        if not is_distributed():
            return
        flat = np.concatenate([self.matrix.reshape(-1), self.gt_count])
        t = torch.from_numpy(flat).to(
            device=reduce_device(), dtype=torch.float64
        )  # exact below 2**53
        all_reduce_sum(t)
        out = t.cpu().numpy().round().astype(np.int64)
        k = self.num_classes
        self.matrix = out[: k * k].reshape(k, k)
        self.gt_count = out[k * k :]

    def metrics(self, class_names: Sequence[str] | None = None) -> dict:
        """Scores of the accumulated matrix; see :func:`metrics_from_confusion`."""
        return metrics_from_confusion(self.matrix, self.gt_count, class_names)


def iou_per_class(confusion: np.ndarray, gt_count: np.ndarray | None = None) -> np.ndarray:
    """(K,) float64 IoU per class; NaN where TP + FP + FN == 0 (class absent everywhere)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    gt = confusion.sum(1) if gt_count is None else np.asarray(gt_count, dtype=np.float64)
    fp = confusion.sum(0) - tp
    fn = gt - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)


def metrics_from_confusion(
    confusion: np.ndarray,
    gt_count: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> dict:
    """mIoU, OA, mAcc and per-class IoU of a confusion matrix.

    Args:
        confusion: (K, K) counts, rows = ground truth, columns = prediction.
        gt_count: (K,) labelled points per class including out-of-range predictions;
            defaults to the row sums.
        class_names: K names for ``per_class_iou`` (default ``class_0``...).
    Returns:
        ``{"miou", "oa", "macc", "iou" (list, NaN for absent classes),
        "per_class_iou" {name: iou or None}, "num_points", "confusion" (list of lists),
        "class_names"}``; every score is a float in [0, 1] or NaN when undefined.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    k = confusion.shape[0]
    if confusion.shape != (k, k):
        raise ValueError(f"confusion must be square, got {confusion.shape}")
    gt = confusion.sum(1) if gt_count is None else np.asarray(gt_count, dtype=np.int64)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    iou = iou_per_class(confusion, gt)
    tp = np.diag(confusion).astype(np.float64)
    total = float(gt.sum())
    present = gt > 0
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    oa = float(tp.sum() / total) if total > 0 else float("nan")
    macc = float(np.mean(tp[present] / gt[present])) if present.any() else float("nan")
    return {
        "miou": miou,
        "oa": oa,
        "macc": macc,
        "iou": [float(v) for v in iou],
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "num_points": int(total),
        "confusion": confusion.tolist(),
        "class_names": names,
    }


def json_safe(obj: object) -> object:
    """Copy of ``obj`` with non-finite floats replaced by None (strict JSON), recursively."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def format_table(metrics: dict) -> str:
    """Readable per-class IoU table plus mIoU / OA / mAcc (percent)."""
    names = metrics["class_names"]
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'class':<{width}}{'IoU %':>8}", "-" * (width + 8)]
    for n, v in zip(names, metrics["iou"]):
        lines.append(f"{n:<{width}}{'  n/a' if np.isnan(v) else f'{100 * v:8.2f}'}")
    lines.append("-" * (width + 8))
    for key, label in (("miou", "mIoU"), ("oa", "OA"), ("macc", "mAcc")):
        v = metrics[key]
        lines.append(f"{label:<{width}}{'  n/a' if np.isnan(v) else f'{100 * v:8.2f}'}")
    return "\n".join(lines)
