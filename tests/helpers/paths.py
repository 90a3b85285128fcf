"""Where the repository and the real scans are (``PCSEG_REAL_DATA`` overrides the latter)."""

from __future__ import annotations

import os
from pathlib import Path

#: the repository root (the folder holding pcseg/, configs/ and tests/)
REPO = Path(__file__).resolve().parents[2]
#: the real scans, ../shared/data/real next to the repository unless PCSEG_REAL_DATA is set
REAL_DATA = Path(os.environ.get("PCSEG_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
