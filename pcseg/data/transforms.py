"""Point-cloud augmentations: small composable callables.

Every transform is called as ``t(data, rng) -> data`` where ``data`` is a dict of numpy
arrays holding at least ``"coords"`` (N, 3) float32 metres and ``"feats"`` (N, C)
float32 (RGB in [0, 1] or remission); other keys (``"semantic"``, ...) pass through
untouched. All randomness comes from the passed ``np.random.Generator``, so a pipeline
is reproducible from its seed. Transforms return a new dict and never modify the input
arrays in place. Geometric transforms act about the cloud's centre (mean xy, z kept)
so the cloud stays where it was; colour transforms require 3-channel RGB feats.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

Data = dict[str, Any]
Transform = Callable[[Data, np.random.Generator], Data]


def _coords(data: Data) -> np.ndarray:
    c = np.asarray(data["coords"])
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"transform: data['coords'] must be (N, 3), got {c.shape}")
    return c


def _rgb(data: Data, who: str) -> np.ndarray:
    f = np.asarray(data["feats"])
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"{who}: needs RGB feats (N, 3), got {f.shape} (remission data?)")
    return f


def _centre(c: np.ndarray) -> np.ndarray:
    ctr = c.mean(axis=0)
    ctr[2] = 0.0
    return ctr


class Compose:
    """Apply transforms in order: ``Compose([a, b])(data, rng) == b(a(data, rng), rng)``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        for t in self.transforms:
            data = t(data, rng)
        return data

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomRotateZ:
    """Rotate about the vertical axis through the cloud's centre by an angle drawn
    uniformly from [-max_angle, max_angle] radians (default pi = full rotation)."""

    def __init__(self, max_angle: float = math.pi) -> None:
        self.max_angle = float(max_angle)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        c = _coords(data).astype(np.float64)
        a = rng.uniform(-self.max_angle, self.max_angle)
        ca, sa = math.cos(a), math.sin(a)
        rot = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
        ctr = _centre(c)
        return {**data, "coords": ((c - ctr) @ rot.T + ctr).astype(np.float32)}

    def __repr__(self) -> str:
        return f"RandomRotateZ(max_angle={self.max_angle})"


class RandomScale:
    """Scale about the cloud's centre by s ~ U[low, high] (per axis if ``anisotropic``)."""

    def __init__(self, low: float = 0.9, high: float = 1.1, anisotropic: bool = False) -> None:
        if not 0 < low <= high:
            raise ValueError(f"RandomScale: need 0 < low <= high, got {low}, {high}")
        self.low, self.high, self.anisotropic = float(low), float(high), bool(anisotropic)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        c = _coords(data).astype(np.float64)
        s = rng.uniform(self.low, self.high, size=3 if self.anisotropic else 1)
        ctr = _centre(c)
        return {**data, "coords": ((c - ctr) * s + ctr).astype(np.float32)}

    def __repr__(self) -> str:
        return f"RandomScale({self.low}, {self.high}, anisotropic={self.anisotropic})"


class RandomFlip:
    """Mirror x and/or y about the cloud's centre, each with probability ``p``."""

    def __init__(self, axes: Sequence[str] = ("x", "y"), p: float = 0.5) -> None:
        bad = [a for a in axes if a not in ("x", "y", "z")]
        if bad:
            raise ValueError(f"RandomFlip: unknown axes {bad}; use 'x', 'y', 'z'")
        self.axes, self.p = tuple(axes), float(p)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        c = _coords(data).astype(np.float64)
        ctr = _centre(c)
        out = c.copy()
        for a in self.axes:
            if rng.random() < self.p:
                i = "xyz".index(a)
                out[:, i] = 2 * ctr[i] - out[:, i]
        return {**data, "coords": out.astype(np.float32)}

    def __repr__(self) -> str:
        return f"RandomFlip(axes={self.axes}, p={self.p})"


class RandomJitter:
    """Add Gaussian noise N(0, sigma^2) clipped to [-clip, clip] (metres) to every coordinate."""

    def __init__(self, sigma: float = 0.005, clip: float = 0.02) -> None:
        self.sigma, self.clip = float(sigma), float(clip)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        c = _coords(data)
        noise = np.clip(rng.normal(0.0, self.sigma, size=c.shape), -self.clip, self.clip)
        return {**data, "coords": (c + noise).astype(np.float32)}

    def __repr__(self) -> str:
        return f"RandomJitter(sigma={self.sigma}, clip={self.clip})"


class ElasticDistortion:
    """Smooth random displacement field (the MinkowskiEngine / Pointcept augmentation).

    For each (granularity g metres, magnitude m) pair: Gaussian noise on a grid of
    spacing g is blurred with a 3x3x3 box filter (twice per axis), trilinearly
    interpolated at the points and added times m. Applied with probability ``p``.
    """

    def __init__(self, params: Sequence[tuple[float, float]] = ((0.2, 0.4), (0.8, 1.6)),
                 p: float = 0.95) -> None:
        self.params = [(float(g), float(m)) for g, m in params]
        self.p = float(p)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        from scipy.interpolate import RegularGridInterpolator
        from scipy.ndimage import convolve1d

        if rng.random() >= self.p:
            return data
        c = _coords(data).astype(np.float64)
        for g, mag in self.params:
            cmin = c.min(axis=0)
            dims = ((c - cmin).max(axis=0) // g).astype(int) + 3
            noise = rng.standard_normal((*dims, 3))
            box = np.ones(3) / 3.0
            for _ in range(2):
                for ax in range(3):
                    noise = convolve1d(noise, box, axis=ax, mode="constant", cval=0.0)
            axes = [np.linspace(lo - g, lo + g * (d - 2), d) for lo, d in zip(cmin, dims)]
            interp = RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0.0)
            c = c + interp(c) * mag
        return {**data, "coords": c.astype(np.float32)}

    def __repr__(self) -> str:
        return f"ElasticDistortion(params={self.params}, p={self.p})"


