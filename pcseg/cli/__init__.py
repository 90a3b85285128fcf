"""The ``pcseg`` command: one subcommand per job, each a thin argparse front over one
library function (the library never imports this package)."""
