"""Pieces every method shares: typed options, input checks, the labelled-point
cross-entropy (with its class weighting) and the hidden-label diagnostics.

Options: each method declares its keyword options once, as a pydantic model (a subclass
of :class:`MethodOptions`: unknown names are rejected, values are typed and range
checked); :func:`resolve_options` turns keywords into such a model with an error message
that names the method, the option and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pcseg.metrics import metrics_from_confusion
from pcseg.utils.options import options_error_message

#: a finite number >= 0 (loss weights)
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
#: a number in [0, 1) (label smoothing, momenta, decays, thresholds)
UnitInterval = Annotated[float, Field(ge=0.0, lt=1.0)]
#: a finite number > 0 (temperatures)
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class MethodOptions(BaseModel):
    """Base of the per-method option models: unknown options are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ClassWeighting = Literal["normalised", "raw", "official_raw"]
#: the additive constant of the official class weights 1 / (freq + 0.02)
OFFICIAL_FREQ_OFFSET = 0.02


class SupervisionOptions(MethodOptions):
    """Options of the labelled cross-entropy (every method has it).

    ``class_weighting`` (see :func:`labelled_cross_entropy`):

    * ``"normalised"`` (default, today's behaviour): ``class_weights`` (none: all 1) in
      torch's weighted mean ``sum_i w_{y_i} CE_i / sum_i w_{y_i}``: the scale of the weights
      cancels.
    * ``"raw"``: the given ``class_weights`` (required), un-normalised:
      ``mean_i w_{y_i} CE_i`` (the scale of the weights multiplies the loss).
    * ``"official_raw"``: official RandLA-Net's weights ``w_k = 1 / (freq_k + 0.02)``, raw
      (LiyaoTang/ERDA ``models/head.py``: ``get_class_weight`` with ``weight_type='class'``
      and no normalisation, applied per point in ``mlp_head.pred``, then
      ``tf.reduce_mean``); ``freq_k`` is class k's share of the training split's labelled
      points (:func:`labelled_class_counts`; the trainer sets them through
      :meth:`pcseg.methods.base.Method.set_class_counts`). The official code uses the
      full-label counts of the whole dataset; pcseg uses the weak labels it trains on (no
      hidden label enters). ``class_weights`` must then be unset.
    """

    #: optional K per-class weights of the cross-entropy (length checked against K)
    class_weights: list[NonNegative] | None = None
    #: how class weights enter the cross-entropy: "normalised" | "raw" | "official_raw"
    class_weighting: ClassWeighting = "normalised"
    #: label smoothing of the cross-entropy
    label_smoothing: UnitInterval = 0.0
    #: weight of the cross-entropy on the weak labels spread to their superpoints
    #: (``batch["propagated_labels"]``, from ``data.superpoints``); 0: not used
    propagated_weight: NonNegative = 0.0

    @model_validator(mode="after")
    def _check_weighting(self) -> SupervisionOptions:
        if self.class_weighting == "raw" and self.class_weights is None:
            raise ValueError("class_weighting 'raw' needs class_weights")
        if self.class_weighting == "official_raw" and self.class_weights is not None:
            raise ValueError(
                "class_weighting 'official_raw' computes the weights from the training "
                "labels: leave class_weights unset"
            )
        return self


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def resolve_options(
    cls: type[OptionsT],
    who: str,
    options: OptionsT | None = None,
    values: Mapping[str, Any] | None = None,
) -> OptionsT:
    """The validated options of a method: ``options`` as given, or ``cls(**values)``.

    Args:
        cls: the method's options model.
        who: the method's name (used in error messages).
        options: an already validated instance of ``cls`` (then ``values`` must be empty).
        values: keyword options to validate.
    Raises:
        ValueError: naming the method, the option and what was expected; unknown options
            get a did-you-mean and the list of accepted options.
        TypeError: both ``options`` and ``values`` given, or ``options`` of another type.
    """
    if options is not None:
        if values:
            raise TypeError(f"{who}: pass an options object or keyword options, not both")
        if not isinstance(options, cls):
            raise TypeError(f"{who}: options must be {cls.__name__}, got {type(options).__name__}")
        return options
    try:
        return cls.model_validate(dict(values or {}))
    except ValidationError as e:
        raise ValueError(options_error_message(cls, who, e)) from None


