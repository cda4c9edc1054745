"""A few hand-made SMPL poses (axis-angle by joint name) used by the demo, figures and tests."""
from __future__ import annotations

import math

import torch

from backend.contract.layout import NUM_JOINTS, SMPL_JOINT_NAMES

_DEG = math.pi / 180

# SMPL's rest is a T-pose facing +Z: a left arm lowers by rotating about -Z... i.e. -90 deg
# about Z; a hip flexes (thigh forward) by -X rotation, a knee bends (shin back) by +X.
EXAMPLE_POSES: dict[str, dict[str, tuple[float, float, float]]] = {
    "t_pose": {},
    "arms_down": {"left_shoulder": (0, 0, -75), "right_shoulder": (0, 0, 75)},
    "squat": {
        "left_hip": (-100, 0, -10), "right_hip": (-100, 0, 10),
        "left_knee": (110, 0, 0), "right_knee": (110, 0, 0),
        "left_ankle": (-20, 0, 0), "right_ankle": (-20, 0, 0),
        "spine1": (25, 0, 0),
        "left_shoulder": (0, 0, -40), "right_shoulder": (0, 0, 40),
        "left_elbow": (0, -70, 0), "right_elbow": (0, 70, 0),
    },
}


def example_pose(name: str, dtype=torch.float32) -> torch.Tensor:
    """Axis-angle pose (24,3) in radians."""
    aa = torch.zeros(NUM_JOINTS, 3, dtype=dtype)
    for joint, deg in EXAMPLE_POSES[name].items():
        aa[SMPL_JOINT_NAMES.index(joint)] = torch.tensor(deg, dtype=dtype) * _DEG
    return aa
