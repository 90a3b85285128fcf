"""Tests of pcseg.benchmarks, one module per benchmark module."""