def check_inputs(
    logits: torch.Tensor,
    features: torch.Tensor | None,
    batch: Mapping[str, Any],
    num_classes: int,
    feature_dim: int | None,
    who: str,
) -> torch.Tensor:
    """Validate the method inputs and return ``batch["weak_labels"]``.

    Args:
        logits: expected (M, num_classes) floating.
        features: expected (M, feature_dim) floating, or None when the method ignores them.
        batch: must hold ``weak_labels`` int64 (M,) with values -1 (unlabelled) or in
            [0, num_classes); ``labels`` (hidden GT) is optional and, when present, must be
            (M,) integer.
        num_classes, feature_dim: the method's sizes (feature_dim None skips the check).
        who: method name used in error messages.
    Returns:
        weak_labels (M,) int64 on the logits' device.
    Raises:
        ValueError / KeyError naming the offending field and what was expected.
    """
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"{who}: logits must be (M, {num_classes}), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"{who}: logits must be floating point, got {logits.dtype}")
    m = logits.shape[0]
    if features is not None:
        if (
            features.dim() != 2
            or features.shape[0] != m
            or (feature_dim is not None and features.shape[1] != feature_dim)
        ):
            raise ValueError(
                f"{who}: features must be ({m}, {feature_dim}), got {tuple(features.shape)}"
            )
    if "weak_labels" not in batch:
        raise KeyError(f"{who}: batch has no 'weak_labels' (keys: {sorted(batch)})")
    weak = batch["weak_labels"]
    if not isinstance(weak, torch.Tensor) or weak.dim() != 1 or weak.shape[0] != m:
        shape = tuple(weak.shape) if isinstance(weak, torch.Tensor) else type(weak).__name__
        raise ValueError(f"{who}: batch['weak_labels'] must be a ({m},) tensor, got {shape}")
    if weak.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"{who}: batch['weak_labels'] must be integer, got {weak.dtype}")
    if m > 0:
        lo, hi = int(weak.min()), int(weak.max())
        if lo < -1 or hi >= num_classes:
            raise ValueError(
                f"{who}: batch['weak_labels'] values must be -1 or in [0, {num_classes}), "
                f"got range [{lo}, {hi}]"
            )
    labels = batch.get("labels")
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != m
    ):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{who}: batch['labels'] must be a ({m},) tensor, got {shape}")
    return weak.to(device=logits.device, dtype=torch.int64)


