"""Typed YAML configs: nested dataclasses with defaults, ``_base_`` inheritance,
``--set key=value`` overrides and validation with clear errors.

A config file is a YAML mapping with the sections ``data``, ``model``, ``method``,
``train``, ``test`` and the scalar ``run_dir``. Every key has a default (see the
dataclasses below), so a file only states what differs. Example::

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
* ``method`` is ``name`` plus free keyword arguments for
  :func:`pcseg.methods.build_method`; they are checked against the method's
  constructor when the method registry can be imported.
* Relative paths (``data.root``, ``data.raw``, ``run_dir``, ...) are relative to the
  current working directory (run from the repository root).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from pcseg.utils.io import atomic_write_text

DATASETS = ("s3dis", "scannet", "semantickitti", "custom")  # custom: pcseg prepare custom


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the source and the key."""


# --------------------------------------------------------------------------- schema


@dataclass
class DataConfig:
    """Where the data is and how batches are made (see pcseg.data.dataset)."""

    #: dataset kind: 's3dis' | 'scannet' | 'semantickitti' (synthetic demo data is s3dis-format)
    dataset: str = "s3dis"
    #: processed folder (docs/ARCHITECTURE.md section 2)
    root: str = ""
    #: raw dataset folder; when set and ``root`` has no meta.json, tools/train.py prepares it
    raw: Optional[str] = None
    #: keyword arguments of pcseg.datasets.synthetic.write_synthetic_s3dis; when set and ``raw``
    #: is missing, the synthetic raw dataset is generated there first
    synthetic: Optional[dict] = None
    #: splits tools/prepare_data.py processes when it prepares ``raw`` (empty: the reader's defaults)
    prepare_splits: list = field(default_factory=list)
    #: label specs tools/prepare_data.py draws when it prepares ``raw`` (train's spec is always added)
    prepare_specs: list = field(default_factory=list)
    #: weak-label spec the method trains on ('full', '1%', '0.1%', '1pt', '20pps', ...)
    label_spec: str = "full"
    #: voxel edge in metres
    voxel_size: float = 0.05
    #: input features of a voxel (pcseg.data.dataset.FEATURE_KEYS: rgb, remission, xyz,
    #: xyz_norm); null: ['rgb'] for RGB data, ['remission'] for LiDAR
    feature_keys: Optional[list] = None
    #: crop training scenes to at most this many voxels (None: no crop)
    max_voxels: Optional[int] = None
    #: training augmentations: 'default' (pcseg.data.transforms.default_train_transforms
    #: for the data's feature kind), 'default_elastic' (the same plus elastic distortion),
    #: a list for pcseg.data.transforms.build_transforms (e.g. ['rotate_z',
    #: {name: scale, low: 0.8}]), or null / [] for none
    augmentations: Union[str, list, None] = "default"
    #: scenes per training batch (per process under DDP)
    batch_size: int = 2
    #: scenes per validation / test batch
    val_batch_size: int = 1
    #: DataLoader worker processes
    num_workers: int = 0
    #: each epoch visits every training scene this many times
    loop: int = 1
    train_split: str = "train"
    #: split validated during training (None: no validation)
    val_split: Optional[str] = "val"
    #: split tools/test.py evaluates by default
    test_split: str = "val"
    #: SemanticKITTI semantic-kitti.yaml (learning_map_inv for submissions); else from meta.json
    semantickitti_yaml: Optional[str] = None


@dataclass
class ModelConfig:
    """Network (pcseg.models.build_model)."""

    name: str = "MinkUNet34C"
    #: sparse-convolution backend: 'auto' ($PCSEG_SPARSE_BACKEND, else torch) | torch | spconv | minkowski
    backend: str = "auto"
    #: optional width override of the 8 stages (e.g. a slimmer MinkUNet14A for CPU demos)
    planes: Optional[list] = None
    #: optional depth override: residual blocks of the 8 stages
    layers: Optional[list] = None
    #: optional stem width override (MinkowskiEngine INIT_DIM = 32)
    init_dim: Optional[int] = None