class ChromaticAutoContrast:
    """With probability ``p``, stretch each RGB channel to [0, 1] and blend with the
    original by factor b (~U[0, 1] unless ``blend_factor`` is given)."""

    def __init__(self, p: float = 0.2, blend_factor: float | None = None) -> None:
        self.p, self.blend_factor = float(p), blend_factor

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        f = _rgb(data, "ChromaticAutoContrast")
        if rng.random() >= self.p:
            return data
        lo, hi = f.min(axis=0), f.max(axis=0)
        scale = np.where(hi - lo > 1e-8, 1.0 / np.maximum(hi - lo, 1e-8), 1.0)
        contrast = (f - lo) * scale
        b = rng.random() if self.blend_factor is None else float(self.blend_factor)
        out = (1 - b) * f + b * contrast
        return {**data, "feats": np.clip(out, 0.0, 1.0).astype(np.float32)}

    def __repr__(self) -> str:
        return f"ChromaticAutoContrast(p={self.p}, blend_factor={self.blend_factor})"


class ChromaticTranslation:
    """With probability ``p``, add one random offset per channel, ~U[-ratio, ratio], clip to [0, 1]."""

    def __init__(self, p: float = 0.95, ratio: float = 0.05) -> None:
        self.p, self.ratio = float(p), float(ratio)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        f = _rgb(data, "ChromaticTranslation")
        if rng.random() >= self.p:
            return data
        shift = rng.uniform(-self.ratio, self.ratio, size=3)
        return {**data, "feats": np.clip(f + shift, 0.0, 1.0).astype(np.float32)}

    def __repr__(self) -> str:
        return f"ChromaticTranslation(p={self.p}, ratio={self.ratio})"


class ChromaticJitter:
    """With probability ``p``, add per-point Gaussian colour noise N(0, std^2), clip to [0, 1]."""

    def __init__(self, p: float = 0.95, std: float = 0.005) -> None:
        self.p, self.std = float(p), float(std)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        f = _rgb(data, "ChromaticJitter")
        if rng.random() >= self.p:
            return data
        noise = rng.normal(0.0, self.std, size=f.shape)
        return {**data, "feats": np.clip(f + noise, 0.0, 1.0).astype(np.float32)}

    def __repr__(self) -> str:
        return f"ChromaticJitter(p={self.p}, std={self.std})"


class RandomDropColor:
    """With probability ``p``, set every RGB value to 0 (forces geometry-only cues)."""

    def __init__(self, p: float = 0.2) -> None:
        self.p = float(p)

    def __call__(self, data: Data, rng: np.random.Generator) -> Data:
        f = _rgb(data, "RandomDropColor")
        if rng.random() >= self.p:
            return data
        return {**data, "feats": np.zeros_like(f, dtype=np.float32)}

    def __repr__(self) -> str:
        return f"RandomDropColor(p={self.p})"


def default_train_transforms(feat_kind: str, elastic: bool = False) -> Compose:
    """The standard training augmentation for ``feat_kind`` 'rgb' (indoor) or 'remission' (LiDAR).

    rgb: rotate z (full), scale 0.9-1.1, flip x/y, jitter, [elastic], auto-contrast,
    colour translation, colour jitter, drop colour (p=0.2).
    remission: rotate z (full), scale 0.95-1.05, flip x/y, jitter.
    """
    geo: list[Transform] = [RandomRotateZ(), RandomScale(0.9, 1.1) if feat_kind == "rgb" else RandomScale(0.95, 1.05),
                            RandomFlip(("x", "y")), RandomJitter()]
    if elastic:
        geo.append(ElasticDistortion())
    if feat_kind == "rgb":
        return Compose(geo + [ChromaticAutoContrast(), ChromaticTranslation(), ChromaticJitter(),
                              RandomDropColor()])
    if feat_kind in ("remission", "features"):
        return Compose(geo)
    raise ValueError(f"default_train_transforms: feat_kind must be 'rgb' or 'remission', got {feat_kind!r}")


TRANSFORMS: dict[str, type] = {
    "rotate_z": RandomRotateZ,
    "scale": RandomScale,
    "flip": RandomFlip,
    "jitter": RandomJitter,
    "elastic": ElasticDistortion,
    "auto_contrast": ChromaticAutoContrast,
    "color_translation": ChromaticTranslation,
    "color_jitter": ChromaticJitter,
    "drop_color": RandomDropColor,
}


def build_transforms(cfg: Sequence[str | dict[str, Any]] | None) -> Compose | None:
    """Build a Compose from a config list, e.g. ``["rotate_z", {"name": "scale", "low": 0.8}]``.

    Names are the keys of :data:`TRANSFORMS`; None -> None (no augmentation).
    """
    if cfg is None:
        return None
    out: list[Transform] = []
    for i, item in enumerate(cfg):
        if isinstance(item, str):
            name, kwargs = item, {}
        elif isinstance(item, dict) and "name" in item:
            kwargs = {k: v for k, v in item.items() if k != "name"}
            name = item["name"]
        else:
            raise ValueError(f"transforms[{i}]: expected a name or a dict with 'name', got {item!r}")
        if name not in TRANSFORMS:
            raise ValueError(f"transforms[{i}]: unknown transform {name!r}; known: {sorted(TRANSFORMS)}")
        out.append(TRANSFORMS[name](**kwargs))
    return Compose(out)
