"""Visualization: palettes, colour modes, loading, headless renders, viewer, PLY, curves.

Open3D, matplotlib and tensorboard are imported lazily inside the functions that need them.
"""

from pcseg.viz.colors import (
    MODES,
    ModeUnavailable,
    available_modes,
    error_colors,
    label_colors,
    mode_colors,
    rgb_colors,
    scalar_colors,
    weak_colors,
)
from pcseg.viz.curves import plot_curves, read_scalars
from pcseg.viz.data import ViewData, ViewSource, load_view_data, open_source
from pcseg.viz.palettes import get_palette, legend_image, legend_text, semantickitti_palette
from pcseg.viz.ply import export_ply
from pcseg.viz.render import VIEWS, render_modes, save_png

__all__ = [
    "MODES",
    "ModeUnavailable",
    "available_modes",
    "error_colors",
    "label_colors",
    "mode_colors",
    "rgb_colors",
    "scalar_colors",
    "weak_colors",
    "plot_curves",
    "read_scalars",
    "ViewData",
    "ViewSource",
    "load_view_data",
    "open_source",
    "get_palette",
    "legend_image",
    "legend_text",
    "semantickitti_palette",
    "export_ply",
    "VIEWS",
    "render_modes",
    "save_png",
]
