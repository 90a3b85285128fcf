"""EMA teacher: a frozen copy of the student network and representation head.

After each optimiser step ``theta_t <- d theta_t + (1 - d) theta_s`` with
``d = min(1 - 1/(k + 1), ema_decay)`` (:func:`ema_decay_at`); buffers (BatchNorm running
statistics) are copied from the student. Under DDP every rank holds the same student
weights after the step, so the teachers stay identical without communication.

Resume: the teacher network exists only after :meth:`EMATeacher.attach`. A checkpoint
loaded before that keeps the teacher weights aside and ``attach`` loads them into the
fresh copy; loading after ``attach`` restores them directly.

:class:`TeacherSchedule` is the U2PL teacher schedule shared by U2PL and ERDA + U2PL
negatives: attach at the start, EMA update after every step (the counter starting after
``start`` warm-up steps), the step counter t and run length T of alpha_t, and the teacher's
prediction checked against the student's logits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal, get_args

import torch
from torch import nn

from pcseg.methods.base import Method
from pcseg.methods.common import MethodOptions, UnitInterval
from pcseg.methods.contrastive import U2PLContrast
from pcseg.methods.entropy_split import unreliable_percent
from pcseg.models.inputs import network_input

TeacherBN = Literal["train", "eval"]
TEACHER_BN_MODES: tuple[str, ...] = get_args(TeacherBN)


class TeacherOptions(MethodOptions):
    """Options of the EMA teacher of a method."""

    #: cap of the teacher EMA decay
    ema_decay: UnitInterval = 0.99
    #: BatchNorm mode of the teacher forward during training: batch statistics ("train")
    #: or the copied running statistics ("eval")
    teacher_bn: TeacherBN = "train"


def ema_decay_at(iteration: int, ema_decay: float, start: int = 0) -> float:
    """U2PL teacher decay ``min(1 - 1/(k + 1), ema_decay)`` with ``k = iteration - start``;
    0 for k <= 0."""
    k = int(iteration) - int(start)
    if k <= 0:
        return 0.0
    return min(1.0 - 1.0 / (k + 1.0), float(ema_decay))


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


class EMATeacher(nn.Module):
    """EMA copy of the student network and of the student representation head.

    ``model`` is None until :meth:`attach`; a state dict loaded before that keeps the
    model weights aside (``pending``) and :meth:`attach` loads them into the new copy.

    Args:
        rep_head: the student representation head (deep-copied now).
        bn_mode: ``"train"`` (batch statistics) or ``"eval"`` (running statistics) for the
            teacher forward during training.
        input_builder: ``(batch, device) -> model input``; default
            :func:`pcseg.models.inputs.network_input` (images, or voxels sharing the
            student's kernel maps).
    """

    def __init__(
        self,
        rep_head: nn.Module,
        bn_mode: TeacherBN = "train",
        input_builder: Callable[[dict[str, Any], torch.device], Any] | None = None,
    ) -> None:
        super().__init__()
        if bn_mode not in TEACHER_BN_MODES:
            raise ValueError(
                f"EMATeacher: bn_mode must be one of {TEACHER_BN_MODES}, got {bn_mode!r}"
            )
        self.bn_mode = bn_mode
        self.input_builder = input_builder or network_input
        self.model: nn.Module | None
        self.register_module("model", None)
        self.rep_head = copy.deepcopy(rep_head)
        for p in self.rep_head.parameters():
            p.requires_grad_(False)
        self._pending: dict[str, torch.Tensor] | None = None

    @property
    def attached(self) -> bool:
        """True once the teacher network exists."""
        return self.model is not None

    def attach(self, student: nn.Module) -> None:
        """Create the teacher network as a frozen deep copy of ``student`` (unwrapped from
        DDP / compile). No-op when already attached. Loads pending checkpoint weights."""
        if self.model is not None:
            return
        teacher = copy.deepcopy(_unwrap(student))
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.model = teacher
        if self._pending is not None:
            teacher.load_state_dict(self._pending)
            self._pending = None

    def _load_from_state_dict(  # noqa: D401 - torch hook
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        if self.model is None:
            mp = prefix + "model."
            pending = {k[len(mp) :]: v for k, v in state_dict.items() if k.startswith(mp)}
            if pending:
                self._pending = pending
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @torch.no_grad()
    def update(self, student: nn.Module, student_rep_head: nn.Module, decay: float) -> None:
        """``t <- decay * t + (1 - decay) * s`` on parameters; buffers copied from the student."""
        if self.model is None:
            raise RuntimeError("EMATeacher.update: teacher not attached (call on_train_start)")
        for t_mod, s_mod, what in (
            (self.model, _unwrap(student), "network"),
            (self.rep_head, student_rep_head, "representation head"),
        ):
            t_p = dict(t_mod.named_parameters())
            s_p = dict(s_mod.named_parameters())
            t_b = dict(t_mod.named_buffers())
            s_b = dict(s_mod.named_buffers())
            if t_p.keys() != s_p.keys() or t_b.keys() != s_b.keys():
                raise RuntimeError(
                    f"EMATeacher.update: teacher and student {what} differ in structure "
                    f"({len(t_p)} vs {len(s_p)} parameters, {len(t_b)} vs {len(s_b)} buffers)"
                )
            for name, tp in t_p.items():
                sp = s_p[name].detach().to(dtype=tp.dtype, device=tp.device)
                if decay == 0.0:
                    tp.copy_(sp)
                else:
                    tp.mul_(decay).add_(sp, alpha=1.0 - decay)
            for name, tb in t_b.items():
                tb.copy_(s_b[name].detach().to(device=tb.device))

    @torch.no_grad()
    def predict(
        self, batch: dict[str, Any], device: torch.device, train_bn: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher (M, K) float32 probabilities and (M, R) representations for the batch.

        ``train_bn`` None -> ``bn_mode``; the previous train/eval mode is restored.
        """
        if self.model is None:
            raise RuntimeError("EMATeacher: teacher not attached (call on_train_start(model))")
        use_train = (self.bn_mode == "train") if train_bn is None else bool(train_bn)
        was = (self.model.training, self.rep_head.training)
        self.model.train(use_train)
        self.rep_head.train(use_train)
        try:
            out = self.model(self.input_builder(batch, device))
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise RuntimeError("EMATeacher: the model must return (logits, features)")
            t_logits, t_feats = out
            prob = torch.softmax(t_logits.float(), dim=1)
            rep = self.rep_head(t_feats.to(next(self.rep_head.parameters()).dtype))
        finally:
            self.model.train(was[0])
            self.rep_head.train(was[1])
        return prob, rep


class TeacherSchedule(Method):
    """Base of the methods with the U2PL teacher schedule (U2PL, ERDA + U2PL negatives).

    A subclass builds ``self.contrast`` (its :class:`U2PLContrast`, whose representation
    head the teacher copies), sets ``self.alpha_0`` and then calls :meth:`init_teacher`.
    The buffers ``steps_done`` (t of alpha_t) and ``total_steps`` (T, 0 = unknown) are the
    method's own, so checkpoints keep their keys.
    """

    contrast: U2PLContrast
    alpha_0: float
    teacher: EMATeacher | None
    steps_done: torch.Tensor
    total_steps: torch.Tensor

    def init_teacher(
        self,
        opts: TeacherOptions,
        input_builder: Callable[[dict[str, Any], torch.device], Any] | None,
        *,
        use_teacher: bool = True,
        start: int = 0,
    ) -> None:
        """Create the teacher (when ``use_teacher``; else None) and the step counters.

        ``start``: steps before the EMA counter starts (the teacher copies the student).
        """
        self.ema_decay = opts.ema_decay
        self.ema_start = start
        self.teacher = (
            EMATeacher(self.contrast.rep_head, opts.teacher_bn, input_builder)
            if use_teacher
            else None
        )
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))
        self.register_buffer("total_steps", torch.zeros((), dtype=torch.int64))

    def on_train_start(self, model: nn.Module) -> None:
        """Create the EMA teacher (if any) as a frozen copy of ``model`` (or restore a loaded
        one)."""
        if self.teacher is not None:
            self.teacher.attach(model)

    def after_optimizer_step(self, model: nn.Module, iteration: int, total_iterations: int) -> None:
        """EMA update of the teacher (network and representation head) with decay
        :func:`ema_decay_at`; advances t and records T of alpha_t."""
        if self.teacher is not None:
            decay = ema_decay_at(iteration, self.ema_decay, self.ema_start)
            self.teacher.update(model, self.contrast.rep_head, decay)
        self.steps_done.fill_(int(iteration) + 1)
        self.total_steps.fill_(max(int(total_iterations), 0))

    def alpha_t(self) -> float:
        """Current unreliable percentage alpha_0 (1 - t/T)."""
        return unreliable_percent(self.alpha_0, int(self.steps_done), int(self.total_steps))

    def teacher_outputs(
        self, batch: dict[str, Any], logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher (M, K) probabilities and (M, R) representations on ``logits``' device;
        RuntimeError when the teacher's logits do not match the student's."""
        if self.teacher is None:
            raise RuntimeError(f"{self.name}: no teacher (use_teacher is off)")
        prob, rep_t = self.teacher.predict(batch, logits.device)
        if prob.shape != logits.shape:
            raise RuntimeError(
                f"{self.name}: teacher logits {tuple(prob.shape)} do not match the "
                f"student's {tuple(logits.shape)}"
            )
        return prob, rep_t
