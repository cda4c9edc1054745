"""Training data: CMU mocap converted to SMPL parameters on our body model."""
