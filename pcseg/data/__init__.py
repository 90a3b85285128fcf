"""Processed scenes, voxelization, weak labels and the training data pipeline."""