def zero_with_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to the autograd graph of ``tensors`` (zero, not None, gradients).

    Used when a loss term has no point to average over: a plain ``tensor(0.)`` would leave
    parameters without gradient (breaking DDP without ``find_unused_parameters``) and an
    empty mean would be NaN.
    """
    out = None
    for t in tensors:
        term = t.sum() * 0.0
        out = term if out is None else out + term
    if out is None:
        raise ValueError("zero_with_graph needs at least one tensor")
    return out


def propagated_labels(batch: Mapping[str, Any], weight: float, who: str) -> torch.Tensor | None:
    """``batch["propagated_labels"]`` (M,) int64 when ``weight`` > 0, else None.

    Raises:
        ValueError: ``weight`` > 0 but the batch has none (the data has no superpoints).
    """
    if weight <= 0:
        return None
    if "propagated_labels" not in batch:
        raise ValueError(
            f"{who}: propagated_weight {weight} needs batches with propagated labels; set "
            "data.superpoints (e.g. data.superpoints: {}) so the training scenes are "
            "over-segmented"
        )
    prop: torch.Tensor = batch["propagated_labels"]
    return prop


def add_propagated_term(
    out: dict[str, torch.Tensor],
    logits: torch.Tensor,
    batch: Mapping[str, Any],
    options: SupervisionOptions,
    class_weights: torch.Tensor | None,
    who: str,
) -> None:
    """Add ``propagated_weight * CE(logits, propagated labels)`` to ``out["loss"]`` (in place)
    and report it as ``out["loss_prop"]`` and ``out["diag/propagated_frac"]`` (the share of
    voxels with a propagated label); nothing when the weight is 0."""
    prop = propagated_labels(batch, options.propagated_weight, who)
    if prop is None:
        return
    prop = prop.to(logits.device)
    loss_prop = supervised_cross_entropy(logits, prop, class_weights, options)
    out["loss"] = out["loss"] + options.propagated_weight * loss_prop.to(out["loss"].dtype)
    out["loss_prop"] = loss_prop
    out["diag/propagated_frac"] = (prop >= 0).float().mean().detach()


def labelled_cross_entropy(
    logits: torch.Tensor,
    weak_labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    normalise: bool = True,
) -> torch.Tensor:
    """Mean cross-entropy over the labelled points (weak_labels >= 0).

    Args:
        logits: (M, K) float.
        weak_labels: (M,) int64, -1 = unlabelled.
        class_weights: optional (K,) float.
        label_smoothing: in [0, 1).
        normalise: with ``class_weights``: True = as ``F.cross_entropy``, the weighted sum
            divided by the sum of the weights of the labelled points; False = the official
            raw weighting, ``mean_i w_{y_i} CE_i`` (CE_i with label smoothing, unweighted).
    Returns:
        Scalar; 0 connected to the graph (not NaN) when no point is labelled.
    """
    lab = weak_labels >= 0
    if not bool(lab.any()):
        return zero_with_graph(logits)
    # at least float32 also under autocast (bf16 would round the class weights)
    z = at_least_float32(logits[lab])
    w = None if class_weights is None else class_weights.to(device=z.device, dtype=z.dtype)
    y = weak_labels[lab]
    if w is None or normalise:
        return F.cross_entropy(z, y, weight=w, label_smoothing=float(label_smoothing))
    per_point = F.cross_entropy(z, y, reduction="none", label_smoothing=float(label_smoothing))
    return (per_point * w[y]).mean()


def supervised_cross_entropy(
    logits: torch.Tensor,
    weak_labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    options: SupervisionOptions,
) -> torch.Tensor:
    """:func:`labelled_cross_entropy` with the options' class weighting and smoothing.

    ``class_weights``: the method's (K,) weights (the given ones, or the official raw ones
    set by :meth:`pcseg.methods.base.Method.set_class_counts`). RuntimeError when
    ``class_weighting`` is ``"official_raw"`` and they have not been set.
    """
    if options.class_weighting == "official_raw" and class_weights is None:
        raise RuntimeError(
            "class_weighting 'official_raw': the class weights come from the training "
            "labels; call method.set_class_counts(labelled_class_counts(train dataset)) first"
        )
    return labelled_cross_entropy(
        logits,
        weak_labels,
        class_weights,
        options.label_smoothing,
        normalise=options.class_weighting == "normalised",
    )


def official_raw_class_weights(counts: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Official RandLA-Net class weights ``1 / (freq_k + 0.02)``, ``freq_k = n_k / sum n``.

    Args:
        counts: (K,) labelled points per class (non-negative, not all zero).
    Returns:
        (K,) float32, not normalised (LiyaoTang/ERDA ``models/head.py``, ``get_class_weight``).
    """
    n = torch.as_tensor(np.asarray(counts, dtype=np.float64)).flatten()
    if n.numel() == 0 or bool((n < 0).any()) or not bool(torch.isfinite(n).all()):
        raise ValueError(f"class counts must be finite and non-negative, got {n.tolist()}")
    total = float(n.sum())
    if total <= 0:
        raise ValueError("class counts are all zero: no labelled point to weight")
    return (1.0 / (n / total + OFFICIAL_FREQ_OFFSET)).to(torch.float32)


class WeakLabelSource(Protocol):
    """What :func:`labelled_class_counts` reads (a
    :class:`pcseg.data.dataset.SegmentationDataset`)."""

    num_classes: int
    scene_names: list[str]

    def load_weak(self, name: str) -> tuple[Any, np.ndarray, np.ndarray]: ...


def labelled_class_counts(dataset: WeakLabelSource) -> np.ndarray:
    """(K,) int64 weakly labelled points per class over the dataset's scenes (each scene
    once, whatever its ``loop``), from ``dataset.load_weak`` (indices, classes)."""
    counts = np.zeros(int(dataset.num_classes), dtype=np.int64)
    for name in dataset.scene_names:
        cls = np.asarray(dataset.load_weak(name)[2], dtype=np.int64)
        cls = cls[(cls >= 0) & (cls < len(counts))]
        counts += np.bincount(cls, minlength=len(counts))
    return counts


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 when it is float16 / bfloat16 (autocast outputs); float32 and float64
    pass unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@torch.no_grad()
