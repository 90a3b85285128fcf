"""The small interface every training method implements.

A method is an ``nn.Module`` so that its state (projection heads, prototype buffers,
an EMA teacher, memory queues) is saved in checkpoints and moved with ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from pcseg.methods.common import (
    HiddenLabelConfusion,
    MethodOptions,
    SupervisionOptions,
    official_raw_class_weights,
)


class Method(nn.Module):
    """Base class.

    Subclasses implement :meth:`forward` and declare their options once, as ``Options``;
    their constructor is ``(num_classes, feature_dim, options=None, **keyword options)``
    and validates the keywords through ``Options``.

    Parameters of a method that must be trained (e.g. ERDA's projection head) have
    ``requires_grad=True`` and are optimised with the model; frozen state (an EMA teacher)
    has ``requires_grad=False`` and is skipped by
    the optimiser.
    """

    #: short name used in configs and logs
    name: ClassVar[str] = "base"
    #: the method's keyword options (a pydantic model, unknown names rejected); the
    #: registry and the config validate the method section through it
    Options: ClassVar[type[BaseModel]] = MethodOptions

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        #: per-class diagnostics accumulated over a logging window (not module state)
        self.hidden_confusion = HiddenLabelConfusion(self.num_classes)

    def _wants_class_counts(self) -> bool:
        opts = getattr(self, "options", None)
        return isinstance(opts, SupervisionOptions) and opts.class_weighting == "official_raw"

    @property
    def needs_class_counts(self) -> bool:
        """True when this method or one it owns uses ``class_weighting: official_raw``
        (then call :meth:`set_class_counts` before training)."""
        return any(isinstance(m, Method) and m._wants_class_counts() for m in self.modules())

    def set_class_counts(self, counts: Sequence[int] | np.ndarray | torch.Tensor) -> None:
        """Training split's labelled points per class ((K,)): sets the official raw class
        weights ``1 / (freq + 0.02)`` of every (owned) method with ``class_weighting:
        official_raw`` (its non-persistent ``class_weights`` buffer); others are untouched."""
        for m in self.modules():
            if isinstance(m, Method) and m._wants_class_counts():
                w = official_raw_class_weights(counts)
                if w.numel() != m.num_classes:
                    raise ValueError(
                        f"{m.name}: {w.numel()} class counts for {m.num_classes} classes"
                    )
                where = next(iter([*m.buffers(), *m.parameters()]), None)
                m.register_buffer(
                    "class_weights",
                    w if where is None else w.to(where.device),
                    persistent=False,
                )

    @torch.no_grad()
    def record_hidden(
        self, name: str, pred: torch.Tensor, batch: dict[str, Any], mask: torch.Tensor
    ) -> None:
        """In training mode, add ``pred`` ((M,) classes) on ``mask`` ((M,) bool) against the
        hidden ``batch["labels"]`` (when present) to the window's confusion ``name``."""
        if self.training:
            self.hidden_confusion.add(name, pred.detach(), batch.get("labels"), mask)

    def window_diagnostics(self) -> dict[str, float]:
        """Diagnostics accumulated since the previous call over the training steps (per-class
        accuracy / mIoU of the predictions on the unlabelled voxels against the hidden
        labels, from :class:`~pcseg.methods.common.HiddenLabelConfusion`), of this method
        and the methods it owns; the accumulators then start afresh. The trainer calls it
        at the end of every logging window."""
        out: dict[str, float] = {}
        for m in self.modules():
            if isinstance(m, Method):
                out.update(m.hidden_confusion.pop())
        return out

    def forward(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Loss terms for one batch.

        Args:
            logits: (M, K) segmentation logits of the M voxels of the batch.
            features: (M, D) last decoder features (before the classifier).
            batch: the collated batch (see docs/ARCHITECTURE.md section 4); methods train
                only on ``batch["weak_labels"]``; ``batch["labels"]`` (hidden full ground
                truth) may be used for detached diagnostics only.
        Returns:
            ``{"loss": total, "<term>": value, ..., "diag/<name>": detached diagnostic}``.
        """
        raise NotImplementedError

    @torch.no_grad()
    def pseudo_label_probs(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any] | None = None
    ) -> torch.Tensor | None:
        """(M, K) pseudo-label distribution p for the viewer / diagnostics, or None.

        ``batch`` (the collated input) is passed by the evaluator for methods whose
        pseudo-labels need another forward pass (U2PL's teacher).
        """
        return None

    def on_train_start(self, model: nn.Module) -> None:
        """Called once before the first step (e.g. to create an EMA teacher)."""

    def after_optimizer_step(self, model: nn.Module, iteration: int, total_iterations: int) -> None:
        """Called after every optimiser step (e.g. EMA teacher update)."""
