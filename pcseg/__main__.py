"""``python -m pcseg``: the same as the ``pcseg`` command."""

from pcseg.cli.main import main

raise SystemExit(main())
