"""The training loop: model + method, optimiser, schedule, AMP, DDP, checkpoints, logs.

Entry point :func:`train` (used by ``tools/train.py``). One run writes (rank 0 only)::

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
import random
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pcseg.config import Config, config_to_dict, save_config
from pcseg.models.inputs import sparse_input
from pcseg import distributed as du
from pcseg.engine.checkpoint import (
    get_rng_state, load_checkpoint, preserve_rng, save_checkpoint, set_rng_state,
)
from pcseg.engine.data import (
    batch_to_device, build_dataset, build_eval_loader, build_train_loader,
)
from pcseg.engine.metrics import ConfusionMatrix, format_table, json_safe
from pcseg.engine.optim import build_optimizer, build_scheduler
from pcseg.utils.io import atomic_write_json


# ----------------------------------------------------------------------------- setup


def resolve_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available else cpu; 'cuda' -> cuda:<local_rank>.

    An explicit ``cuda:N`` is refused when ``world_size`` > 1 (every rank would use GPU N).
    """
    if name.startswith("cuda:") and world_size > 1:
        raise ValueError(f"train.device: {name!r} pins every one of the {world_size} ranks to one GPU; "
                         "use 'cuda' or 'auto' under torchrun (each rank takes cuda:<LOCAL_RANK>)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but CUDA is not available (use --set train.device=cpu)")
        return torch.device("cuda", local_rank)
    if name.startswith("cuda:") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available")
    return torch.device(name)


def autocast_policy(amp: bool, amp_dtype: str, device: torch.device) -> tuple[bool, torch.dtype]:
    """``(enabled, dtype)`` of ``torch.autocast`` for ``train.amp`` / ``train.amp_dtype`` on
    ``device``: bf16 or fp16 on CUDA, bf16 only elsewhere (ValueError naming the key for fp16)."""
    dtype = torch.bfloat16 if amp_dtype == "bf16" else torch.float16
    if amp and device.type != "cuda" and dtype != torch.bfloat16:
        raise ValueError(f"train.amp_dtype: {amp_dtype!r} autocast needs CUDA; on {device.type} "
                         "use train.amp_dtype=bf16 (or train.amp=false)")
    return bool(amp), dtype


def seed_everything(seed: int) -> None:
    """Seed python ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool) -> None:
    """``torch.use_deterministic_algorithms(enabled, warn_only=True)`` plus the cuDNN flags.

    warn_only: an op without a deterministic implementation warns instead of failing.
    On CUDA, cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG`` (set here when unset).
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled and torch.cuda.is_available()


def build_model(cfg: Config, in_channels: int, num_classes: int) -> nn.Module:
    """``pcseg.models.build_model(model.name, in_channels, num_classes, backend)``.

    ``model.backend: auto`` passes None (``$PCSEG_SPARSE_BACKEND``, else the default backend).
    ``model.planes`` / ``layers`` / ``init_dim`` (optional) make a subclass of the named
    network with those stage widths / depths / stem width.
    """
    from pcseg import models

    backend = None if cfg.model.backend in ("auto", "") else cfg.model.backend
    m = cfg.model
    if m.planes is None and m.layers is None and m.init_dim is None:
        return models.build_model(m.name, in_channels, num_classes, backend=backend)
    if m.name not in models.MODELS:
        raise ValueError(f"unknown model {m.name!r}; valid names: {', '.join(models.MODELS)}")
    base = models.MODELS[m.name]
    attrs: dict[str, Any] = {}
    if m.planes is not None:
        attrs["PLANES"] = tuple(int(v) for v in m.planes)
    if m.layers is not None:
        attrs["LAYERS"] = tuple(int(v) for v in m.layers)
    if m.init_dim is not None:
        attrs["INIT_DIM"] = int(m.init_dim)
    custom = type(f"{base.__name__}Custom", (base,), attrs)
    return custom(in_channels, num_classes, backend=backend)


def build_method(cfg: Config, num_classes: int, feature_dim: int) -> nn.Module:
    """``pcseg.methods.build_method(method.name, num_classes, feature_dim, **method kwargs)``."""
    from pcseg.methods import build_method as _build

    return _build(cfg.method.name, num_classes, feature_dim, **cfg.method.kwargs)