def hidden_accuracy(
    pred: torch.Tensor, batch: Mapping[str, Any], mask: torch.Tensor
) -> torch.Tensor | None:
    """Detached accuracy of ``pred`` (M,) against the hidden ``batch["labels"]`` on ``mask``.

    Only points with hidden label >= 0 count. Returns a 0-dim float tensor, or None when
    the batch has no ``labels`` or no such point (the caller then omits the diagnostic).
    """
    labels: torch.Tensor | None = batch.get("labels")
    if labels is None:
        return None
    labels = labels.to(pred.device)
    valid = mask & (labels >= 0)
    n = int(valid.sum())
    if n == 0:
        return None
    return (pred[valid] == labels[valid]).double().mean().float()


def class_weights_tensor(
    class_weights: Sequence[float] | torch.Tensor | None, num_classes: int, who: str
) -> torch.Tensor | None:
    """Config class weights -> (K,) float32 tensor (None stays None); ValueError if not K
    finite non-negative numbers (the count depends on K, which the options do not know)."""
    if class_weights is None:
        return None
    w = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
    if w.numel() != num_classes or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(
            f"{who}: class_weights must be {num_classes} finite non-negative numbers, "
            f"got {w.numel()} values"
        )
    return w


@torch.no_grad()
def supervision_diagnostics(
    logits: torch.Tensor, weak_labels: torch.Tensor, batch: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Detached ``diag/labelled_frac`` and ``diag/pred_acc_unlabelled`` (when defined)."""
    out: dict[str, torch.Tensor] = {}
    m = weak_labels.shape[0]
    lab = weak_labels >= 0
    out["diag/labelled_frac"] = (
        lab.double().mean().float() if m else torch.zeros((), device=logits.device)
    )
    acc = hidden_accuracy(logits.detach().argmax(1), batch, ~lab)
    if acc is not None:
        out["diag/pred_acc_unlabelled"] = acc
    return out


class HiddenLabelConfusion:
    """Confusion matrices of named predictions against the hidden labels, accumulated over
    many steps (a logging window), for per-class diagnostics of tiny batches.

    ``add(name, pred, labels, mask)`` counts the points of ``mask`` with hidden label >= 0;
    ``pop()`` returns ``diag/<name>_macc`` (mean over the classes present in the hidden
    labels of the per-class accuracy) and ``diag/<name>_miou`` (mean IoU over the classes
    present in the labels or the predictions), the conventions of
    :func:`pcseg.metrics.metrics_from_confusion`, for every name with at least one
    point, and starts afresh. The matrices stay on the device of the predictions (one copy
    to the host per ``pop``).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.counts: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(
        self, name: str, pred: torch.Tensor, labels: torch.Tensor | None, mask: torch.Tensor
    ) -> None:
        """Add the points of ``mask`` ((M,) bool) with ``labels`` ((M,), hidden, -1 = none)
        >= 0 and ``pred`` ((M,) class indices); nothing when ``labels`` is None."""
        if labels is None:
            return
        k = self.num_classes
        labels = labels.to(pred.device).long()
        valid = mask & (labels >= 0) & (labels < k) & (pred >= 0) & (pred < k)
        flat = torch.bincount(labels[valid] * k + pred[valid].long(), minlength=k * k)
        prev = self.counts.get(name)
        self.counts[name] = flat if prev is None else prev + flat.to(prev.device)

    def pop(self) -> dict[str, float]:
        """The metrics of every name since the last ``pop`` (then reset); see the class."""
        out: dict[str, float] = {}
        k = self.num_classes
        for name, flat in self.counts.items():
            conf = flat.cpu().numpy().astype(np.int64).reshape(k, k)
            if conf.sum() == 0:
                continue
            m = metrics_from_confusion(conf)
            out[f"diag/{name}_macc"] = float(m["macc"])
            out[f"diag/{name}_miou"] = float(m["miou"])
        self.counts = {}
        return out
