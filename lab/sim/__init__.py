"""Synthetic observations: virtual cameras, detector-like keypoint noise, and training/test samples."""
