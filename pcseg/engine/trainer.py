"""The training loop: model + method, optimiser, schedule, AMP, DDP, checkpoints, logs.

Entry point :func:`train` (used by ``pcseg train``): a :class:`Trainer` built from the
config (setup, ``state_dict`` / ``load_state_dict``, ``step``, ``validate``) whose ``fit``
runs the loop. The data must exist already (the command layer prepares it). One run
writes (rank 0 only)::

    RUN/config.yaml                resolved config
    RUN/tb/                        TensorBoard: train/<loss term>, train/lr, diag/<name>,
                                   val/miou, val/oa, val/macc, val/iou/<class>
    RUN/checkpoints/last.pt        every train.checkpoint_every steps, at validation, at the end
    RUN/checkpoints/best.pt        best validation mIoU (voxels of data.val_split)
    RUN/summary.json               end-of-run summary (also printed)

Design notes:

* The loop counts optimiser steps (``train.iterations``, or ``train.epochs`` x steps per
  epoch); the lr schedule steps once per iteration.
* Exact resume: ``last.pt`` holds model, method (prototypes / teacher / queues are
  buffers or submodules), optimiser, scheduler, GradScaler, the python / numpy / torch /
  CUDA RNG states, epoch, step within the epoch, iteration, best metric and the loss
  history. Samples are pure functions of (seed, epoch, position) (pcseg.engine.data)
  and validation runs under :func:`pcseg.engine.checkpoint.preserve_rng`, so a
  deterministic run resumed from ``last.pt`` reproduces the uninterrupted run's
  per-iteration losses exactly.
* DDP: model and method are wrapped together (:class:`TrainModule`) so the method's
  trainable head is gradient-synchronised. ``broadcast_buffers=False``: DDP would
  otherwise overwrite every buffer (ERDA prototypes, U2PL queues) with rank 0's copy at
  each forward; a method keeps its own state consistent (ERDA all-reduces its class
  statistics). BatchNorm running statistics (network and method heads) are averaged
  over ranks after every step instead (:func:`pcseg.distributed.sync_buffers`).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn
from tqdm import tqdm

from pcseg import distributed as du
from pcseg.config import Config, config_to_dict, save_config
from pcseg.engine.builders import (
    TrainModule,
    bn_buffer_owner,
    build_method,
    build_model,
    model_feature_dim,
)
from pcseg.engine.checkpoint import (
    data_meta_of,
    get_rng_state,
    load_checkpoint,
    load_matching_weights,
    preserve_rng,
    save_checkpoint,
    set_rng_state,
)
from pcseg.engine.data import (
    batch_to_device,
    build_dataset,
    build_eval_loader,
    build_train_loader,
)
from pcseg.engine.optim import build_optimizer, build_scheduler
from pcseg.engine.setup import (
    autocast_factory,
    autocast_policy,
    device_kind,
    resolve_device,
    seed_everything,
    torch_globals,
)
from pcseg.engine.summary import build_summary, format_summary
from pcseg.io.atomic import atomic_write_json, remove_stale_temporaries
from pcseg.methods.common import labelled_class_counts
from pcseg.metrics import ConfusionMatrix, json_safe
from pcseg.models.inputs import network_input
from pcseg.utils.progress import RateMeter, progress_bar

# ------------------------------------------------------------------------ validation


@torch.no_grad()
def validate_voxels(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    num_classes: int,
    device: torch.device,
    autocast: Callable[[], Any],
) -> ConfusionMatrix:
    """Confusion matrix of argmax logits vs voxel labels over ``loader`` (all-reduced under DDP)."""
    was = model.training
    model.eval()
    conf = ConfusionMatrix(num_classes)
    try:
        for batch in loader:
            batch = batch_to_device(batch, device)
            with autocast():
                logits, _ = model(network_input(batch))
            conf.update(logits.argmax(1), batch["labels"])
    finally:
        model.train(was)
    conf.all_reduce()
    return conf


# ---------------------------------------------------------------------------- helpers


class _Window:
    """Running means of scalars over a logging window (NaN values skipped)."""

    def __init__(self) -> None:
        self.sum: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            if math.isfinite(v):
                self.sum[k] += v
                self.n[k] += 1

    def means(self) -> dict[str, float]:
        return {k: self.sum[k] / self.n[k] for k in self.sum if self.n[k]}

    def reset(self) -> None:
        self.sum.clear()
        self.n.clear()


def _scalars(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """The one-element tensors and numbers of ``out`` as floats, in ``out``'s order; one
    device-to-host copy per device (one sync on CUDA, not one per term)."""
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    got: dict[str, float] = {}
    for k, v in out.items():
        if torch.is_tensor(v):
            if v.numel() == 1:
                by_device.setdefault(v.device, []).append((k, v.detach().float().reshape(())))
        elif isinstance(v, (int, float)):
            got[k] = float(v)
    for items in by_device.values():
        got.update(zip([k for k, _ in items], torch.stack([t for _, t in items]).tolist()))
    return {k: got[k] for k in out if k in got}


def _tb_name(key: str) -> str:
    if key.startswith("diag/"):
        return key
    return f"train/{key}"


Resume: TypeAlias = "bool | str | os.PathLike[str]"


def find_checkpoint(
    resume: Resume, ckpt_dir: Path, verbose: bool = True
) -> tuple[dict[str, Any] | None, Path | None]:
    """``(state, path)`` of the checkpoint to resume from, ``(None, None)`` for a fresh start.

    ``resume``: False = fresh; True = ``ckpt_dir/last.pt`` when it exists (a note is printed
    when ``verbose`` and it does not); a path = that checkpoint (FileNotFoundError if absent).
    """
    if not resume:
        return None, None
    path = ckpt_dir / "last.pt" if isinstance(resume, bool) else Path(resume)
    if path.is_file():
        return load_checkpoint(path, map_location="cpu"), path
    if isinstance(resume, bool):
        if verbose:
            print(f"[train] --resume: {path} not found, starting from scratch")
        return None, None
    raise FileNotFoundError(f"resume checkpoint {path} does not exist")


# ---------------------------------------------------------------------------- trainer


class Trainer:
    """One training run of ``cfg``: build with ``Trainer(cfg, resume)``, run with :meth:`fit`.

    Construction sets up the process group (under torchrun), the device, the seeds, the
    data, model + method, optimiser, schedule, GradScaler and the logs (rank 0), and
    restores a checkpoint when resuming (see :func:`find_checkpoint`). It does not change
    torch's thread count or determinism flags: run it inside
    :func:`pcseg.engine.setup.torch_globals` (as :func:`train` does).

    Public state: ``cfg``, ``rank``, ``world``, ``device``, ``model``, ``method``, ``module``
    (both, :class:`TrainModule`), ``runner`` (``module`` or its DDP wrapper), ``optimizer``,
    ``scheduler``, ``scaler``, ``iteration``, ``epoch``, ``epoch_step``, ``total``,
    ``best`` (``{"miou", "iteration", "epoch"}``), ``history``
    (``{"loss": [...], "trace": [...], "val": [...]}``), ``class_names``.
    """

    def __init__(self, cfg: Config, resume: Resume = False, init: str | Path | None = None) -> None:
        self.cfg = cfg
        self.init = init
        self.t_start = time.time()
        self._init_process()
        self._build_data()
        state, ckpt_path = find_checkpoint(resume, self.ckpt_dir, verbose=self.main_proc)
        self._build_networks(state)
        self._build_optimisation()
        self.iteration, self.epoch, self.epoch_step = 0, 0, 0
        self.best: dict[str, Any] = {"miou": -1.0, "iteration": -1, "epoch": -1}
        self.history: dict[str, list] = {"loss": [], "trace": [], "val": []}
        self.elapsed_before = 0.0
        if state is not None:
            self._load_progress(state)
            self._report_resume(state, ckpt_path)
        self._wrap_ddp()
        # RNG last: everything above may draw random numbers (initialisation).
        if state is not None:
            self._load_rng(state["rng"])
        elif self.rank > 0:
            # distinct per-rank streams (sampling in methods)
            seed_everything(cfg.train.seed + 1000003 * self.rank)
        self.writer = self._open_logs(resumed=state is not None)
        self.window = _Window()
        self.last_window: dict[str, float] = {}
        self.interrupted = False
        self.t_loop0 = time.time()
        self.meter = RateMeter(self.total, start=self.iteration)  # restarted by fit

    # ------------------------------------------------------------------ construction

    def _init_process(self) -> None:
        """Process group, device, run folders, seeds."""
        cfg = self.cfg
        self.rank, self.world, local_rank = du.init_distributed(device_kind(cfg.train.device))
        self.device = resolve_device(cfg.train.device, local_rank, self.world)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # the summary's peak is this run's
        self.main_proc = self.rank == 0
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        du.barrier()  # data that rank 0 prepared before train() is there for every rank
        seed_everything(cfg.train.seed)

    def _build_data(self) -> None:
        """Training dataset, validation loader (None without ``data.val_split``), classes."""
        cfg = self.cfg
        self.train_ds = build_dataset(cfg, cfg.data.train_split, "train")
        self.val_loader: torch.utils.data.DataLoader | None = None
        if cfg.data.val_split:
            val_ds = build_dataset(cfg, cfg.data.val_split, "val", with_weak_labels=False)
            self.val_loader = build_eval_loader(cfg, val_ds, self.rank, self.world)
        self.class_names = list(self.train_ds.class_names)
        self.num_classes = len(self.class_names)
        self.in_channels = self.train_ds.in_channels

    def _build_networks(self, state: dict[str, Any] | None) -> None:
        """Model + method (identical initialisation on every rank); checkpoint weights.

        The network weights are loaded before ``method.on_train_start`` (an EMA teacher
        starts as a copy of the loaded network), the method's state after it."""
        cfg, device = self.cfg, self.device
        self.model = build_model(cfg, self.in_channels, self.num_classes).to(device)
        method = build_method(cfg, self.num_classes, model_feature_dim(self.model))
        if method.needs_class_counts:  # class_weighting: official_raw
            method.set_class_counts(labelled_class_counts(self.train_ds))
        self.method = method.to(device)
        self.module = TrainModule(self.model, self.method)
        if state is not None:
            self.model.load_state_dict(state["model"])
        elif self.init is not None:
            self._init_from(self.init)
        self.method.on_train_start(self.model)
        self.method.to(device)
        if state is not None:
            self.method.load_state_dict(state["method"])

    def _init_from(self, path: str | Path) -> None:
        """Fine-tuning: network weights from another run (see :func:`load_matching_weights`)."""
        prefix = getattr(self.model, "classifier_prefix", "final.")  # images: net.classifier.
        rep = load_matching_weights(self.model, path, self.class_names, prefix)
        self.init_report = rep
        if self.main_proc:
            head = (
                "kept (same class list)" if rep["same_classes"] else "new (the class list differs)"
            )
            print(
                f"[train] --init {path}: {len(rep['loaded'])} tensors loaded, "
                f"{len(rep['fresh'])} fresh; classifier {head}; method state not taken"
            )

    def _build_optimisation(self) -> None:
        """Training loader (from the start), length of the run, optimiser, schedule, AMP."""
        cfg = self.cfg
        self.loader, sampler = build_train_loader(
            cfg, self.train_ds, self.rank, self.world, 0, 0, self.device.type == "cuda"
        )
        self.steps_per_epoch = sampler.batches_per_epoch
        if cfg.train.iterations is not None:
            self.total = cfg.train.iterations
        elif cfg.train.epochs is not None:
            self.total = int(cfg.train.epochs) * self.steps_per_epoch
        else:  # the config check refuses this
            raise ValueError("set train.iterations or train.epochs")
        self.optimizer = build_optimizer(self.module.parameters(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.total)
        self.use_amp, self.amp_dtype = autocast_policy(
            cfg.train.amp, cfg.train.amp_dtype, self.device
        )
        fp16 = self.use_amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.autocast = autocast_factory(self.use_amp, self.amp_dtype, self.device)

    def _wrap_ddp(self) -> None:
        """``runner``: the DDP wrapper of ``module`` under torchrun, else ``module`` itself."""
        self.runner: nn.Module = self.module
        if self.world > 1:
            ddp_kwargs: dict[str, Any] = {
                "broadcast_buffers": False,
                "find_unused_parameters": self.cfg.train.find_unused_parameters,
            }
            if self.device.type == "cuda":
                ddp_kwargs["device_ids"] = [self.device.index]
            # BN statistics: start identical (DDP broadcasts parameters, not with buffers off)
            du.sync_buffers(bn_buffer_owner(self.module))
            self.runner = nn.parallel.DistributedDataParallel(self.module, **ddp_kwargs)
        self.bn_owner = bn_buffer_owner(self.module)

    def _open_logs(self, resumed: bool) -> Any:
        """Rank 0: config.yaml, the TensorBoard writer (returned; None elsewhere), a banner."""
        if not self.main_proc:
            return None
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_temporaries(self.run_dir, time.time(), recursive=True)
        if stale:
            names = ", ".join(str(p.relative_to(self.run_dir)) for p in stale[:5])
            print(
                f"[train] note: removed {len(stale)} leftover temporary file(s) of an "
                f"interrupted run from {self.run_dir}: {names}{' ...' if len(stale) > 5 else ''}"
            )
        save_config(cfg, self.run_dir / "config.yaml")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(
            str(self.run_dir / "tb"), purge_step=self.iteration if resumed else None
        )
        last = self.ckpt_dir / "last.pt"
        if not resumed and last.exists():
            print(f"[train] note: {last} exists and will be overwritten (use --resume to continue)")
        amp = f" (autocast {cfg.train.amp_dtype})" if self.use_amp else ""
        print(
            f"[train] {cfg.model.name} + {cfg.method.name} on {self.device} x{self.world}"
            f"{amp}: {self.num_parameters() / 1e6:.2f}M parameters, "
            f"{len(self.train_ds)} training samples, "
            f"{self.steps_per_epoch} steps/epoch, {self.total} iterations"
        )
        return writer

    def num_parameters(self) -> int:
        """Parameters of the network and the method."""
        return sum(p.numel() for p in self.module.parameters())

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: weights, optimiser / schedule / scaler, RNG (every rank's, gathered
        under DDP: a collective, call it on every rank), counters, best, history, metadata."""
        rng = get_rng_state()
        rng_list: Any = rng
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(gathered, rng)
            rng_list = gathered
        return {
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng_list,
            "iteration": self.iteration,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "best": dict(self.best),
            "history": self.history,
            "world_size": self.world,
            "elapsed_s": self.elapsed_before + (time.time() - self.t_loop0),
            "config": config_to_dict(self.cfg),
            "class_names": self.class_names,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "feature_dim": model_feature_dim(self.model),
            # the class spec, fitted inputs and fingerprint of the data (pcseg predict)
            "data_meta": data_meta_of(self.train_ds.meta),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (a :meth:`state_dict`): weights, optimiser, schedule,
        scaler, counters, best, history, the loader's position and, last, the RNG states."""
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self._load_progress(state)
        self._load_rng(state["rng"])

    def _load_progress(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.epoch, self.epoch_step = int(state["epoch"]), int(state["epoch_step"])
        self.best = dict(state["best"])
        self.history = state["history"]
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.loader, _ = build_train_loader(
            self.cfg,
            self.train_ds,
            self.rank,
            self.world,
            self.epoch,
            self.epoch_step,
            self.device.type == "cuda",
        )

    def _load_rng(self, rng_states: Any) -> None:
        """This rank's entry of a gathered list (the first when the list is shorter)."""
        if isinstance(rng_states, list):
            rng_states = rng_states[self.rank if self.rank < len(rng_states) else 0]
        set_rng_state(rng_states)

    def _report_resume(self, state: dict[str, Any], path: Path | None) -> None:
        if not self.main_proc:
            return
        if state.get("world_size", 1) != self.world:
            print(
                f"[train] warning: checkpoint written with {state.get('world_size')} ranks, "
                f"resuming with {self.world}: data order differs from the original run"
            )
        print(
            f"[train] resumed from {path} at iteration {self.iteration} "
            f"(epoch {self.epoch}, step {self.epoch_step})"
        )

    def _save(self, name: str, state: dict[str, Any]) -> None:
        if self.main_proc:
            save_checkpoint(self.ckpt_dir / name, state)

    # ------------------------------------------------------------------ training

    def step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on ``batch`` (a collated batch on any device); advances
        ``iteration`` / ``epoch`` / ``epoch_step``. Returns the loss terms and diagnostics
        of the batch as floats plus ``lr`` (the rate this step used).

        Raises FloatingPointError (naming the iteration and the terms) on a non-finite loss.
        """
        cfg = self.cfg
        batch = batch_to_device(batch, self.device)
        with self.autocast():
            out = self.runner(batch)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(self._non_finite_message(out))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        if self.world > 1:
            du.sync_buffers(self.bn_owner)
        self.method.after_optimizer_step(self.model, self.iteration, self.total)
        self.iteration += 1
        self.epoch_step += 1
        if self.epoch_step >= self.steps_per_epoch:
            self.epoch, self.epoch_step = self.epoch + 1, 0
        vals = _scalars(out)
        vals["lr"] = lr
        return vals

    def _non_finite_message(self, out: dict[str, torch.Tensor]) -> str:
        hint = ""
        if self.use_amp:
            alt = " or train.amp_dtype=bf16" if self.amp_dtype == torch.float16 else ""
            hint = f" (under {self.cfg.train.amp_dtype} autocast: try train.amp=false{alt})"
        return f"non-finite loss at iteration {self.iteration + 1}: {_scalars(out)}{hint}"

    def _record(self, vals: dict[str, float], pbar: Any) -> None:
        """Loss history, logging window; at the window's end the trace, TensorBoard, bar."""
        self.history["loss"].append(vals["loss"])
        self.window.add(vals)
        pbar.update(1)
        it = self.iteration
        self._report_speed()
        if it % self.cfg.train.log_every == 0 or it == self.total:
            self.last_window = {**self.window.means(), **self.method.window_diagnostics()}
            self.window.reset()
            self.history["trace"].append({"iteration": it, **self.last_window})
            if self.writer is not None:
                for k, v in self.last_window.items():
                    self.writer.add_scalar(_tb_name(k), v, it)
            pbar.set_postfix(
                loss=f"{self.last_window.get('loss', float('nan')):.4f}", lr=f"{vals['lr']:.2e}"
            )
            if self.main_proc and not self.cfg.train.progress:
                tqdm.write(self._log_line(vals["lr"]))

    def _log_line(self, lr: float) -> str:
        """The plain line per ``train.log_every`` when the bar is off: iteration, the
        window's loss terms, lr, speed and time to go."""
        terms = "  ".join(
            f"{k} {v:.4f}" for k, v in self.last_window.items() if k.startswith("loss")
        )
        return (
            f"[train] iteration {self.iteration}/{self.total}  {terms}  lr {lr:.2e}  "
            f"{self.meter.status()}"
        )

    def _report_speed(self) -> None:
        """Marks the iteration done; prints iterations/s and the time to finish once, after
        the first iterations (:meth:`pcseg.utils.progress.RateMeter.first_report`)."""
        self.meter.mark(self.iteration)
        line = self.meter.first_report()
        if line is not None and self.main_proc:
            tqdm.write(f"[train] {line}")

    def _after_step(self) -> bool:
        """Periodic validation and checkpoints; True when ``train.stop_at`` is reached."""
        t, it = self.cfg.train, self.iteration
        validated = False
        if t.val_every and it % t.val_every == 0 and it < self.total:
            rec = self.validate()
            validated = rec is not None
            if rec is not None and rec["improved"]:
                self._save("best.pt", self.state_dict())
        stop = t.stop_at is not None and it == t.stop_at and it < self.total
        if validated or stop or (t.checkpoint_every and it % t.checkpoint_every == 0):
            self._save("last.pt", self.state_dict())
        if stop:
            self.interrupted = True
            if self.main_proc:
                tqdm.write(
                    f"[train] stopping at iteration {it} (train.stop_at); resume with --resume"
                )
        return stop

    def validate(self) -> dict[str, Any] | None:
        """Voxel metrics on ``data.val_split`` (None without one), RNG streams untouched.

        Returns ``{"iteration", "epoch", "miou", "oa", "macc", "per_class_iou", "improved"}``
        (also appended to ``history["val"]``); updates ``best`` when mIoU improved.
        """
        if self.val_loader is None:
            return None
        with preserve_rng():
            conf = validate_voxels(
                self.model, self.val_loader, self.num_classes, self.device, self.autocast
            )
        m = conf.metrics(self.class_names)
        rec = {
            "iteration": self.iteration,
            "epoch": self.epoch,
            "miou": m["miou"],
            "oa": m["oa"],
            "macc": m["macc"],
            "per_class_iou": m["per_class_iou"],
        }
        self.history["val"].append(rec)
        improved = math.isfinite(m["miou"]) and m["miou"] > self.best["miou"]
        if improved:
            self.best = {"miou": m["miou"], "iteration": self.iteration, "epoch": self.epoch}
        self._log_validation(m, improved)
        rec["improved"] = improved
        return rec

    def _log_validation(self, m: dict[str, Any], improved: bool) -> None:
        if self.writer is None:
            return
        it = self.iteration
        for k in ("miou", "oa", "macc"):
            if math.isfinite(m[k]):
                self.writer.add_scalar(f"val/{k}", m[k], it)
        for n, v in m["per_class_iou"].items():
            if v is not None:
                self.writer.add_scalar(f"val/iou/{n}", v, it)
        tqdm.write(
            f"[val] iteration {it}: mIoU {100 * m['miou']:.2f}  OA {100 * m['oa']:.2f}  "
            f"mAcc {100 * m['macc']:.2f}" + ("  (best)" if improved else "")
        )

    def fit(self) -> dict[str, Any]:
        """Train to ``total`` iterations (or ``train.stop_at``); final validation and
        checkpoints; returns the summary (see :func:`train`)."""
        self.t_loop0 = time.time()
        it0 = self.iteration
        self.meter = RateMeter(self.total, start=it0)
        self.module.train()
        show = self.main_proc and self.cfg.train.progress
        pbar = progress_bar(
            total=self.total,
            initial=self.iteration,
            disable=not show,
            dynamic_ncols=True,
            desc=f"train {self.cfg.method.name}",
        )
        data_iter = iter(self.loader)
        while self.iteration < self.total:
            vals = self.step(next(data_iter))
            self._record(vals, pbar)
            if self._after_step():
                break
        pbar.close()
        del data_iter
        final_val = None if self.interrupted else self._final_checkpoints()
        du.barrier()
        return self._finish(final_val, it0)

    def _final_checkpoints(self) -> dict[str, Any] | None:
        """Final validation; last.pt, and best.pt when it improved (or without validation:
        the final weights are the best we know)."""
        final_val = self.validate()
        st = self.state_dict()
        if final_val is None or final_val["improved"]:
            self._save("best.pt", st)
        self._save("last.pt", st)
        return final_val

    def _finish(self, final_val: dict[str, Any] | None, it0: int) -> dict[str, Any]:
        """The summary (written and printed on rank 0); closes the TensorBoard writer."""
        t_loop = time.time() - self.t_loop0
        summary = build_summary(
            self.cfg,
            iterations=self.iteration,
            total=self.total,
            epoch=self.epoch,
            best=self.best,
            history=self.history,
            final_val=final_val,
            last_window=self.last_window,
            interrupted=self.interrupted,
            wall_s=time.time() - self.t_start,
            train_s=self.elapsed_before + t_loop,
            it_per_s=(self.iteration - it0) / t_loop if t_loop > 0 else float("nan"),
            device=self.device,
            world=self.world,
            n_params=self.num_parameters(),
            class_names=self.class_names,
        )
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.main_proc:
            atomic_write_json(self.run_dir / "summary.json", json_safe(summary))
            print(format_summary(summary))
        summary["loss_history"] = list(self.history["loss"])
        return summary


def train(
    cfg: Config,
    resume: Resume = False,
    on_finish: Callable[[TrainModule, int], None] | None = None,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train according to ``cfg``; returns the end-of-run summary (also written to
    RUN/summary.json).

    Args:
        cfg: validated config; its data must exist (prepare it first, on rank 0).
        resume: False = start fresh; True = continue from ``RUN/checkpoints/last.pt`` if it
            exists (fresh start otherwise); a path = continue from that checkpoint.
        on_finish: called on every rank as ``on_finish(module, rank)`` after the last step
            (e.g. to inspect the trained model and method in tests or notebooks).
        init: fine-tuning: start a fresh run from the network weights of this checkpoint
            (see :func:`pcseg.engine.checkpoint.load_matching_weights`); ignored on resume.
    Returns:
        summary dict (see :func:`pcseg.engine.summary.build_summary`); it additionally holds
        ``loss_history`` (per-iteration total loss of the whole run, resumed parts included)
        which is not written to summary.json.

    Runs under :func:`pcseg.engine.setup.torch_globals` (``train.threads``,
    ``train.deterministic``): torch's global state is restored afterwards, also on error.
    """
    try:
        with torch_globals(threads=cfg.train.threads, deterministic=cfg.train.deterministic):
            trainer = Trainer(cfg, resume=resume, init=init)
            summary = trainer.fit()
            if on_finish is not None:
                on_finish(trainer.module, trainer.rank)
            return summary
    finally:
        du.cleanup()


__all__ = ["Trainer", "find_checkpoint", "train", "validate_voxels"]
