"""Worker process of :func:`pcseg.benchmarks.harness.run_worker` (not imported by the package
``__init__``, so ``python -m pcseg.benchmarks._worker SPEC`` runs it without re-import)."""

from __future__ import annotations

import sys

from pcseg.benchmarks.harness import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
