"""Readers and writers for the engine's inputs and outputs (footage, 2D keypoints, initial estimates, results)."""