class TrainModule(nn.Module):
    """Model + method as one module (so DDP synchronises the method's trainable head)."""

    def __init__(self, model: nn.Module, method: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Loss terms of the method for one batch (see Method.forward)."""
        logits, feats = self.model(sparse_input(batch))
        return self.method(logits, feats, batch)


def bn_buffer_owner(module: TrainModule) -> nn.Module:
    """A module view holding the buffers :func:`sync_buffers` must average.

    All buffers of the network, plus the buffers of BatchNorm layers inside the method
    (e.g. ERDA's projection head); the method's other buffers are its own business.
    """
    holder = nn.Module()
    holder.model = module.model
    bns = [m for m in module.method.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    holder.method_bns = nn.ModuleList(bns)
    return holder


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory in MiB: CUDA max allocated on a GPU run, else this process's max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "cpu_max_rss"


# ------------------------------------------------------------------------ validation


@torch.no_grad()
def validate_voxels(model: nn.Module, loader: torch.utils.data.DataLoader, num_classes: int,
                    device: torch.device, autocast: Callable[[], Any]) -> ConfusionMatrix:
    """Confusion matrix of argmax logits vs voxel labels over ``loader`` (all-reduced under DDP)."""
    was = model.training
    model.eval()
    conf = ConfusionMatrix(num_classes)
    try:
        for batch in loader:
            batch = batch_to_device(batch, device)
            with autocast():
                logits, _ = model(sparse_input(batch))
            conf.update(logits.argmax(1), batch["labels"])
    finally:
        model.train(was)
    conf.all_reduce()
    return conf


# ---------------------------------------------------------------------------- train


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


def train(cfg: Config, resume: bool | str = False,
          prepare: Callable[[Config], None] | None = None,
          on_finish: Callable[[TrainModule, int], None] | None = None) -> dict[str, Any]:
    """Train according to ``cfg``; returns the end-of-run summary (also written to RUN/summary.json).

    Args:
        cfg: validated config.
        resume: False = start fresh; True = continue from ``RUN/checkpoints/last.pt`` if it
            exists (fresh start otherwise); a path = continue from that checkpoint.
        prepare: called on rank 0 (before any rank reads data) to create missing data.
        on_finish: called on every rank as ``on_finish(module, rank)`` after the last step
            (e.g. to inspect the trained model and method in tests or notebooks).
    Returns:
        summary dict (see :func:`_summary`); it additionally holds ``loss_history``
        (per-iteration total loss of the whole run, resumed parts included) which is not
        written to summary.json.
    """
    t_start = time.time()
    wants_cuda = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and torch.cuda.is_available())
    kind = "cuda" if wants_cuda else "cpu"
    rank, world, local_rank = du.init_distributed(kind)
    device = resolve_device(cfg.train.device, local_rank, world)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the summary's peak is this run's
    main_proc = rank == 0
    run_dir = Path(cfg.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    prev_threads = torch.get_num_threads()
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if prepare is not None and main_proc:
            prepare(cfg)
        du.barrier()
        set_deterministic(cfg.train.deterministic)
        seed_everything(cfg.train.seed)

        # ---- data
        train_ds = build_dataset(cfg, cfg.data.train_split, "train")
        val_loader = None
        if cfg.data.val_split:
            val_ds = build_dataset(cfg, cfg.data.val_split, "val", with_weak_labels=False)
            val_loader = build_eval_loader(cfg, val_ds, rank, world)
        class_names = list(train_ds.class_names)
        num_classes = len(class_names)
        in_channels = train_ds.in_channels

        # ---- model + method (identical initialisation on every rank)
        model = build_model(cfg, in_channels, num_classes).to(device)
        method = build_method(cfg, num_classes, int(model.feature_dim)).to(device)
        module = TrainModule(model, method)

        state = None
        ckpt_path = None
        if resume:
            explicit = isinstance(resume, (str, os.PathLike)) and not isinstance(resume, bool)
            ckpt_path = Path(resume) if explicit else ckpt_dir / "last.pt"
            if ckpt_path.is_file():
                state = load_checkpoint(ckpt_path, map_location="cpu")
            elif isinstance(resume, bool):
                if main_proc:
                    print(f"[train] --resume: {ckpt_path} not found, starting from scratch")
                ckpt_path = None
            else:
                raise FileNotFoundError(f"resume checkpoint {ckpt_path} does not exist")
        if state is not None:
            model.load_state_dict(state["model"])
        method.on_train_start(model)
        method.to(device)
        if state is not None:
            method.load_state_dict(state["method"])

        total = cfg.train.iterations
        loader, sampler = build_train_loader(cfg, train_ds, rank, world, 0, 0, device.type == "cuda")
        steps_per_epoch = sampler.batches_per_epoch
        if total is None:
            total = int(cfg.train.epochs) * steps_per_epoch

        optimizer = build_optimizer(module.parameters(), cfg.train)
        scheduler = build_scheduler(optimizer, cfg.train, total)
        use_amp, amp_dtype = autocast_policy(cfg.train.amp, cfg.train.amp_dtype, device)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

        def autocast() -> Any:
            return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp)

        it, epoch, epoch_step = 0, 0, 0
        best = {"miou": -1.0, "iteration": -1, "epoch": -1}
        history: dict[str, list] = {"loss": [], "trace": [], "val": []}
        elapsed_before = 0.0
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler") is not None:
                scaler.load_state_dict(state["scaler"])
            it, epoch, epoch_step = int(state["iteration"]), int(state["epoch"]), int(state["epoch_step"])
            best = dict(state["best"])
            history = state["history"]
            elapsed_before = float(state.get("elapsed_s", 0.0))
            if state.get("world_size", 1) != world and main_proc:
                print(f"[train] warning: checkpoint written with {state.get('world_size')} ranks, "
                      f"resuming with {world}: data order differs from the original run")
            if main_proc:
                print(f"[train] resumed from {ckpt_path} at iteration {it} (epoch {epoch}, step {epoch_step})")
            loader, sampler = build_train_loader(cfg, train_ds, rank, world, epoch, epoch_step,
                                                 device.type == "cuda")

        if world > 1:
            ddp_kwargs: dict[str, Any] = {"broadcast_buffers": False,
                                          "find_unused_parameters": cfg.train.find_unused_parameters}
            if device.type == "cuda":
                ddp_kwargs["device_ids"] = [device.index]
            # BN statistics: start identical (DDP broadcasts parameters, not with buffers off)
            du.sync_buffers(bn_buffer_owner(module))
            runner: nn.Module = nn.parallel.DistributedDataParallel(module, **ddp_kwargs)
        else:
            runner = module
        bn_owner = bn_buffer_owner(module)

        # RNG last: everything above may draw random numbers (initialisation).
        if state is not None:
            rng_states = state["rng"]
            set_rng_state(rng_states[rank] if isinstance(rng_states, list) and rank < len(rng_states)
                          else (rng_states[0] if isinstance(rng_states, list) else rng_states))
        elif rank > 0:
            seed_everything(cfg.train.seed + 1000003 * rank)  # distinct per-rank streams (sampling in methods)

        writer = None
        if main_proc:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(run_dir / "tb"), purge_step=it if state is not None else None)
            if state is None and (ckpt_dir / "last.pt").exists():
                print(f"[train] note: {ckpt_dir / 'last.pt'} exists and will be overwritten (use --resume to continue)")
            n_params = sum(p.numel() for p in module.parameters())
            print(f"[train] {cfg.model.name} + {cfg.method.name} on {device} x{world}"
                  f"{f' (autocast {cfg.train.amp_dtype})' if use_amp else ''}: "
                  f"{n_params / 1e6:.2f}M parameters, {len(train_ds)} training samples, "
                  f"{steps_per_epoch} steps/epoch, {total} iterations")

        def checkpoint_state() -> dict[str, Any]:
            rng = get_rng_state()
            if world > 1:
                gathered: list[Any] = [None] * world
                torch.distributed.all_gather_object(gathered, rng)
                rng_list: Any = gathered
            else:
                rng_list = rng
            return {
                "model": model.state_dict(), "method": method.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": rng_list, "iteration": it, "epoch": epoch, "epoch_step": epoch_step,
                "best": dict(best), "history": history, "world_size": world,
                "elapsed_s": elapsed_before + (time.time() - t_loop0),
                "config": config_to_dict(cfg), "class_names": class_names,
                "in_channels": in_channels, "num_classes": num_classes,
                "feature_dim": int(model.feature_dim),
            }

        def save(name: str, st: dict[str, Any]) -> None:
            if main_proc:
                save_checkpoint(ckpt_dir / name, st)

        def run_validation() -> dict[str, Any] | None:
            nonlocal best
            if val_loader is None:
                return None
            with preserve_rng():
                conf = validate_voxels(model, val_loader, num_classes, device, autocast)
            m = conf.metrics(class_names)
            rec = {"iteration": it, "epoch": epoch, "miou": m["miou"], "oa": m["oa"], "macc": m["macc"],
                   "per_class_iou": m["per_class_iou"]}
            history["val"].append(rec)
            improved = math.isfinite(m["miou"]) and m["miou"] > best["miou"]
            if improved:
                best = {"miou": m["miou"], "iteration": it, "epoch": epoch}
            if writer is not None:
                for k in ("miou", "oa", "macc"):
                    if math.isfinite(m[k]):
                        writer.add_scalar(f"val/{k}", m[k], it)
                for n, v in m["per_class_iou"].items():
                    if v is not None:
                        writer.add_scalar(f"val/iou/{n}", v, it)
                tqdm.write(f"[val] iteration {it}: mIoU {100 * m['miou']:.2f}  OA {100 * m['oa']:.2f}  "
                           f"mAcc {100 * m['macc']:.2f}" + ("  (best)" if improved else ""))
            rec["improved"] = improved
            return rec

        window = _Window()
        last_window: dict[str, float] = {}
        interrupted = False
        t_loop0 = time.time()
        it0 = it
        module.train()
        pbar = tqdm(total=total, initial=it, disable=not (main_proc and cfg.train.progress),
                    dynamic_ncols=True, desc=f"train {cfg.method.name}")
        data_iter = iter(loader)
        while it < total:
            batch = next(data_iter)
            batch = batch_to_device(batch, device)
            with autocast():
                out = runner(batch)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()).all():
                vals = _scalars(out)
                alt = " or train.amp_dtype=bf16" if amp_dtype == torch.float16 else ""
                hint = (f" (under {cfg.train.amp_dtype} autocast: try train.amp=false{alt})"
                        if use_amp else "")
                raise FloatingPointError(f"non-finite loss at iteration {it + 1}: {vals}{hint}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.train.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if world > 1:
                du.sync_buffers(bn_owner)
            method.after_optimizer_step(model, it, total)
            it += 1
            epoch_step += 1
            if epoch_step >= steps_per_epoch:
                epoch, epoch_step = epoch + 1, 0

            vals = _scalars(out)
            history["loss"].append(vals["loss"])
            vals["lr"] = lr
            window.add(vals)
            pbar.update(1)
            if it % cfg.train.log_every == 0 or it == total:
                last_window = window.means()
                window.reset()
                history["trace"].append({"iteration": it, **last_window})
                if writer is not None:
                    for k, v in last_window.items():
                        writer.add_scalar(_tb_name(k), v, it)
                pbar.set_postfix(loss=f"{last_window.get('loss', float('nan')):.4f}", lr=f"{lr:.2e}")

            validated = False
            if cfg.train.val_every and it % cfg.train.val_every == 0 and it < total:
                rec = run_validation()
                validated = rec is not None
                if rec is not None and rec["improved"]:
                    save("best.pt", checkpoint_state())
            stop = cfg.train.stop_at is not None and it == cfg.train.stop_at and it < total
            if validated or stop or (cfg.train.checkpoint_every and it % cfg.train.checkpoint_every == 0):
                save("last.pt", checkpoint_state())
            if stop:
                interrupted = True
                if main_proc:
                    tqdm.write(f"[train] stopping at iteration {it} (train.stop_at); resume with --resume")
                break
        pbar.close()
        del data_iter

        final_val = None
        if not interrupted:
            final_val = run_validation()
            st = checkpoint_state()
            if final_val is not None and final_val["improved"]:
                save("best.pt", st)
            elif final_val is None:
                save("best.pt", st)  # no validation split: the final weights are the best we know
            save("last.pt", st)
        du.barrier()

        t_loop = time.time() - t_loop0
        summary = _summary(cfg, it, total, epoch, best, history, final_val, last_window,
                           interrupted, time.time() - t_start, elapsed_before + t_loop,
                           (it - it0) / t_loop if t_loop > 0 else float("nan"), device, world,
                           sum(p.numel() for p in module.parameters()), class_names)
        if writer is not None:
            writer.flush()
            writer.close()
        if main_proc:
            atomic_write_json(run_dir / "summary.json", json_safe(summary))
            print(format_summary(summary))
        summary["loss_history"] = list(history["loss"])
        if on_finish is not None:
            on_finish(module, rank)
        return summary
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn
        torch.set_num_threads(prev_threads)
        du.cleanup()


def _summary(cfg: Config, it: int, total: int, epoch: int, best: dict, history: dict,
             final_val: dict | None, last_window: dict, interrupted: bool, wall_s: float,
             train_s: float, it_per_s: float, device: torch.device, world: int,
             n_params: int, class_names: list[str]) -> dict[str, Any]:
    mem, mem_kind = peak_memory_mb(device)
    diag_final = {k: v for k, v in last_window.items() if k.startswith("diag/")}
    losses_final = {k: v for k, v in last_window.items() if not k.startswith("diag/")}
    return {
        "run_dir": str(cfg.run_dir),
        "dataset": cfg.data.dataset,
        "label_spec": cfg.data.label_spec,
        "model": cfg.model.name,
        "method": cfg.method.name,
        "finished": not interrupted,
        "iterations": it,
        "total_iterations": total,
        "epochs": epoch,
        "best_miou": best["miou"] if best["miou"] >= 0 else None,
        "best_iteration": best["iteration"] if best["iteration"] >= 0 else None,
        "best_epoch": best["epoch"] if best["epoch"] >= 0 else None,
        "final_val": None if final_val is None else {k: final_val[k] for k in ("miou", "oa", "macc", "per_class_iou")},
        "final_train": losses_final,
        "final_diagnostics": diag_final,
        "trace": history["trace"],
        "val_history": [{k: v for k, v in r.items() if k != "per_class_iou"} for r in history["val"]],
        "class_names": class_names,
        "wall_time_s": wall_s,
        "train_time_s": train_s,
        "iterations_per_s": it_per_s,
        "peak_memory_mb": mem,
        "peak_memory_kind": mem_kind,
        "device": str(device),
        "world_size": world,
        "num_parameters": n_params,
    }


def format_summary(s: dict[str, Any]) -> str:
    """Readable multi-line end-of-run summary."""
    def pct(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.2f}"

    lines = [
        "=" * 60,
        f"run        {s['run_dir']}  ({s['method']} / {s['model']} / {s['dataset']} {s['label_spec']})",
        f"status     {'finished' if s['finished'] else 'interrupted'} at iteration {s['iterations']}/{s['total_iterations']}",
        f"best mIoU  {pct(s['best_miou'])} (iteration {s['best_iteration']}, epoch {s['best_epoch']}; voxels of the val split)",
    ]
    if s["final_val"] is not None:
        fv = s["final_val"]
        lines.append(f"final val  mIoU {pct(fv['miou'])}  OA {pct(fv['oa'])}  mAcc {pct(fv['macc'])}")
    if s["final_train"]:
        lines.append("final loss " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(s["final_train"].items())))
    if s["final_diagnostics"]:
        lines.append("diagnostics " + "  ".join(f"{k[5:]} {v:.4g}" for k, v in sorted(s["final_diagnostics"].items())))
    lines.append(f"time       {s['train_time_s']:.1f} s training, {s['iterations_per_s']:.2f} it/s, "
                 f"peak memory {s['peak_memory_mb']:.0f} MiB ({s['peak_memory_kind']}), {s['device']} x{s['world_size']}")
    lines.append("=" * 60)
    return "\n".join(lines)


__all__ = ["train", "TrainModule", "resolve_device", "seed_everything", "set_deterministic",
           "build_model", "build_method", "validate_voxels", "format_summary",
           "format_table"]
