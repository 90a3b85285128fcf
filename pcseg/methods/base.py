"""The small interface every training method implements.

A method is an ``nn.Module`` so that its state (projection heads, prototype buffers,
an EMA teacher, memory queues) is saved in checkpoints and moved with ``.to(device)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from pcseg.methods.common import MethodOptions


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
