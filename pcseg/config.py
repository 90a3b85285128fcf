"""Typed YAML configs: pydantic models with defaults, ``_base_`` inheritance,
``--set key=value`` overrides and validation with clear errors.

A config file is a YAML mapping with the sections ``data``, ``model``, ``method``,
``train``, ``test`` and the scalar ``run_dir``. Every key has a default (see the models
below), so a file only states what differs. Example::

    _base_: ../base.yaml          # or a list; paths are relative to this file
    method: {name: erda, weight: 0.1, tau: 1.0}
    train: {lr: 0.01}

Rules:

* ``_base_`` files are loaded first (recursively, in list order) and the file's own
  mappings are deep-merged on top; a mapping holding ``_delete_: true`` replaces the
  inherited mapping instead of merging into it.
* Every file and every override is validated on its own, so an error names where the
  bad key came from: ``configs/x.yaml: unknown key 'train.lrr' (did you mean 'train.lr'?)``
  or ``--set train.lr=abc: key 'train.lr' expects float, got str 'abc'``.
* ``method`` is ``name`` plus the options of that method, written directly under
  ``method``; it validates into that method's own ``Options`` model (``cfg.method`` is an
  instance of it with ``name``: :data:`MethodConfig`, a union keyed on ``name``), which the
  trainer passes to the method as ``options=``.
* Relative paths (``data.root``, ``data.raw``, ``run_dir``, ...) are relative to the
  current working directory (run from the repository root).
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import operator
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from pcseg.config_files import resolve_config_path
from pcseg.data.superpoints import SuperpointOptions
from pcseg.images.transforms import ImageOptions
from pcseg.io.atomic import atomic_write_text
from pcseg.methods import METHODS
from pcseg.readers.synthetic import SyntheticRooms

#: custom: pcseg prepare custom; images / voc / cityscapes: processed image folders
#: (pcseg.images.processed: pcseg prepare images|voc|cityscapes, pcseg synthetic images)
Dataset = Literal["s3dis", "scannet", "semantickitti", "custom", "images", "voc", "cityscapes"]
DATASETS: tuple[str, ...] = typing.get_args(Dataset)
#: the datasets of the 2D path (pcseg.images, the networks of pcseg.models.dense)
IMAGE_DATASETS: tuple[str, ...] = ("images", "voc", "cityscapes")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the source and the key."""


# --------------------------------------------------------------------------- schema


