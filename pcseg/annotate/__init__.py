"""Interactive labelling of processed scenes (``pcseg annotate``).

* :mod:`pcseg.annotate.state`: the annotation state (pure numpy): add / erase / brush /
  region growing / undo / redo / counts / save / load, and ray picking;
* :mod:`pcseg.annotate.suggest`: where to click next, from a run's predictions;
* :mod:`pcseg.annotate.web`: the browser front end (viser), for headless servers.
"""

from pcseg.annotate.state import (
    AnnotationError,
    AnnotationState,
    ClassList,
    load_classes,
    pick_point,
    read_label_file,
)
from pcseg.annotate.suggest import Spot, suggest_spots, uncertainty

__all__ = [
    "AnnotationError",
    "AnnotationState",
    "ClassList",
    "Spot",
    "load_classes",
    "pick_point",
    "read_label_file",
    "suggest_spots",
    "uncertainty",
]
