"""``python -m pcseg.benchmarks <benchmark> [options]``."""

import sys

from pcseg.benchmarks import main

sys.exit(main(prog="python -m pcseg.benchmarks"))