@dataclass
class MethodConfig:
    """Training method: ``name`` plus keyword arguments of pcseg.methods.build_method."""

    name: str = "supervised"
    kwargs: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation loop (pcseg.engine.trainer)."""

    #: 'auto' (cuda if available) | 'cpu' | 'cuda' | 'cuda:N'
    device: str = "auto"
    #: torch intra-op CPU threads (torch.set_num_threads); null: torch's default
    threads: Optional[int] = None
    #: number of epochs (used when ``iterations`` is not set)
    epochs: Optional[int] = None
    #: fixed number of optimiser steps (takes precedence over ``epochs``)
    iterations: Optional[int] = None
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    #: per-iteration learning-rate schedule
    scheduler: Literal["onecycle", "poly", "cosine", "constant"] = "poly"
    #: linear warm-up iterations (poly / cosine / constant)
    warmup: int = 0
    #: warm-up starts at lr * warmup_factor
    warmup_factor: float = 0.001
    poly_power: float = 0.9
    #: cosine ends at lr * min_lr_ratio
    min_lr_ratio: float = 0.0
    #: OneCycle: fraction of iterations spent increasing the lr
    pct_start: float = 0.3
    #: OneCycle: initial lr = lr / div_factor
    div_factor: float = 25.0
    #: OneCycle: final lr = initial lr / final_div_factor
    final_div_factor: float = 1e4
    #: OneCycle: cycle momentum (SGD) / beta1 (AdamW) inversely to the lr
    cycle_momentum: bool = True
    #: mixed precision (torch.autocast): bf16 or fp16 on CUDA (fp16 with gradient scaling),
    #: bf16 only on CPU (about 2x faster sparse convolutions where the CPU has AVX512-BF16 / AMX)
    amp: bool = False
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    #: max global gradient norm (None or 0: no clipping)
    grad_clip: Optional[float] = None
    seed: int = 0
    #: torch.use_deterministic_algorithms + cudnn.deterministic
    deterministic: bool = False
    #: validate every N iterations (0: only at the end)
    val_every: int = 0
    #: log scalars every N iterations
    log_every: int = 10
    #: write checkpoints/last.pt every N iterations (0: only at validation and the end)
    checkpoint_every: int = 0
    #: stop when reaching this iteration as if interrupted (last.pt written; continue with
    #: --resume, which runs past it)
    stop_at: Optional[int] = None
    #: tqdm progress bar on rank 0
    progress: bool = True
    #: DistributedDataParallel(find_unused_parameters=...)
    find_unused_parameters: bool = False


@dataclass
class TestConfig:
    """Full-resolution evaluation (pcseg.engine.evaluate, tools/test.py)."""

    #: number of rotations about z, equally spaced over 360 degrees (1: none)
    tta_rotations: int = 1
    #: also evaluate each rotation mirrored in x (doubles the passes)
    tta_flips: bool = False
    #: write test/predictions/<scene>.npz
    save_predictions: bool = True
    #: write benchmark submission files (ScanNet .txt, SemanticKITTI .label)
    submission: bool = True
    #: which points enter the metrics: 'all' labelled points, or 'unlabelled' = only points
    #: that carry no weak label under data.label_spec and share no voxel with one (the
    #: transductive score of a weakly labelled scene, e.g. the real SemanticKITTI scan)
    score: Literal["all", "unlabelled"] = "all"


@dataclass
class Config:
    """A whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    #: run folder (docs/ARCHITECTURE.md section 6)
    run_dir: str = "runs/default"


_SECTIONS: dict[str, Any] = typing.get_type_hints(Config)