def _yaml_float(value: Any) -> Any:
    """PyYAML reads '1e-4' (no dot) as a string: a finite numeric string is a float."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


#: a float key (ints and numeric strings accepted, bools not)
Float = Annotated[float, BeforeValidator(_yaml_float)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[Float, Field(ge=0)]
EightPositiveInts = Annotated[list[PosInt], Field(min_length=8, max_length=8)]


class _Section(BaseModel):
    # strict: no silent str -> int / int -> bool conversions (floats: see ``Float``)
    model_config = ConfigDict(extra="forbid", strict=True)


class SyntheticImagesConfig(_Section):
    """Synthetic demo images (pcseg.images.synthetic.write_synthetic_images): images per
    split, their size in pixels and the seed."""

    train: NonNegInt = 48
    val: NonNegInt = 16
    test: NonNegInt = 16
    size: PosInt = 96
    seed: int = 0


class DataConfig(_Section):
    """Where the data is and how batches are made (see pcseg.data.dataset)."""

    dataset: Dataset = "s3dis"  #: dataset kind (synthetic demo data is s3dis-format)
    root: str = ""  #: processed folder (docs/ARCHITECTURE.md section 2)
    # -- how ``pcseg train`` makes ``root`` when it is missing (pcseg.workflows.prepare)
    #: raw dataset folder; when set and ``root`` has no meta.json (or lacks a split / label
    #: spec below), ``pcseg train`` prepares it into ``root``
    raw: str | None = None
    #: synthetic S3DIS-format rooms (pcseg.readers.synthetic.SyntheticRooms: num_areas,
    #: rooms_per_area, seed, spacing, noise, alignment_angles); when set and ``raw`` is
    #: missing (or lacks an area of ``prepare_splits``), they are generated there first
    synthetic: SyntheticRooms | None = None
    #: splits prepared from ``raw`` (empty: the reader's defaults)
    prepare_splits: list[str] = Field(default_factory=list)
    #: label specs drawn when preparing ``raw`` (train's spec is always added)
    prepare_specs: list[str] = Field(default_factory=list)
    # -- what training reads from ``root``
    #: weak-label spec the method trains on ('full', '1%', '0.1%', '1pt', '20pps', ...)
    label_spec: str = "full"
    voxel_size: Annotated[Float, Field(gt=0)] = 0.05  #: voxel edge in metres
    #: input features of a voxel (pcseg.data.dataset.FEATURE_KEYS: rgb, remission, xyz,
    #: xyz_norm); null: ['rgb'] for RGB data, ['remission'] for LiDAR
    feature_keys: Annotated[list[str], Field(min_length=1)] | None = None
    #: crop training scenes to at most this many voxels (None: no crop)
    max_voxels: PosInt | None = None
    #: training augmentations: 'default' (pcseg.data.transforms.default_train_transforms
    #: for the data's feature kind), 'default_elastic' (the same plus elastic distortion),
    #: a list for pcseg.data.transforms.build_transforms (e.g. ['rotate_z',
    #: {name: scale, low: 0.8}]), or null / [] for none
    augmentations: Literal["default", "default_elastic"] | list[Any] | None = "default"
    batch_size: PosInt = 2  #: scenes per training batch (per process under DDP)
    val_batch_size: PosInt = 1  #: scenes per validation / test batch
    num_workers: NonNegInt = 0  #: DataLoader worker processes
    loop: PosInt = 1  #: each epoch visits every training scene this many times
    train_split: str = "train"
    val_split: str | None = "val"  #: split validated during training (None: no validation)
    test_split: str = "val"  #: split ``pcseg test`` evaluates by default
    #: SemanticKITTI semantic-kitti.yaml (learning_map_inv for submissions); else meta.json
    semantickitti_yaml: str | None = None
    #: over-segment the training scenes (pcseg.data.superpoints.SuperpointOptions: voxel_size,
    #: k, knn, max_edge, feature_weight, normal_weight, min_size; {} for the defaults) and
    #: give batches ``propagated_labels`` (weak labels spread to their superpoints) for a
    #: method's ``propagated_weight``; null: none
    superpoints: SuperpointOptions | None = None
    #: images only (data.dataset images / voc / cityscapes): training crop, random scale,
    #: flip, colour jitter, normalisation and the full-resolution test (whole or sliding
    #: window); see pcseg.images.transforms.ImageOptions
    images: ImageOptions = Field(default_factory=ImageOptions)
    #: images only: synthetic demo images written to ``raw`` (an images/ + masks/ folder)
    #: when it does not exist, then prepared into ``root`` (pcseg.workflows.prepare)
    synthetic_images: SyntheticImagesConfig | None = None


def is_image_data(data: DataConfig) -> bool:
    """Whether ``data`` is an image dataset (the 2D path) rather than point clouds."""
    return data.dataset in IMAGE_DATASETS


class ModelConfig(_Section):
    """Network (pcseg.models.build_model)."""

    name: str = "MinkUNet34C"
    #: sparse-convolution backend: 'auto' ($PCSEG_SPARSE_BACKEND, else torch) | torch |
    #: spconv | minkowski
    backend: str = "auto"
    #: optional width override of the 8 stages (e.g. a slimmer MinkUNet14A for CPU demos)
    planes: EightPositiveInts | None = None
    #: optional depth override: residual blocks of the 8 stages
    layers: EightPositiveInts | None = None
    #: optional stem width override (MinkowskiEngine INIT_DIM = 32)
    init_dim: PosInt | None = None
    #: dropout on the classifier's input in training mode, in [0, 1) (official ERDA
    #: RandLA-Net: 0.5); the features the method sees stay clean
    head_dropout: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    #: images, DeepLabV3Plus: the ResNet depth
    backbone: Literal["resnet50", "resnet101"] = "resnet50"
    #: images, DeepLabV3Plus: output stride (16: ASPP rates 6/12/18; 8: 12/24/36)
    output_stride: Literal[8, 16] = 16
    #: images, DeepLabV3Plus: a local torchvision ResNet state dict (.pth); nothing is
    #: downloaded; null: random initialisation
    pretrained: str | None = None


def _method_config(name: str, options: type[BaseModel]) -> type[BaseModel]:
    """``options`` (a method's own ``Options``) plus ``name: Literal[name]``, the tag of
    :data:`MethodConfig`; an instance is an ``options`` and is passed to the method as is."""
    return create_model(
        f"{options.__name__}Config",
        __base__=options,
        __doc__=f"The ``method`` section of method {name!r}: ``name`` + {options.__name__}.",
        name=(Literal[name], name),  # type: ignore[arg-type]  # a Literal of a runtime value
    )


#: each method's config model (its ``Options`` + ``name``), keyed on the method name
METHOD_CONFIGS: dict[str, type[BaseModel]] = {
    n: _method_config(n, cls.Options) for n, cls in METHODS.items()
}
DEFAULT_METHOD = "supervised"
if typing.TYPE_CHECKING:
    MethodConfig = Any  # one of METHOD_CONFIGS' models (built at import, opaque to mypy)
else:
    #: the ``method`` section: the config model of the method ``name`` names
    MethodConfig = Annotated[
        functools.reduce(operator.or_, METHOD_CONFIGS.values()), Field(discriminator="name")
    ]


class TrainConfig(_Section):
    """Optimisation loop (pcseg.engine.trainer)."""

    device: str = "auto"  #: 'auto' (cuda if available) | 'cpu' | 'cuda' | 'cuda:N'
    #: torch intra-op CPU threads (torch.set_num_threads); null: torch's default
    threads: PosInt | None = None
    epochs: PosInt | None = None  #: number of epochs (used when ``iterations`` is not set)
    #: fixed number of optimiser steps (takes precedence over ``epochs``)
    iterations: PosInt | None = None
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: NonNegFloat = 0.1
    momentum: NonNegFloat = 0.9
    nesterov: bool = False
    betas: Annotated[
        list[Annotated[Float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)
    ] = Field(default_factory=lambda: [0.9, 0.999])
    weight_decay: NonNegFloat = 1e-4
    #: per-iteration learning-rate schedule
    scheduler: Literal["onecycle", "poly", "cosine", "constant"] = "poly"
    warmup: NonNegInt = 0  #: linear warm-up iterations (poly / cosine / constant)
    warmup_factor: Float = 0.001  #: warm-up starts at lr * warmup_factor
    poly_power: Float = 0.9
    min_lr_ratio: Float = 0.0  #: cosine ends at lr * min_lr_ratio
    #: OneCycle: fraction of iterations spent increasing the lr
    pct_start: Annotated[Float, Field(gt=0, lt=1)] = 0.3
    div_factor: Float = 25.0  #: OneCycle: initial lr = lr / div_factor
    final_div_factor: Float = 1e4  #: OneCycle: final lr = initial lr / final_div_factor
    #: OneCycle: cycle momentum (SGD) / beta1 (AdamW) inversely to the lr
    cycle_momentum: bool = True
    #: mixed precision (torch.autocast): bf16 or fp16 on CUDA (fp16 with gradient scaling),
    #: bf16 only on CPU (about 2x faster sparse convolutions where the CPU has AVX512-BF16
    #: / AMX)
    amp: bool = False
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    grad_clip: NonNegFloat | None = None  #: max global gradient norm (None or 0: no clipping)
    seed: int = 0
    deterministic: bool = False  #: torch.use_deterministic_algorithms + cudnn.deterministic
    val_every: NonNegInt = 0  #: validate every N iterations (0: only at the end)
    log_every: PosInt = 10  #: log scalars every N iterations (and print a line, progress off)
    #: write checkpoints/last.pt every N iterations (0: only at validation and the end)
    checkpoint_every: NonNegInt = 0
    #: stop when reaching this iteration as if interrupted (last.pt written; continue with
    #: --resume, which runs past it)
    stop_at: PosInt | None = None
    progress: bool = True  #: tqdm progress bar on rank 0 (false: a plain line per log_every)
    find_unused_parameters: bool = False  #: DistributedDataParallel(find_unused_parameters=...)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+", value):
            raise ValueError("must be auto | cpu | cuda | cuda:N")
        return value


class TestConfig(_Section):
    """Full-resolution evaluation (pcseg.engine.evaluate, ``pcseg test``)."""

    #: number of rotations about z, equally spaced over 360 degrees (1: none)
    tta_rotations: PosInt = 1
    tta_flips: bool = False  #: also evaluate each rotation mirrored in x (doubles the passes)
    save_predictions: bool = True  #: write test/predictions/<scene>.npz
    #: write benchmark submission files (ScanNet .txt, SemanticKITTI .label)
    submission: bool = True
    #: which points enter the metrics: 'all' labelled points, or 'unlabelled' = only points
    #: that carry no weak label under data.label_spec and share no voxel with one (the
    #: transductive score of a weakly labelled scene, e.g. the real SemanticKITTI scan)
    score: Literal["all", "unlabelled"] = "all"


class Config(_Section):
    """A whole run."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=METHOD_CONFIGS[DEFAULT_METHOD])
    train: TrainConfig = Field(default_factory=TrainConfig)
    test: TestConfig = Field(default_factory=TestConfig)
    #: run folder (docs/ARCHITECTURE.md section 6)
    run_dir: Annotated[str, Field(min_length=1)] = "runs/default"


_SECTIONS = ("data", "model", "method", "train", "test")


# --------------------------------------------------------------------- errors


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union or origin is types.UnionType:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    return str(getattr(origin or tp, "__name__", tp))


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any, list[str]]:
    """Dotted key of an error location, the annotation of that key and the field names of
    the model holding it (for did-you-mean). Union-member tags in ``loc`` are skipped."""
    key, ann, names = "", None, list(model.model_fields)
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None:  # inside a plain value: a union-member tag
            break
        key = f"{key}.{part}" if key else str(part)
        names = list(fields)
        if part not in fields:  # an unknown key
            return key, None, names
        ann = fields[part].annotation
        current = next(
            (
                a
                for a in (ann, *typing.get_args(ann))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
    return key, ann, names


_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _config_error(
    error: ValidationError, model: type[BaseModel], source: str, prefix: str = ""
) -> ConfigError:
    """The first problem of ``error`` as a ConfigError naming source, key and expectation."""
    errors = error.errors()
    first = errors[0]
    key, ann, names = _walk(model, first["loc"])
    full, value, kind = prefix + key, first["input"], first["type"]
    if kind == "extra_forbidden":
        last = key.rsplit(".", 1)[-1]
        hint = difflib.get_close_matches(last, names, n=1, cutoff=0.6)
        parent = full[: len(full) - len(last)]
        extra = f" (did you mean '{parent}{hint[0]}'?)" if hint else ""
        return ConfigError(f"{source}: unknown key {full!r}{extra}")
    same_key = [e for e in errors if _walk(model, e["loc"])[0] == key]
    if kind in _BOUNDS:
        bound = next(iter((first.get("ctx") or {}).values()))
        return ConfigError(f"{source}: {full} must be {_BOUNDS[kind]} {bound}, got {value!r}")
    if kind == "literal_error" and len(same_key) == 1:
        choices = typing.get_args(ann)
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return ConfigError(
            f"{source}: key {full!r} must be one of {', '.join(map(repr, choices))}, "
            f"got {value!r}{extra}"
        )
    if kind == "value_error":
        msg = first["msg"].removeprefix("Value error, ")
        if not key:  # a check of several keys of one section
            return ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: {msg}")
        return ConfigError(f"{source}: {full} {msg}, got {value!r}")
    if kind in ("too_short", "too_long", "string_too_short"):
        return ConfigError(f"{source}: key {full!r}: {first['msg']}, got {value!r}")
    expected = _type_name(ann) if ann is not None else first["msg"]
    return ConfigError(
        f"{source}: key {full!r} expects {expected}, got {type(value).__name__} {value!r}"
    )


def _validate(model: type[BaseModel], data: Any, source: str, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, model, source, prefix) from None


# --------------------------------------------------------------------- validation


def _validate_partial(raw: Any, source: str) -> dict[str, Any]:
    """Check one (possibly partial) config mapping in file layout; return its entries
    (``_base_`` dropped, null sections dropped)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping, got {type(raw).__name__}")
    out = {k: v for k, v in raw.items() if k != "_base_" and not (k in _SECTIONS and v is None)}
    probe: dict[str, Any] = {}
    for key, value in out.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{source}: section {key!r} must be a mapping, got "
                    f"{type(value).__name__} {value!r}"
                )
            flag = value.get("_delete_", False)
            if not isinstance(flag, bool):
                raise ConfigError(
                    f"{source}: key '{key}._delete_' expects bool, got {type(flag).__name__} "
                    f"{flag!r}"
                )
            value = {k: v for k, v in value.items() if k != "_delete_"}
            if key == "method":  # its options are checked once merged (_check_merged_method)
                _check_method_layout(value, source)
                continue
        probe[key] = value
    _validate(Config, probe, source)
    return out


def _check_method_layout(value: dict[str, Any], source: str) -> None:
    """The checks of a file's method section that need no merging: no ``kwargs`` key, a
    known ``name`` when given."""
    if "kwargs" in value:
        raise ConfigError(
            f"{source}: write method keyword arguments directly under 'method' "
            f"(e.g. method.weight), not under 'method.kwargs'"
        )
    if "name" in value:
        check_method_name(value["name"], source)


def merge_dicts(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base`` (both in file layout; neither is changed): mappings
    merge key by key, anything else replaces; a mapping of ``over`` holding ``_delete_:
    true`` replaces the inherited mapping instead of merging into it."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict):
            v = dict(v)
            replace = v.pop("_delete_", False)
            if not replace and isinstance(out.get(k), dict):
                out[k] = merge_dicts(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _strip_delete(d: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _strip_delete(v) if isinstance(v, dict) else v for k, v in d.items() if k != "_delete_"
    }


def _build(merged: dict[str, Any], source: str) -> Config:
    merged = _strip_delete(merged)
    method = check_method(merged.get("method") or {}, source)
    cfg = _validate(Config, {**merged, "method": method}, source)
    assert isinstance(cfg, Config)
    check_config(cfg, source)
    return cfg


def check_config(cfg: Config, source: str = "config") -> None:
    """Checks of a complete config beyond the per-key types and ranges; raises ConfigError."""
    t = cfg.train
    if t.iterations is None and t.epochs is None:
        raise ConfigError(f"{source}: set train.iterations or train.epochs")
    check_model_name(cfg.model.name, source, images=is_image_data(cfg.data))
    if is_image_data(cfg.data):
        _check_image_config(cfg, source)
        return
    from pcseg.data.weak_labels import parse_spec

    specs = [("data.label_spec", cfg.data.label_spec)] + [
        (f"data.prepare_specs[{i}]", sp) for i, sp in enumerate(cfg.data.prepare_specs)
    ]
    for key, spec in specs:
        try:
            parse_spec(spec)
        except ValueError as e:
            raise ConfigError(f"{source}: {key}: {e}") from None


def _check_image_config(cfg: Config, source: str) -> None:
    """The checks of an image config: image label specs, no voxel-only settings."""
    from pcseg.images.labels import parse_image_spec

    for key, spec in [("data.label_spec", cfg.data.label_spec)] + [
        (f"data.prepare_specs[{i}]", sp) for i, sp in enumerate(cfg.data.prepare_specs)
    ]:
        try:
            parse_image_spec(spec)
        except ValueError as e:
            raise ConfigError(f"{source}: {key}: {e}") from None
    voxel_only = {
        "data.synthetic": cfg.data.synthetic,
        "model.planes": cfg.model.planes,
        "model.layers": cfg.model.layers,
        "data.superpoints": cfg.data.superpoints,
        "data.max_voxels": cfg.data.max_voxels,
    }
    for key, value in voxel_only.items():
        if value is not None:
            raise ConfigError(f"{source}: {key} is for point clouds, not images")
    aug = cfg.data.augmentations
    if aug not in ("default", None, []):
        raise ConfigError(
            f"{source}: data.augmentations of images is 'default' or null (the settings "
            f"are data.images), got {aug!r}"
        )


def check_model_name(name: str, source: str = "config", images: bool = False) -> None:
    """ConfigError when ``name`` is not in ``pcseg.models.MODELS`` (point clouds) or
    ``pcseg.models.dense.IMAGE_MODELS`` (``images``)."""
    from pcseg.models import MODELS
    from pcseg.models.dense import IMAGE_MODELS

    known = IMAGE_MODELS if images else MODELS
    if name not in known:
        other = MODELS if images else IMAGE_MODELS
        if name in other:
            kind = "point clouds" if images else "images"
            raise ConfigError(
                f"{source}: model.name {name!r} is a network for {kind}; for this data: "
                f"{', '.join(known)}"
            )
        hint = difflib.get_close_matches(name, list(known), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"{source}: unknown model.name {name!r}{extra}; known: {', '.join(known)}"
        )


def check_method_name(name: Any, source: str = "config") -> str:
    """``name`` when it is a key of ``pcseg.methods.METHODS``; else ConfigError with a
    did-you-mean and the known names."""
    if not isinstance(name, str):
        raise ConfigError(
            f"{source}: key 'method.name' expects str, got {type(name).__name__} {name!r}"
        )
    if name not in METHODS:
        hint = difflib.get_close_matches(name, list(METHODS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"{source}: unknown method.name {name!r}{extra}; known: {sorted(METHODS)}"
        )
    return name


def check_method(method: dict[str, Any], source: str = "config") -> BaseModel:
    """A method section in file layout (``name``, default ``supervised``, plus the options)
    validated into the method's config model (:data:`METHOD_CONFIGS`); an unknown name or
    a bad option raises ConfigError (keys named ``method.<option>``)."""
    name = check_method_name(method.get("name", DEFAULT_METHOD), source)
    model = METHOD_CONFIGS[name]
    values = {**method, "name": name}
    out: BaseModel = _validate(model, values, f"{source} (method {name!r})", "method.")
    return out


def _check_merged_method(merged: dict[str, Any], source: str) -> None:
    """Validate the method section merged so far, naming ``source`` (the file or override
    that last changed it)."""
    check_method(_strip_delete(dict(merged.get("method") or {})), source)


# ------------------------------------------------------------------- loading


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(raw).__name__}")
    return raw


def _load_merged(path: Path, stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise ConfigError(f"{path}: _base_ cycle: {chain}")
    raw = _load_yaml(path)
    checked = _validate_partial(raw, str(path))
    bases = raw.get("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for b in bases:
        bpath = (path.parent / b) if not Path(b).is_absolute() else Path(b)
        if not bpath.is_file():
            raise ConfigError(f"{path}: _base_ file {b!r} not found (looked at {bpath})")
        merged = merge_dicts(merged, _load_merged(bpath, (*stack, resolved)))
    merged = merge_dicts(merged, checked)
    if "method" in checked:
        _check_merged_method(merged, str(path))
    return merged


def parse_override(item: str) -> dict[str, Any]:
    """``'train.lr=0.01'`` -> ``{'train': {'lr': 0.01}}`` (value parsed with yaml.safe_load)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"--set {item}: bad key {key!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item}: cannot parse value: {e}") from None
    parts = key.split(".")
    out: dict[str, Any] = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Load ``path`` (with its ``_base_`` chain) and apply ``key=value`` overrides.

    Args:
        path: YAML file, or None for the defaults.
        overrides: strings like ``'train.lr=0.01'``, ``'method.name=erda'``.
    Returns:
        the validated :class:`Config`.
    Raises:
        ConfigError naming the file or override and the offending key.
    """
    merged = _load_merged(resolve_config_path(path)) if path is not None else {}
    for item in overrides:
        part = _validate_partial(parse_override(item), f"--set {item}")
        merged = merge_dicts(merged, part)
        if "method" in part:
            _check_merged_method(merged, f"--set {item}")
    return _build(merged, str(path) if path is not None else "defaults")


def config_from_dict(d: dict[str, Any], source: str = "dict") -> Config:
    """Validate a plain mapping (same layout as a YAML file, no ``_base_``) into a Config."""
    return _build(_validate_partial(d, source), source)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain mapping of ``cfg`` in file layout (``method.name`` first, then every option)."""
    out = cfg.model_dump()
    method = out["method"]
    out["method"] = {"name": method.pop("name"), **method}
    return out


def dump_config(cfg: Config) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config to ``path`` atomically (reloads to an equal Config)."""
    atomic_write_text(path, "# resolved pcseg config\n" + dump_config(cfg))
