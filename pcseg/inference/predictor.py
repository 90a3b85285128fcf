"""A trained checkpoint ready to label points: :class:`Predictor` (model, class spec, voxel
size, input features and the inputs fitted on the training files) and
:func:`load_predictor` (checkpoint + class spec -> Predictor).

Where the class spec and the fitted inputs (normalisation, units / CRS of the training
files) come from: the checkpoint's ``data_meta`` (the processed ``meta.json`` keys
``classes`` / ``inputs`` a training run stores), else the ``meta.json`` of the run's
``data.root`` (checkpoints written before ``data_meta``); without ``inputs`` (folders
prepared before the fitted normalisation) features are scaled per file as then. A
CLASSES.yaml given to predict must be the training one on :data:`PREDICT_CLASS_KEYS`
(names, label field, map, features; checked against the checkpoint's fingerprint by
:func:`check_given_classes`): another map would write every class back under another code.

:meth:`Predictor.logits` is the one place the network runs on voxels; the tiling
(:mod:`pcseg.inference.tiling`) and the two file paths above it call it.

The inference path (``fuse=True``, the default of :func:`load_predictor`): the checkpoint's
network with every batch norm folded into the convolution before it
(:func:`pcseg.models.minkunet.fused_for_inference`), run under ``torch.inference_mode``
(forward-only convolutions, bias and ReLU in place, each kernel map built once per input
and shared by every layer of that stride and kernel), dense neighbour tables up to
:data:`INFERENCE_DENSE_CELLS_PER_VOXEL` cells a voxel, and with ``precision="bf16"`` the
GEMMs in bfloat16 under CPU autocast (sums over kernel offsets in float32). Predictions
equal the unfused network's (fp32: logits within float rounding, labels equal; tested on a
synthetic scene and the real scan in tests/inference/test_predictor.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.data.dataset import FEATURE_WIDTHS, input_features
from pcseg.data.processed import fingerprint_changes
from pcseg.engine.checkpoint import config_from_checkpoint, data_meta_of
from pcseg.engine.evaluate import load_model_for_eval
from pcseg.engine.setup import resolve_device
from pcseg.models.inputs import sparse_input
from pcseg.models.minkunet import fused_for_inference
from pcseg.readers.custom import (
    ClassesSpec,
    TrainingInputs,
    classes_fingerprint,
    classes_from_dict,
    feature_channels,
    features_kind,
    load_classes,
)
from pcseg.sparse.tensor import SparseTensor


class PredictError(ValueError):
    """A predict run that cannot start (bad checkpoint, options, class spec)."""


#: precisions of the network's GEMMs at prediction (``--precision``)
PRECISIONS = ("fp32", "bf16")
#: dense neighbour tables of a tile's levels up to this many cells a voxel (training: 64):
#: tiles are bounded by the voxel budget, so the table is too (512 bytes a voxel at most)
INFERENCE_DENSE_CELLS_PER_VOXEL = 128


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`PredictError` unless ``precision`` is one of :data:`PRECISIONS` and,
    for bf16 on a CPU, the CPU has native bfloat16 GEMMs (oneDNN's check)."""
    if precision not in PRECISIONS:
        raise PredictError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and device.type == "cpu" and not bf16_supported():
        raise PredictError(
            "precision bf16: this CPU has no native bfloat16 GEMMs (AVX512-BF16 / AMX); use fp32"
        )


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 GEMMs natively (``torch.ops.mkldnn``'s check)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class Predictor:
    """A loaded checkpoint ready to label points (:func:`load_predictor`)."""

    model: torch.nn.Module
    spec: ClassesSpec
    class_names: list[str]
    voxel_size: float
    feature_keys: tuple[str, ...]
    in_channels: int
    device: torch.device
    checkpoint: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    inputs: TrainingInputs | None = None
    #: GEMM precision, one of :data:`PRECISIONS`
    precision: str = "fp32"
    #: dense neighbour tables up to this many cells a voxel (the engine's training default
    #: is :data:`pcseg.sparse.tensor.DENSE_CELLS_PER_VOXEL`)
    dense_cells_per_voxel: int = INFERENCE_DENSE_CELLS_PER_VOXEL

    def logits(self, vox: np.ndarray, pts: np.ndarray, feats: np.ndarray) -> torch.Tensor:
        """(M, K) float32 logits of the voxels ``vox`` (M, 3) int (already shifted), whose
        representative points / raw features are ``pts`` / ``feats``."""
        with torch.inference_mode():
            return self._logits(vox, pts, feats)

    def _logits(self, vox: np.ndarray, pts: np.ndarray, feats: np.ndarray) -> torch.Tensor:
        f = input_features(self.feature_keys, pts, feats)
        coords = np.empty((len(vox), 4), dtype=np.int32)
        coords[:, 0] = 0
        coords[:, 1:] = vox
        batch = {
            "coords": torch.from_numpy(coords).to(self.device),
            "feats": torch.from_numpy(np.ascontiguousarray(f)).to(self.device),
        }
        x = sparse_input(batch)
        if isinstance(x, SparseTensor):
            x.manager.dense_cells_per_voxel = self.dense_cells_per_voxel
        bf16 = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            out, _ = self.model(x)
        logits: torch.Tensor = out.float()
        return logits


def data_meta(state: dict[str, Any], cfg: Any) -> tuple[dict[str, Any], str]:
    """(the ``classes`` / ``inputs`` / ``fingerprint`` of a run's processed meta, where they
    were found): the checkpoint's ``data_meta``, else the run's ``data.root/meta.json``,
    else empty."""
    if isinstance(state.get("data_meta"), dict) and state["data_meta"]:
        return dict(state["data_meta"]), "the checkpoint"
    root = Path(str(cfg.data.root)) if cfg.data.root else None
    if root is not None and (root / "meta.json").is_file():
        meta = json.loads((root / "meta.json").read_text())
        return data_meta_of(meta), str(root / "meta.json")
    return {}, ""


#: what of a CLASSES.yaml given to ``pcseg predict`` must be the training one's (units,
#: columns, ignore and splits may differ: they describe the files or the scoring)
PREDICT_CLASS_KEYS = ("names", "label_field", "map", "features")


def trained_classes(meta: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The :func:`pcseg.readers.custom.classes_fingerprint` a checkpoint was trained with:
    its fingerprint's ``classes``, else that of its ``classes`` copy (checkpoints written
    before fingerprints), None for a benchmark run."""
    fp = meta.get("fingerprint")
    if isinstance(fp, dict) and isinstance(fp.get("classes"), dict):
        return dict(fp["classes"])
    if isinstance(meta.get("classes"), dict):
        return classes_fingerprint(classes_from_dict(meta["classes"], where))
    return None


def check_given_classes(
    spec: ClassesSpec, meta: dict[str, Any], where: str, checkpoint: str | Path, given: str
) -> None:
    """:class:`PredictError` naming every difference (``map: 2->ground became
    2->building``) when the class spec ``given`` to predict differs from the one the
    checkpoint was trained with on :data:`PREDICT_CLASS_KEYS`."""
    trained = trained_classes(meta, where)
    if trained is None:
        return
    now = classes_fingerprint(spec)
    keep = {k: trained.get(k) for k in PREDICT_CLASS_KEYS}
    changes = fingerprint_changes({"classes": keep}, {"classes": {k: now[k] for k in keep}})
    if changes:
        raise PredictError(
            f"{given} is not the class file checkpoint {checkpoint} was trained with: "
            f"{'; '.join(changes)}; pass that file, or leave out --classes (the checkpoint "
            "keeps a copy)"
        )


def _default_spec(state: dict[str, Any], cfg: Any) -> ClassesSpec | None:
    """The class spec of a run: the copy in its checkpoint / processed meta, if any."""
    meta, where = data_meta(state, cfg)
    if isinstance(meta.get("classes"), dict):
        return classes_from_dict(meta["classes"], where)
    names = state.get("class_names")
    if names and cfg.data.dataset in BENCHMARK_FEATURES:
        # a benchmark run (S3DIS / ScanNet / SemanticKITTI): its classes are in the checkpoint,
        # its input features are those of the benchmark's own files
        spec = {
            "names": list(names),
            "features": BENCHMARK_FEATURES[cfg.data.dataset],
            "voxel_size": float(cfg.data.voxel_size),
        }
        return classes_from_dict(spec, "the checkpoint's class list")
    return None


#: per-point fields of a raw file that stand for each benchmark's training features
BENCHMARK_FEATURES: dict[str, list[str]] = {
    "s3dis": ["rgb"],
    "scannet": ["rgb"],
    "semantickitti": ["intensity"],
}


def load_predictor(
    checkpoint: str | Path,
    classes: str | Path | ClassesSpec | None = None,
    device: str = "auto",
    precision: str = "fp32",
    fuse: bool = True,
) -> Predictor:
    """Load ``checkpoint`` (model + config stored in it) with the class spec ``classes``
    (CLASSES.yaml; default: the copy ``pcseg prepare custom`` kept in the run's processed
    meta.json). ``fuse``: batch norms folded into the convolutions (see the module
    docstring); ``precision``: one of :data:`PRECISIONS`. Raises :class:`PredictError`
    naming what is missing."""
    try:
        cfg = config_from_checkpoint(checkpoint, [])
    except Exception as e:
        raise PredictError(f"checkpoint {checkpoint}: cannot read its config: {e}") from e
    if device != "auto":
        cfg.train.device = device
    dev = resolve_device(cfg.train.device)
    if dev.type == "cuda" and os.environ.get("LOCAL_RANK") is not None and device == "auto":
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    check_precision(precision, dev)
    model, _method, state = load_model_for_eval(cfg, checkpoint, dev)
    if fuse:
        model = fused_for_inference(model)
    if classes is not None:
        spec = classes if isinstance(classes, ClassesSpec) else load_classes(classes)
        meta, where = data_meta(state, cfg)
        given = "the class spec" if isinstance(classes, ClassesSpec) else str(classes)
        check_given_classes(spec, meta, where, checkpoint, given)
    else:
        found = _default_spec(state, cfg)
        if found is None:
            raise PredictError(
                f"checkpoint {checkpoint}: no class spec found (data.root {cfg.data.root!r} has "
                "no meta.json with 'classes'); pass --classes CLASSES.yaml"
            )
        spec = found
    names = list(state.get("class_names") or spec.names)
    if len(names) != int(state["num_classes"]):
        raise PredictError(
            f"checkpoint {checkpoint}: {state['num_classes']} classes but class names {names}"
        )
    if list(spec.names) != names:
        raise PredictError(
            f"checkpoint {checkpoint} was trained on classes {names}, the class "
            f"spec lists {spec.names}"
        )
    in_ch = int(state["in_channels"])
    keys = tuple(cfg.data.feature_keys or (features_kind(spec),))
    stored = max(1, len(feature_channels(spec)))
    width = sum(FEATURE_WIDTHS.get(k_, stored) for k_ in keys)
    if width != in_ch:
        raise PredictError(
            f"checkpoint {checkpoint} expects {in_ch} input channels; features "
            f"{spec.features} with feature keys {list(keys)} give {width}"
        )
    meta, _ = data_meta(state, cfg)
    inputs = TrainingInputs.from_dict(meta["inputs"]) if meta.get("inputs") else None
    if inputs is not None and list(inputs.norm.channels) != list(feature_channels(spec)):
        raise PredictError(
            f"checkpoint {checkpoint} was trained on input channels "
            f"{list(inputs.norm.channels)}, the class spec gives {list(feature_channels(spec))}"
        )
    return Predictor(
        model=model,
        spec=spec,
        class_names=names,
        voxel_size=float(cfg.data.voxel_size),
        feature_keys=keys,
        in_channels=in_ch,
        device=dev,
        checkpoint=str(checkpoint),
        info={"iteration": state.get("iteration"), "model": cfg.model.name},
        inputs=inputs,
        precision=precision,
    )