# --------------------------------------------------------------------- validation


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _check_value(value: Any, tp: Any, key: str, source: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, key, source)
            except ConfigError as e:
                errors.append(e)
        raise _type_error(value, tp, key, source)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"{source}: key {key!r} must be one of {', '.join(map(repr, choices))}, "
                f"got {value!r}{extra}"
            )
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(value, tp, key, source)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, tp, key, source)
        return value
    if tp is float:
        if isinstance(value, bool):
            raise _type_error(value, tp, key, source)
        if isinstance(value, (int, float)):
            return float(value)
        # PyYAML reads '1e-4' (no dot) as a string: accept numeric strings.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        raise _type_error(value, tp, key, source)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(value, tp, key, source)
        return value
    if tp is list:
        if not isinstance(value, list):
            raise _type_error(value, tp, key, source)
        return copy.deepcopy(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise _type_error(value, tp, key, source)
        return copy.deepcopy(value)
    raise TypeError(f"unsupported schema type {tp!r} for {key}")  # programming error


def _type_error(value: Any, tp: Any, key: str, source: str) -> ConfigError:
    return ConfigError(
        f"{source}: key {key!r} expects {_type_name(tp)}, "
        f"got {type(value).__name__} {value!r}"
    )


def _unknown(key: str, candidates: list[str], prefix: str, source: str) -> ConfigError:
    full = f"{prefix}{key}"
    hint = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    extra = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
    return ConfigError(f"{source}: unknown key {full!r}{extra}")


def _validate_partial(raw: dict, source: str) -> dict:
    """Check one (possibly partial) config mapping; return it with converted values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    top = list(_SECTIONS)
    for key, value in raw.items():
        if key == "_base_":
            continue
        if key not in _SECTIONS:
            raise _unknown(str(key), top, "", source)
        tp = _SECTIONS[key]
        if key == "run_dir":
            out[key] = _check_value(value, str, key, source)
            continue
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: section {key!r} must be a mapping, got {type(value).__name__} {value!r}"
            )
        if key == "method":
            out[key] = _validate_method(value, source)
            continue
        hints = _hints(tp)
        sec: dict[str, Any] = {}
        for k, v in value.items():
            if k == "_delete_":
                sec[k] = _check_value(v, bool, f"{key}._delete_", source)
                continue
            if k not in hints:
                raise _unknown(str(k), list(hints), f"{key}.", source)
            sec[k] = _check_value(v, hints[k], f"{key}.{k}", source)
        out[key] = sec
    return out


def _validate_method(value: dict, source: str) -> dict:
    sec: dict[str, Any] = {}
    for k, v in value.items():
        if k == "_delete_":
            sec[k] = _check_value(v, bool, "method._delete_", source)
        elif k == "name":
            sec[k] = _check_value(v, str, "method.name", source)
        elif k == "kwargs":
            raise ConfigError(
                f"{source}: write method keyword arguments directly under 'method' "
                f"(e.g. method.weight), not under 'method.kwargs'"
            )
        else:
            if not isinstance(k, str) or not k.isidentifier():
                raise ConfigError(f"{source}: method argument {k!r} is not a valid name")
            sec[k] = copy.deepcopy(v)
    return sec


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict):
            v = dict(v)
            replace = v.pop("_delete_", False)
            if not replace and isinstance(out.get(k), dict):
                out[k] = _deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _strip_delete(d: dict) -> dict:
    return {k: _strip_delete(v) if isinstance(v, dict) else v for k, v in d.items() if k != "_delete_"}


def _build(merged: dict, source: str) -> Config:
    merged = _strip_delete(merged)
    cfg = Config()
    for key, value in merged.items():
        if key == "run_dir":
            cfg.run_dir = value
        elif key == "method":
            value = dict(value)
            name = value.pop("name", cfg.method.name)
            cfg.method = MethodConfig(name=name, kwargs=value)
        else:
            section = getattr(cfg, key)
            for k, v in value.items():
                setattr(section, k, v)
    check_config(cfg, source)
    return cfg


def check_config(cfg: Config, source: str = "config") -> None:
    """Cross-field checks of a complete config; raises ConfigError."""
    d, t, s = cfg.data, cfg.train, cfg.test
    if d.dataset not in DATASETS:
        hint = difflib.get_close_matches(d.dataset, DATASETS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{source}: data.dataset must be one of {DATASETS}, got {d.dataset!r}{extra}")
    positive = {
        "data.voxel_size": d.voxel_size, "data.batch_size": d.batch_size,
        "data.val_batch_size": d.val_batch_size, "data.loop": d.loop,
        "train.log_every": t.log_every, "test.tta_rotations": s.tta_rotations,
    }
    for key, v in positive.items():
        if not v > 0:
            raise ConfigError(f"{source}: {key} must be > 0, got {v!r}")
    nonneg = {
        "data.num_workers": d.num_workers, "train.lr": t.lr, "train.weight_decay": t.weight_decay,
        "train.warmup": t.warmup, "train.val_every": t.val_every,
        "train.checkpoint_every": t.checkpoint_every, "train.momentum": t.momentum,
    }
    for key, v in nonneg.items():
        if v < 0:
            raise ConfigError(f"{source}: {key} must be >= 0, got {v!r}")
    for key, lst in (("model.planes", cfg.model.planes), ("model.layers", cfg.model.layers)):
        if lst is not None and (len(lst) != 8 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          and v > 0 for v in lst)):
            raise ConfigError(f"{source}: {key} must be 8 positive integers, got {lst!r}")
    if cfg.model.init_dim is not None and cfg.model.init_dim <= 0:
        raise ConfigError(f"{source}: model.init_dim must be > 0, got {cfg.model.init_dim}")
    check_model_name(cfg.model.name, source)
    if d.max_voxels is not None and d.max_voxels <= 0:
        raise ConfigError(f"{source}: data.max_voxels must be > 0 or null, got {d.max_voxels}")
    if d.feature_keys is not None and (
        not d.feature_keys or not all(isinstance(k, str) for k in d.feature_keys)
    ):
        raise ConfigError(f"{source}: data.feature_keys must be a non-empty list of strings, got {d.feature_keys!r}")
    if len(t.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in t.betas):
        raise ConfigError(f"{source}: train.betas must be two numbers in [0, 1), got {t.betas!r}")
    if t.iterations is not None and t.iterations <= 0:
        raise ConfigError(f"{source}: train.iterations must be > 0 or null, got {t.iterations}")
    if t.epochs is not None and t.epochs <= 0:
        raise ConfigError(f"{source}: train.epochs must be > 0 or null, got {t.epochs}")
    if t.iterations is None and t.epochs is None:
        raise ConfigError(f"{source}: set train.iterations or train.epochs")
    if not 0.0 < t.pct_start < 1.0:
        raise ConfigError(f"{source}: train.pct_start must be in (0, 1), got {t.pct_start}")
    if t.grad_clip is not None and t.grad_clip < 0:
        raise ConfigError(f"{source}: train.grad_clip must be >= 0 or null, got {t.grad_clip}")
    if t.threads is not None and t.threads <= 0:
        raise ConfigError(f"{source}: train.threads must be > 0 or null, got {t.threads}")
    if t.stop_at is not None and t.stop_at <= 0:
        raise ConfigError(f"{source}: train.stop_at must be > 0 or null, got {t.stop_at}")
    if not (t.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", t.device)):
        raise ConfigError(f"{source}: train.device must be auto | cpu | cuda | cuda:N, got {t.device!r}")
    if isinstance(d.augmentations, str) and d.augmentations not in ("default", "default_elastic"):
        raise ConfigError(
            f"{source}: data.augmentations must be 'default', 'default_elastic', a list or null, "
            f"got {d.augmentations!r}"
        )
    from pcseg.data.weak_labels import parse_spec

    for key, spec in [("data.label_spec", d.label_spec)] + [
        (f"data.prepare_specs[{i}]", sp) for i, sp in enumerate(d.prepare_specs)
    ]:
        try:
            parse_spec(spec)
        except ValueError as e:
            raise ConfigError(f"{source}: {key}: {e}") from None
    if not cfg.run_dir:
        raise ConfigError(f"{source}: run_dir must not be empty")
    check_method_kwargs(cfg.method, source)


def check_model_name(name: str, source: str = "config") -> None:
    """ConfigError when ``name`` is not in ``pcseg.models.MODELS`` (skipped if that is unavailable)."""
    try:
        from pcseg.models import MODELS
    except ImportError:  # pragma: no cover
        return
    if name not in MODELS:
        hint = difflib.get_close_matches(name, list(MODELS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{source}: unknown model.name {name!r}{extra}; known: {', '.join(MODELS)}")


def check_method_kwargs(method: MethodConfig, source: str = "config") -> None:
    """Check ``method.kwargs`` against the method class's constructor.

    Uses ``pcseg.methods.METHODS`` (name -> class) when that registry exists; a method
    name not in it, or a keyword its constructor does not take, raises ConfigError.
    """
    try:
        from pcseg import methods as _methods
    except ImportError:  # pragma: no cover - methods package always exists in the repo
        return
    registry = getattr(_methods, "METHODS", None)
    if not isinstance(registry, dict) or not registry:
        return
    if method.name not in registry:
        hint = difflib.get_close_matches(method.name, list(registry), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"{source}: unknown method.name {method.name!r}{extra}; known: {sorted(registry)}"
        )
    sig = inspect.signature(registry[method.name].__init__)
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n in params if n not in ("self", "num_classes", "feature_dim")]
    for k in method.kwargs:
        if k not in allowed:
            raise _unknown(k, allowed, "method.", source + f" (method {method.name!r})")


# ------------------------------------------------------------------- loading


def _load_yaml(path: Path) -> dict:
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


def _load_merged(path: Path, stack: tuple[Path, ...] = ()) -> dict:
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
    merged: dict = {}
    for b in bases:
        bpath = (path.parent / b) if not Path(b).is_absolute() else Path(b)
        if not bpath.is_file():
            raise ConfigError(f"{path}: _base_ file {b!r} not found (looked at {bpath})")
        merged = _deep_merge(merged, _load_merged(bpath, (*stack, resolved)))
    return _deep_merge(merged, checked)


def parse_override(item: str) -> dict:
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
    out: dict = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (with its ``_base_`` chain) and apply ``key=value`` overrides.

    Args:
        path: YAML file, or None for the defaults.
        overrides: strings like ``'train.lr=0.01'``, ``'method.name=erda'``.
    Returns:
        the validated :class:`Config`.
    Raises:
        ConfigError naming the file or override and the offending key.
    """
    merged = _load_merged(Path(path)) if path is not None else {}
    for item in overrides:
        part = _validate_partial(parse_override(item), f"--set {item}")
        merged = _deep_merge(merged, part)
    return _build(merged, str(path) if path is not None else "defaults")


def config_from_dict(d: dict, source: str = "dict") -> Config:
    """Validate a plain mapping (same layout as a YAML file, no ``_base_``) into a Config."""
    return _build(_validate_partial(d, source), source)


def config_to_dict(cfg: Config) -> dict:
    """Plain mapping of ``cfg`` in file layout (method kwargs flattened under 'method')."""
    out = dataclasses.asdict(cfg)
    kwargs = out["method"].pop("kwargs")
    out["method"].update(kwargs)
    return out


def dump_config(cfg: Config) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config to ``path`` atomically (reloads to an equal Config)."""
    atomic_write_text(path, "# resolved pcseg config\n" + dump_config(cfg))
