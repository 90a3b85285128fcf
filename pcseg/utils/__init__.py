"""Small helpers shared across layers (no torch, no other pcseg imports)."""
