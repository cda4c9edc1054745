"""Body-model layer: user SMPL file loading and the generated free body model."""
