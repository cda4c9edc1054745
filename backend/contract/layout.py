"""SMPL's skeleton and keypoint conventions, shared by every body model we load."""

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = len(SMPL_JOINT_NAMES)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO-WholeBody's six foot points follow COCO-17 where a model provides them.
FOOT6_NAMES = (
    "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe",
    "left_heel", "right_heel",
)

# SMPL pelvis joint of the neutral model in its rest pose (metres).  The free
# model is placed so its pelvis sits here too, so a `transl` estimated for SMPL
# puts our body at the same place.
SMPL_REST_PELVIS = (0.0, -0.2233, 0.0282)

# For licensed SMPL files: COCO face points are vertex picks (the ids every
# SMPL-based project uses, from smplx's vertex_ids table), body points are joints.
SMPL_COCO_FACE_VERTICES = {"nose": 332, "left_eye": 2800, "right_eye": 6260, "left_ear": 583, "right_ear": 4071}
SMPL_COCO_BODY_JOINTS = {
    "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
    "left_wrist": 20, "right_wrist": 21, "left_hip": 1, "right_hip": 2,
    "left_knee": 4, "right_knee": 5, "left_ankle": 7, "right_ankle": 8,
}
