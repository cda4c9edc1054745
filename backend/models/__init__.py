"""Learned models: the keypoint regressor (initial estimate + context features) and the diffusion prior."""
