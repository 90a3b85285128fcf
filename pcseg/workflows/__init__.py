"""Whole jobs built from the library: train a config (preparing its data first), test a
checkpoint, the demo, and the method comparison. The ``pcseg`` commands are thin fronts
over these functions; nothing here parses command lines."""
