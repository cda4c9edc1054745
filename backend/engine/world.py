"""A world frame on the floor for a static camera, foot contacts and planted feet (numpy only).

From camera-frame joints (OpenCV: x right, y down, z forward, metres) of one clip:

1. :func:`fit_ground` finds the floor plane from the feet's lowest points while they are slow,
   with a weak pull of the plane's normal towards the body's mean up direction (a person standing
   still gives a small cluster of foot points that barely fixes the tilt);
2. :func:`world_from_camera` builds the gravity-aligned world: Y up (the floor normal), the floor
   at Y = 0, X the camera's x axis laid flat on the floor, Z = X x Y (towards the camera, so the
   camera looks along -Z with pitch and roll only), origin on the floor under the first pelvis;
3. :func:`foot_contacts` marks per foot joint and frame whether it bears weight (near the floor
   and slow: one rule for estimates and ground truth, see backend.metrics);
4. :func:`plant_feet` moves the root (translation only) so that joints in contact stay put and
   sit on the floor, smoothly, and lifts any frame whose feet would go below;
5. :func:`leg_ik` bends the legs (hip, knee, ankle; nothing else) onto each contact run's floor
   anchor (:func:`foot_targets`), easing on and off over a few frames;
6. :func:`camera_is_static` fits the floor in shorter windows: when it drifts the camera moved
   and no world frame is produced (a moving camera is out of scope; say so instead).

:func:`estimate_world` runs 1-4 and 6 on joints (the motion prior's starting world).  The engine's
output, :func:`output_world`, reads brief contacts as floor evidence too (:func:`floor_candidates`,
:func:`level_up`), keeps contacts to what the image shows (:func:`still_in_image`), anchors each
contact run on its line of sight (:func:`ray_anchors`) and shifts the root only along the lines of
sight (:func:`plant_along_view`); :func:`world_result` adds the world SMPL body, 5, free soles lifted
by the legs (:func:`lift_free_feet`) and flat planted soles (:func:`level_planted_feet`);
:func:`out_fields` gives the optional OUT.npz fields.  The camera-frame result is never changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.contract.rotations import axis_angle_matrices as _axis_angle_matrix
from backend.contract.rotations import smallest_rotations as _rotation_between

# SMPL foot joints: left ankle, right ankle, left foot (ball), right foot.
FOOT_JOINTS = (7, 8, 10, 11)
# Height of each foot joint above the sole of the free body model's rest mesh (metres); with
# the shaped body's rest mesh, sole_offsets() gives the exact values.
DEFAULT_SOLE_OFFSETS_M = (0.074, 0.074, 0.027, 0.027)
CONTACT_HEIGHT_M = 0.05        # sole within this of the floor ...
CONTACT_SPEED_M_S = 0.3        # ... and the joint slower than this: it bears weight
# An estimate's planted foot moves with its errors: read it more loosely than the truth.
# Chosen on the tuning subjects: docs/tuning.md#estimate-contacts
ESTIMATE_CONTACT_SPEED_M_S = 0.8
ESTIMATE_CONTACT_HEIGHT_M = 0.10
ESTIMATE_CONTACT_SMOOTH_FRAMES = 7
# A contact run of an estimate goes on while the joint stays slow and its sole below this (m):
# the estimate's foot may rise while the true foot stands.
# Chosen on the tuning subjects: docs/tuning.md#estimate-contact-hold-height
ESTIMATE_CONTACT_HOLD_HEIGHT_M = 0.15
CONTACT_SMOOTH_FRAMES = 5     # speeds of estimates are measured on positions averaged over this
CANDIDATE_SPEED_M_S = 0.5      # slow enough to be a floor point when fitting the plane
# Pull of the plane normal towards the body's up: (foot point noise / body up uncertainty)^2 =
# (0.02 m / 0.1 rad)^2, against the foot points' scatter counted once per contact run (the
# frames of one footprint repeat the same point).
UP_PRIOR = 0.04
FIT_ROUNDS = 4                 # robust refits: points far above the plane are dropped
INLIER_M = 0.08                # a candidate more than this above the plane is not on the floor
# Moving camera: the floor fitted in windows may not tilt or shift more than this.
DRIFT_WINDOW_S = 3.0
# A floor needs evidence: at least this long a clip and this many slow foot points on the plane.
# Below it the fit falls back to the body's up direction and the drift check has nothing to compare,
# which read as a static camera (an 8-frame clip gave a camera 0.31 m high looking 4.9 deg up).
MIN_FLOOR_SECONDS = 1.0
MIN_FLOOR_POINTS = 16
DRIFT_MAX_DEG = 12.0
DRIFT_MAX_M = 0.3
# Foot planting weights (least squares, metres): contact pins, smoothness of the root shift,
# and how much the shift may move the body across the camera's view (depth is cheap to change).
PIN_WEIGHT = 1.0
SMOOTH_WEIGHT = 2.0
ACROSS_VIEW_WEIGHT = 0.3
ALONG_VIEW_WEIGHT = 0.01
PLANT_STRETCH = 240            # frames solved at once (dense least squares)
PLANT_OVERLAP = 40             # frames shared by neighbouring stretches (blended)


@dataclass
class Ground:
    """Floor plane in the camera frame: its points x satisfy normal . x + height = 0, with
    ``normal`` (3,) the unit up direction and ``height`` the camera's height above the floor
    (metres; the camera sits at the origin)."""
    normal: np.ndarray
    height: float
    points: int                # floor points used
    footprints: int = 0        # runs of consecutive floor points over the foot joints


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def body_up(joints: np.ndarray) -> np.ndarray:
    """Up direction (3,) of the body: from the middle of the ankles to the neck (12), the median over
    frames (F,24,3) of the unit vectors (steadier than the spine, which leans when walking)."""
    return _unit(np.median(_unit(joints[:, 12] - joints[:, [7, 8]].mean(1)), axis=0))


def speeds(points: np.ndarray, fps: float) -> np.ndarray:
    """Speed (F,...) in m/s of points (F,...,3): central differences, one-sided at the ends."""
    if len(points) < 2:
        return np.zeros(points.shape[:-1])
    return np.linalg.norm(np.gradient(points, axis=0), axis=-1) * fps


def sole_heights(feet: np.ndarray, normal: np.ndarray, height: float, offsets=DEFAULT_SOLE_OFFSETS_M) -> np.ndarray:
    """Height (F,4) of the sole under each foot joint above the floor; feet (F,4,3) camera frame."""
    return feet @ normal + height - np.asarray(offsets)


def fit_ground(joints: np.ndarray, fps: float, offsets=DEFAULT_SOLE_OFFSETS_M, up: np.ndarray | None = None,
               candidates: np.ndarray | None = None) -> Ground:
    """Floor plane from the slow, lowest foot joints of camera-frame joints (F,24,3).

    Weighted least squares for (normal, height) with the normal pulled towards the body's up;
    refitted a few times, dropping points far above the current plane (a foot in the air).
    ``candidates`` (F,4) bool: the foot joints that may be floor points (default: slower than
    CANDIDATE_SPEED_M_S)."""
    up = body_up(joints) if up is None else _unit(up)
    feet = joints[:, list(FOOT_JOINTS)]
    slow = speeds(feet, fps) < CANDIDATE_SPEED_M_S if candidates is None else candidates    # (F,4)
    normal = up
    height = float(np.median(-(feet @ normal) + np.asarray(offsets)))        # the lowest points' level
    keep = slow
    for _ in range(FIT_ROUNDS):
        soles = feet - np.asarray(offsets)[:, None] * normal                    # joints moved down to their soles
        h = soles @ normal + height
        # The floor is the lowest level the feet reach: candidates near it, never far above.
        keep = slow & (h < np.percentile(h[slow], 30) + INLIER_M) if slow.any() else slow
        pts = soles[keep]
        if len(pts) < 3:
            break
        centre = pts.mean(0)
        footprints = sum(len(_segments(keep[:, j])) for j in range(keep.shape[1]))
        scatter = ((pts - centre).T @ (pts - centre) / len(pts) * footprints
                   + UP_PRIOR * (np.eye(3) - np.outer(up, up)))
        w, v = np.linalg.eigh(scatter)
        normal = v[:, 0] * np.sign(v[:, 0] @ up)
        height = float(-(centre @ normal))
    footprints = sum(len(_segments(keep[:, j])) for j in range(keep.shape[1]))
    return Ground(normal=normal, height=height, points=int(keep.sum()), footprints=footprints)


def world_from_camera(ground: Ground, origin_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3,3) and translation t (3,) with X_world = R X_cam + t.

    Y = floor normal (up), X = camera x laid flat, Z = X x Y; ``origin_cam`` (3,) is dropped onto
    the floor and becomes the world origin."""
    y = ground.normal
    x = _unit(np.array([1.0, 0.0, 0.0]) - y[0] * y)
    z = np.cross(x, y)
    R = np.stack([x, y, z])
    foot = origin_cam - (origin_cam @ y + ground.height) * y
    return R, -R @ foot


def camera_angles(ground: Ground) -> tuple[float, float]:
    """(pitch, roll) in degrees: pitch > 0 when the camera looks down at the floor, roll > 0 when
    its x axis rises to the right (the horizon tilts)."""
    n = ground.normal                              # up, in camera coordinates (y down)
    pitch = np.degrees(np.arcsin(np.clip(-n[2], -1, 1)))
    roll = np.degrees(np.arcsin(np.clip(n[0], -1, 1)))
    return float(pitch), float(roll)


def foot_contacts(feet_world: np.ndarray, fps: float, offsets=DEFAULT_SOLE_OFFSETS_M,
                  max_speed: float = CONTACT_SPEED_M_S, max_height: float = CONTACT_HEIGHT_M,
                  smooth_frames: int = CONTACT_SMOOTH_FRAMES) -> np.ndarray:
    """Contact (F,4) bool of world foot joints (F,4,3) (Y up, floor 0): sole lower than
    ``max_height`` (m) and slower than ``max_speed`` (m/s) on positions averaged over
    ``smooth_frames``.  The defaults read the truth; estimates shake and float, so they are read
    with the ESTIMATE_CONTACT_* thresholds."""
    heights = feet_world[..., 1] - np.asarray(offsets)
    return (heights < max_height) & (speeds(_box(feet_world, smooth_frames), fps) < max_speed)


def estimated_contacts(feet_world: np.ndarray, fps: float, offsets=DEFAULT_SOLE_OFFSETS_M) -> np.ndarray:
    """Contacts (F,4) bool of an estimate's world foot joints (F,4,3): foot_contacts with the
    ESTIMATE_CONTACT_* thresholds, each run carried on through the neighbouring frames in which the
    joint stays slow and its sole below ESTIMATE_CONTACT_HOLD_HEIGHT_M (hysteresis on the height)."""
    found = foot_contacts(feet_world, fps, offsets, ESTIMATE_CONTACT_SPEED_M_S, ESTIMATE_CONTACT_HEIGHT_M,
                          ESTIMATE_CONTACT_SMOOTH_FRAMES)
    hold = foot_contacts(feet_world, fps, offsets, ESTIMATE_CONTACT_SPEED_M_S, ESTIMATE_CONTACT_HOLD_HEIGHT_M,
                         ESTIMATE_CONTACT_SMOOTH_FRAMES)
    out = np.zeros_like(found)
    for j in range(found.shape[1]):
        for a, b in _segments(hold[:, j]):
            out[a:b, j] = found[a:b, j].any()
    return out


def _box(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` frames of (F,...) (edges padded with the end values)."""
    if len(x) < width:
        return x
    pad = np.concatenate([np.repeat(x[:1], width // 2, 0), x, np.repeat(x[-1:], width // 2, 0)])
    c = np.cumsum(np.concatenate([np.zeros_like(x[:1]), pad]), 0)
    return (c[width:] - c[:-width]) / width


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs [start, stop) of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _shift_system(feet: np.ndarray, contacts: np.ndarray, view_dirs: np.ndarray, off: np.ndarray):
    """Dense least-squares rows (A, b) over the root shifts (F,3) flattened and one floor anchor
    (x, z) per contact run, for one stretch of frames (see plant_feet)."""
    f = len(feet)
    runs = [(j, a, b) for j in range(feet.shape[1]) for a, b in _segments(contacts[:, j])]
    n_var = 3 * f + 2 * len(runs)
    pin_rows = sum(3 * (b - a) for _, a, b in runs)
    A_pin, b_pin = np.zeros((pin_rows, n_var)), np.zeros(pin_rows)
    r = 0
    for k, (j, a, b) in enumerate(runs):
        for t in range(a, b):
            p = feet[t, j]
            A_pin[r, 3 * t], A_pin[r, 3 * f + 2 * k], b_pin[r] = 1.0, -1.0, -p[0]           # x + dx = anchor x
            A_pin[r + 1, 3 * t + 2], A_pin[r + 1, 3 * f + 2 * k + 1], b_pin[r + 1] = 1.0, -1.0, -p[2]
            A_pin[r + 2, 3 * t + 1], b_pin[r + 2] = 1.0, off[j] - p[1]                       # sole on the floor
            r += 3
    # Smoothness: second differences of every shift component.
    d2 = np.zeros((max(f - 2, 0), f))
    for t in range(f - 2):
        d2[t, t:t + 3] = (1.0, -2.0, 1.0)
    A_smooth = np.zeros((3 * len(d2), n_var))
    A_smooth[:, :3 * f] = np.kron(d2, np.eye(3)) * SMOOTH_WEIGHT
    # Staying put: across the line of sight costs more than along it.
    A_stay = np.zeros((3 * f, n_var))
    for t, d in enumerate(view_dirs):
        along = np.outer(d, d)
        A_stay[3 * t:3 * t + 3, 3 * t:3 * t + 3] = (np.sqrt(ACROSS_VIEW_WEIGHT) * (np.eye(3) - along)
                                                    + np.sqrt(ALONG_VIEW_WEIGHT) * along)
    A = np.concatenate([A_pin * PIN_WEIGHT, A_smooth, A_stay])
    b = np.concatenate([b_pin * PIN_WEIGHT, np.zeros(len(A_smooth) + len(A_stay))])
    return A, b


def plant_feet(feet_world: np.ndarray, contacts: np.ndarray, view_dirs: np.ndarray,
               offsets=DEFAULT_SOLE_OFFSETS_M) -> np.ndarray:
    """Root shift (F,3) (world, metres) pinning joints in contact and keeping every sole above the floor.

    feet_world (F,4,3), contacts (F,4), view_dirs (F,3) unit world directions from the camera to
    the body.  Least squares over the shifts and one floor anchor (x, z) per contact run: a joint
    in contact sits at its anchor and at its sole height; shifts vary smoothly (second
    differences) and move the body mostly along the camera's line of sight, which the image
    barely sees.  Solved in overlapping stretches of PLANT_STRETCH frames, blended linearly (the
    memory stays bounded on long clips).  Then any frame whose lowest sole is still below the
    floor is lifted."""
    off = np.asarray(offsets)

    def solve(s: int, e: int) -> np.ndarray:
        A, b = _shift_system(feet_world[s:e], contacts[s:e], view_dirs[s:e], off)
        # Normal equations: every unknown is tied down (shifts by staying put, anchors by their pins).
        return np.linalg.solve(A.T @ A, A.T @ b)[:3 * (e - s)].reshape(e - s, 3)

    shift = _in_stretches(len(feet_world), solve)
    lowest = (feet_world[..., 1] + shift[:, None, 1] - off).min(1)
    shift[:, 1] += np.maximum(0.0, -lowest)
    return shift


# Legs for the foot IK: (hip, knee, ankle, ball) per side, SMPL indices; FOOT_JOINTS order is
# (left ankle, right ankle, left ball, right ball).
LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))
IK_RAMP_FRAMES = 3             # a foot eases onto / off its floor anchor over this many frames


def foot_targets(feet: np.ndarray, contacts: np.ndarray, offsets,
                 anchors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Floor anchors (F,4,3) and weights (F,4) in [0, 1] for the foot IK.

    Each contact run of a joint gets one anchor: ``anchors`` (F,4,3) at the run's first frame when
    given (see ray_anchors), else its median floor position, at its sole height.  The weight is 1
    during the run and ramps to 0 over IK_RAMP_FRAMES on both sides."""
    f = len(feet)
    targets, weights = feet.copy(), np.zeros(contacts.shape)
    for j in range(feet.shape[1]):
        for a, b in _segments(contacts[:, j]):
            anchor = np.median(feet[a:b, j], axis=0) if anchors is None else anchors[a, j].copy()
            anchor[1] = offsets[j]
            lo, hi = max(a - IK_RAMP_FRAMES, 0), min(b + IK_RAMP_FRAMES, f)
            t = np.arange(lo, hi)
            w = np.clip(1 - np.maximum(a - t, t - (b - 1)) / (IK_RAMP_FRAMES + 1), 0, 1)
            better = w > weights[lo:hi, j]
            weights[lo:hi, j] = np.where(better, w, weights[lo:hi, j])
            targets[lo:hi, j] = np.where(better[:, None], anchor, targets[lo:hi, j])
    return targets, weights


def _foot_aim(ankle: np.ndarray, ball: np.ndarray, foot: np.ndarray) -> np.ndarray:
    """(N,3) direction from the ankle (N,3) that puts a foot of the length of ``foot`` (N,3) with its
    ball at the height of the wanted ``ball`` (N,3), turned towards it on the floor (Y up).  Aiming
    straight at the ball target instead buried the ball (5.6 cm below the floor on a tuning clip)
    when the two anchors lay closer on the floor than the foot is long."""
    length = np.linalg.norm(foot, axis=-1)
    rise = np.clip(ball[:, 1] - ankle[:, 1], -0.99 * length, 0.99 * length)
    flat = (ball - ankle) * [1.0, 0.0, 1.0]
    flat = np.where(np.linalg.norm(flat, axis=-1, keepdims=True) > 1e-6, flat, foot * [1.0, 0.0, 1.0])
    return _unit(flat) * np.sqrt(length ** 2 - rise ** 2)[:, None] + rise[:, None] * [0.0, 1.0, 0.0]


def leg_ik(global_rot: np.ndarray, local_rot: np.ndarray, joints: np.ndarray, rest_joints: np.ndarray,
           targets: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone IK of both legs towards foot targets; the pelvis and everything else stay.

    global_rot (F,24,3,3) world rotations of the joints, local_rot (F,24,3,3) SMPL's local ones,
    joints (F,24,3) world positions, rest_joints (24,3), targets (F,4,3) / weights (F,4) in
    FOOT_JOINTS order.  The ankle goes to its weighted target (or follows the ball's when only
    the ball is pinned: a raised heel); the knee bends about its current axis to reach it, the hip
    swings onto it, the foot keeps its world orientation unless the ball is pinned, then it turns
    towards it.  Returns the new local rotations and world joints."""
    local_rot, joints = local_rot.copy(), joints.copy()
    for side, (hip, knee, ankle, ball) in enumerate(LEGS):
        w_ankle, w_ball = weights[:, side, None], weights[:, side + 2, None]
        if not (w_ankle.any() or w_ball.any()):
            continue
        J1, J4, J7, J10 = (joints[:, k] for k in (hip, knee, ankle, ball))
        want7 = J7 + w_ankle * (targets[:, side] - J7) + (1 - w_ankle) * w_ball * (targets[:, side + 2] - J10)
        want10 = J10 + (want7 - J7)
        want10 = want10 + w_ball * (targets[:, side + 2] - want10)
        thigh = np.linalg.norm(rest_joints[knee] - rest_joints[hip])
        shin = np.linalg.norm(rest_joints[ankle] - rest_joints[knee])
        reach = np.clip(np.linalg.norm(want7 - J1, axis=-1), abs(thigh - shin) + 1e-4, thigh + shin - 1e-4)
        # Bend: angle between the thigh's direction and the shin's, now and wanted.
        u, v = J4 - J1, J7 - J4
        axis = np.cross(u, v)
        fallback = global_rot[:, hip, :, 0]                       # the hip's x axis: the knee's hinge at rest
        axis = np.where(np.linalg.norm(axis, axis=-1, keepdims=True) > 1e-6, axis, fallback)
        axis = _unit(axis)
        bend_now = np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), (u * v).sum(-1))
        bend_want = np.pi - np.arccos(np.clip((thigh ** 2 + shin ** 2 - reach ** 2) / (2 * thigh * shin), -1, 1))
        K = _axis_angle_matrix(axis, bend_want - bend_now)
        new7 = J4 + (K @ v[..., None])[..., 0]
        Q = _rotation_between(new7 - J1, want7 - J1)               # swing the hip onto the target
        G1 = Q @ global_rot[:, hip]
        G4 = Q @ K @ global_rot[:, knee]
        # The foot keeps its world orientation, turned towards a pinned ball.
        foot_now = global_rot[:, ankle] @ (rest_joints[ball] - rest_joints[ankle])
        G7 = np.where(w_ball[..., None] > 0,
                      _rotation_between(foot_now, _foot_aim(want7, want10, foot_now)) @ global_rot[:, ankle],
                      global_rot[:, ankle])
        parent = global_rot[:, 0]
        local_rot[:, hip] = np.swapaxes(parent, -1, -2) @ G1
        local_rot[:, knee] = np.swapaxes(G1, -1, -2) @ G4
        local_rot[:, ankle] = np.swapaxes(G4, -1, -2) @ G7
        joints[:, knee] = J1 + (G1 @ (rest_joints[knee] - rest_joints[hip])[:, None])[..., 0]
        joints[:, ankle] = joints[:, knee] + (G4 @ (rest_joints[ankle] - rest_joints[knee])[:, None])[..., 0]
        joints[:, ball] = joints[:, ankle] + (G7 @ (rest_joints[ball] - rest_joints[ankle])[:, None])[..., 0]
    return local_rot, joints


def _scaled_rotation(rot: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(N,3,3) rotations rot (N,3,3) scaled in angle by s (N,) about their own axes (0: identity)."""
    skew = np.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0], rot[:, 1, 0] - rot[:, 0, 1]], -1)
    angle = np.arctan2(np.linalg.norm(skew, axis=-1) / 2, (np.trace(rot, axis1=-2, axis2=-1) - 1) / 2)
    axis = np.where(np.linalg.norm(skew, axis=-1, keepdims=True) > 1e-9, skew, [1.0, 0.0, 0.0])
    return _axis_angle_matrix(_unit(axis), angle * s)


def lift_free_feet(local_rot: np.ndarray, joints: np.ndarray, rest_joints: np.ndarray, targets: np.ndarray,
                   weights: np.ndarray, offsets, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A free foot joint whose sole is below the floor is lifted onto it by its leg's IK, along its line of
    sight from ``camera`` (3,) (where the image sees it), not by lifting the whole body (which moved the body
    off the footage: up to 12 cm on a 2 s run).  local_rot (F,24,3,3), joints (F,24,3) world, the planted
    feet's IK targets (F,4,3) / weights (F,4) (kept) -> new local rotations and world joints."""
    feet = joints[:, list(FOOT_JOINTS)]
    off = np.asarray(offsets)
    below = (feet[..., 1] - off < -1e-4) & (weights < 1)
    if not below.any():
        return local_rot, joints
    from backend.body.body_model import SMPL_PARENTS

    rays = _unit(feet - camera)
    down = rays[..., 1] < -1e-3
    reach = np.where(down, (off - camera[1]) / np.where(down, rays[..., 1], -1.0), 0.0)
    on_ray = camera + reach[..., None] * rays
    raised = feet.copy()
    raised[..., 1] = off                            # a line of sight that does not come down: straight up
    lifted = np.where(down[..., None], on_ray, raised)
    targets = np.where(below[..., None], lifted, targets)
    return leg_ik(global_rotations(local_rot, SMPL_PARENTS), local_rot, joints, rest_joints, targets,
                  np.where(below, 1.0, weights))


def level_planted_feet(local_rot: np.ndarray, rest_joints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Planted soles lie flat on the floor: the foot rolled about its ankle-to-ball axis until its side
    axis is level, and the toes (SMPL's foot joints 10/11 turn only the toes) back to their rest angle,
    both by the ball's IK weight (F,4) (FOOT_JOINTS order).  No joint moves (the roll turns about the line
    through both), so joints_world and the overlay stay; without it the soles of the example shot sank
    8 mm into the floor (a tilted foot edge or bent toes are lower than the joints' rest heights say).
    local_rot (F,24,3,3) -> the new local rotations."""
    from backend.body.body_model import SMPL_PARENTS

    local_rot = local_rot.copy()
    glob = global_rotations(local_rot, SMPL_PARENTS)
    for side, (_, knee, ankle, ball) in enumerate(LEGS):
        w = weights[:, side + 2]
        if not w.any():
            continue
        axis = _unit(glob[:, ankle] @ (rest_joints[ball] - rest_joints[ankle]))
        side_axis = glob[:, ankle, :, 0]
        level = np.cross(axis, [0.0, 1.0, 0.0])
        level = level * np.sign((level * side_axis).sum(-1, keepdims=True) + 1e-12)
        flat = lambda v: v - (v * axis).sum(-1, keepdims=True) * axis
        a, b = flat(side_axis), flat(level)
        angle = np.arctan2((np.cross(a, b) * axis).sum(-1), (a * b).sum(-1))
        foot = _axis_angle_matrix(axis, angle * w) @ glob[:, ankle]
        local_rot[:, ankle] = np.swapaxes(glob[:, knee], -1, -2) @ foot
        local_rot[:, ball] = _scaled_rotation(local_rot[:, ball], 1.0 - w)
    return local_rot


def camera_is_static(joints: np.ndarray, fps: float, ground: Ground, offsets=DEFAULT_SOLE_OFFSETS_M,
                     candidates: np.ndarray | None = None, up=None) -> dict:
    """Floor fitted per window of DRIFT_WINDOW_S against the whole clip's: the largest tilt (deg)
    and shift (m) and whether both stay within DRIFT_MAX_DEG / DRIFT_MAX_M.  ``candidates`` (F,4)
    bool: the floor-point candidates (fit_ground's default when None); ``up``: a function of the
    window's joints giving the fit's up prior (body_up when None)."""
    n = max(int(DRIFT_WINDOW_S * fps), 8)
    tilt, shift = 0.0, 0.0
    for s in range(0, max(len(joints) - n + 1, 1), max(n // 2, 1)):
        part = joints[s:s + n]
        g = fit_ground(part, fps, offsets, up=None if up is None else up(part),
                       candidates=None if candidates is None else candidates[s:s + n])
        if g.points < 8:
            continue
        tilt = max(tilt, float(np.degrees(np.arccos(np.clip(g.normal @ ground.normal, -1, 1)))))
        # Compare the floor levels under the window's feet, where the plane is measured.
        centre = part[:, list(FOOT_JOINTS)].reshape(-1, 3).mean(0)
        shift = max(shift, abs(float((centre @ g.normal + g.height) - (centre @ ground.normal + ground.height))))
    return dict(static=bool(tilt <= DRIFT_MAX_DEG and shift <= DRIFT_MAX_M), drift_deg=round(tilt, 2),
                drift_m=round(shift, 3))


def sole_offsets(rest_joints: np.ndarray, rest_vertices: np.ndarray) -> tuple[float, ...]:
    """Height of each foot joint above the rest mesh's lowest vertex (the sole): rest (24,3), (V,3), Y up."""
    return tuple(float(rest_joints[j, 1] - rest_vertices[:, 1].min()) for j in FOOT_JOINTS)


def floor_status(joints: np.ndarray, fps: float, ground: Ground, drift: dict, enough_floor: bool) -> dict:
    """The world estimate's verdict with its drift measures: 'ok', 'moving camera' (drift says the camera
    moved), or 'too little floor evidence' (a clip shorter than MIN_FLOOR_SECONDS or not enough_floor)."""
    out = dict(status="ok" if drift["static"] else "moving camera", **drift, floor_points=ground.points)
    if len(joints) < MIN_FLOOR_SECONDS * fps or not enough_floor:
        out["status"] = "too little floor evidence"
    return out


def estimate_world(joints: np.ndarray, fps: float, offsets=DEFAULT_SOLE_OFFSETS_M, plant: bool = True,
                   contacts: np.ndarray | None = None) -> dict:
    """World frame for camera-frame joints (F,24,3) of a static camera.

    Returns ``status`` ('ok', 'moving camera', or 'too little floor evidence': a clip shorter than
    MIN_FLOOR_SECONDS or fewer than MIN_FLOOR_POINTS slow foot points) with the drift measures, and when ok:
    ``joints_world`` (F,24,3) (feet planted when ``plant``), ``root_shift`` (F,3) (the planting's
    world shift of the whole body), ``contacts`` (F,4) bool for FOOT_JOINTS, and the camera:
    ``world_R`` / ``world_t`` (X_world = R X_cam + t), ``camera_height`` (m),
    ``camera_pitch_deg`` / ``camera_roll_deg``, ``camera_position`` (3,) in the world.
    ``contacts`` (F,4) bool, when given (the motion prior's), replace the ones read from the feet."""
    joints = np.asarray(joints, np.float64)
    ground = fit_ground(joints, fps, offsets)
    drift = camera_is_static(joints, fps, ground, offsets)
    out = floor_status(joints, fps, ground, drift, ground.points >= MIN_FLOOR_POINTS)
    if out["status"] != "ok":
        return out
    R, t = world_from_camera(ground, joints[0, 0])
    world = joints @ R.T + t
    feet = world[:, list(FOOT_JOINTS)]
    if contacts is None:
        contacts = estimated_contacts(feet, fps, offsets)
    shift = plant_feet(feet, contacts, _unit(world[:, 0] - t), offsets) if plant else np.zeros((len(world), 3))
    pitch, roll = camera_angles(ground)
    out.update(joints_world=world + shift[:, None], root_shift=shift, contacts=contacts, world_R=R, world_t=t,
               camera_height=ground.height, camera_pitch_deg=pitch, camera_roll_deg=roll, camera_position=t)
    return out


# -- The engine's world output (world_result) --------------------------------------------------------------
# estimate_world above is also the motion prior's starting world (backend.engine.motion_video); the output
# reads more floor evidence, keeps contacts to what the image shows and plants along the lines of sight.
# Brief contacts (a running stance, a landing): the smoothed estimate's foot never quite stops there, but
# it is at its slowest; such a frame is a floor point when slower than this (m/s).  On 2 s clips of CMU
# runs, leaps and stumbles (docs/world.md) the slow points alone were 2-10 on 5 of 19 clips.
BRIEF_CONTACT_SPEED_M_S = 1.5
BRIEF_CONTACT_FRAMES = 2       # ... its slowest within this many frames on each side
TRAVEL_M = 0.5                 # level_up: a pelvis path this long fixes the tilt along it ...
TRAVEL_MAX_SLOPE = 0.5         # ... unless it rises more steeply than this against body_up (sine)
MIN_FOOTPRINTS = 4             # floor evidence: MIN_FLOOR_POINTS points, or this many separate footprints
# A contact is what the image shows still: a run ends where its joint moves across the line of sight
# faster than IMAGE_SPEED_M_S (3-frame averages) or leaves the run's mean direction by IMAGE_STILL_M
# (metres at its distance; the estimate's still feet shake ~1-2 cm in the image; 3, 4 or 5 cm changed the
# overlay of the clips of docs/world.md by under 0.05 px).
IMAGE_SPEED_M_S = 0.25
IMAGE_STILL_M = 0.04
IMAGE_GAP_FRAMES = 2           # frames left free where a run is split (the IK eases between anchors)


def level_up(joints: np.ndarray) -> np.ndarray:
    """Up (3,) of camera-frame joints (F,24,3) from the body over the clip: body_up, made perpendicular to
    the pelvis's main direction of travel where it travels at least TRAVEL_M and rises no more steeply than
    TRAVEL_MAX_SLOPE (on a floor the path is level; a runner leans
    forward, which tilted body_up by ~14 degrees on a CMU run and put its feet 1 m above the floor's fit)."""
    up = body_up(joints)
    path = joints[:, 0] - joints[:, 0].mean(0)
    direction = np.linalg.eigh(path.T @ path)[1][:, -1]               # the path's main direction
    if np.ptp(path @ direction) < TRAVEL_M or abs(direction @ up) > TRAVEL_MAX_SLOPE:
        return up                       # too short, or mostly up and down (a jump): not a walk on the floor
    return _unit(up - (up @ direction) * direction)


def floor_candidates(feet: np.ndarray, fps: float) -> np.ndarray:
    """(F,4) bool: foot joints (F,4,3) that may stand on the floor: slower than CANDIDATE_SPEED_M_S, or
    at their slowest within +-BRIEF_CONTACT_FRAMES and slower than BRIEF_CONTACT_SPEED_M_S."""
    v = speeds(feet, fps)
    k = BRIEF_CONTACT_FRAMES
    edge = np.full((k,) + v.shape[1:], np.inf)
    slowest = np.lib.stride_tricks.sliding_window_view(np.concatenate([edge, v, edge]), 2 * k + 1, axis=0).min(-1)
    return (v < CANDIDATE_SPEED_M_S) | ((v <= slowest) & (v < BRIEF_CONTACT_SPEED_M_S))


def still_in_image(contacts: np.ndarray, feet_cam: np.ndarray, fps: float) -> np.ndarray:
    """Contacts (F,4) bool kept where the foot joint (camera frame, (F,4,3)) stays still in the image.

    A joint moving across its line of sight faster than IMAGE_SPEED_M_S is free; a run is split (with
    IMAGE_GAP_FRAMES free frames) where the joint's direction leaves the run's mean direction so far by
    more than IMAGE_STILL_M at its distance: a foot that creeps is not planted at one point."""
    pos = _box(feet_cam, 3)
    rays = _unit(pos)
    dist = np.linalg.norm(pos, axis=-1)
    vel = np.gradient(pos, axis=0) * fps if len(pos) > 1 else np.zeros_like(pos)
    across = np.linalg.norm(vel - (vel * rays).sum(-1, keepdims=True) * rays, axis=-1)
    keep = contacts & (across < IMAGE_SPEED_M_S)
    out = np.zeros_like(keep)
    for j in range(keep.shape[1]):
        for a, b in _segments(keep[:, j]):
            total, t = np.zeros(3), a                      # sum of the current run's directions
            while t < b:
                total = total + rays[t, j]
                if np.linalg.norm(rays[t, j] - _unit(total)) * dist[t, j] > IMAGE_STILL_M:
                    total, t = np.zeros(3), t + IMAGE_GAP_FRAMES
                    continue
                out[t, j] = True
                t += 1
    return out


def ray_anchors(feet_world: np.ndarray, contacts: np.ndarray, camera: np.ndarray, offsets) -> np.ndarray:
    """Floor anchors (F,4,3), one per contact run (repeated over its frames, zero elsewhere), where the
    camera sees the joint: the run's mean line of sight from ``camera`` (3,) (world) meets the height of
    the joint's sole offset.  A line of sight that meets it far from the joint's distance (the foot near
    the horizon) falls back to the run's median position.  feet_world (F,4,3) Y up, floor 0."""
    out = np.zeros_like(feet_world)
    for j in range(feet_world.shape[1]):
        for a, b in _segments(contacts[:, j]):
            ray = _unit(_unit(feet_world[a:b, j] - camera).mean(0))
            dist = float(np.median(np.linalg.norm(feet_world[a:b, j] - camera, axis=-1)))
            reach = (offsets[j] - camera[1]) / ray[1] if ray[1] < -1e-3 else np.inf
            anchor = camera + reach * ray if abs(reach - dist) < 0.5 * dist else np.median(feet_world[a:b, j], 0)
            out[a:b, j] = anchor * [1.0, 0.0, 1.0] + [0.0, offsets[j], 0.0]
    return out


def _along_view_system(feet: np.ndarray, contacts: np.ndarray, anchors: np.ndarray,
                       view_dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense least-squares rows (A, b) over one shift along the line of sight per frame (see plant_along_view)."""
    f = len(feet)
    t_idx, j_idx = np.nonzero(contacts)
    A_pin = np.zeros((3 * len(t_idx), f))
    A_pin[np.arange(3 * len(t_idx)), np.repeat(t_idx, 3)] = view_dirs[t_idx].reshape(-1)
    b_pin = (anchors[t_idx, j_idx] - feet[t_idx, j_idx]).reshape(-1)
    d2 = np.zeros((max(f - 2, 0), f))
    for t in range(f - 2):
        d2[t, t:t + 3] = (1.0, -2.0, 1.0)
    A = np.concatenate([A_pin * PIN_WEIGHT, d2 * SMOOTH_WEIGHT, np.eye(f) * np.sqrt(ALONG_VIEW_WEIGHT)])
    return A, np.concatenate([b_pin * PIN_WEIGHT, np.zeros(len(d2) + f)])


def _in_stretches(f: int, solve) -> np.ndarray:
    """``solve(s, e)`` -> (e-s, ...) over stretches of PLANT_STRETCH frames overlapping by PLANT_OVERLAP,
    blended linearly in the overlaps (dense solves stay small on long clips); (F, ...)."""
    out, weight = None, np.zeros(f)
    step = PLANT_STRETCH - PLANT_OVERLAP
    starts = list(range(0, max(f - PLANT_OVERLAP, 1), step))
    for s in starts:
        e = min(s + PLANT_STRETCH, f)
        sol = solve(s, e)
        out = np.zeros((f,) + sol.shape[1:]) if out is None else out
        ramp = np.minimum(np.arange(1, e - s + 1), PLANT_OVERLAP + 1).astype(float)
        ramp = np.minimum(ramp, ramp[::-1]) if len(starts) > 1 else np.ones(e - s)
        if s == 0:
            ramp[:PLANT_OVERLAP] = np.maximum(ramp[:PLANT_OVERLAP], PLANT_OVERLAP + 1)
        if e == f:
            ramp[-PLANT_OVERLAP:] = np.maximum(ramp[-PLANT_OVERLAP:], PLANT_OVERLAP + 1)
        out[s:e] += sol * ramp.reshape((-1,) + (1,) * (sol.ndim - 1))
        weight[s:e] += ramp
    return out / weight.reshape((-1,) + (1,) * (out.ndim - 1))


def plant_along_view(feet_world: np.ndarray, contacts: np.ndarray, anchors: np.ndarray,
                     view_dirs: np.ndarray) -> np.ndarray:
    """Root shift (F,3) (world, metres) along each frame's line of sight to the body, view_dirs (F,3) unit:
    joints in contact (F,4) as near their anchors (F,4,3) as such a shift brings them, smoothly (second
    differences).  The image barely sees a move along the line of sight, so the body stays on the footage;
    the leg IK closes what is left."""
    def solve(s: int, e: int) -> np.ndarray:
        A, b = _along_view_system(feet_world[s:e], contacts[s:e], anchors[s:e], view_dirs[s:e])
        return np.linalg.solve(A.T @ A, A.T @ b)

    return _in_stretches(len(feet_world), solve)[:, None] * view_dirs


def output_world(joints: np.ndarray, fps: float, offsets=DEFAULT_SOLE_OFFSETS_M,
                 contacts: np.ndarray | None = None) -> dict:
    """The engine's world frame for camera-frame joints (F,24,3) of a static camera: as estimate_world,
    with brief contacts as floor evidence too (floor_candidates; enough with MIN_FLOOR_POINTS points or
    MIN_FOOTPRINTS footprints), contacts kept to what the image shows (still_in_image, also for given
    ``contacts``), one floor anchor per contact run on its line of sight (``anchors`` (F,4,3), ray_anchors)
    and the root shifted along the lines of sight only (plant_along_view)."""
    joints = np.asarray(joints, np.float64)
    feet_cam = joints[:, list(FOOT_JOINTS)]
    candidates = floor_candidates(feet_cam, fps)
    ground = fit_ground(joints, fps, offsets, up=level_up(joints), candidates=candidates)
    drift = camera_is_static(joints, fps, ground, offsets, candidates, level_up)
    out = floor_status(joints, fps, ground, drift,
                       ground.points >= MIN_FLOOR_POINTS or ground.footprints >= MIN_FOOTPRINTS)
    if out["status"] != "ok":
        return out
    R, t = world_from_camera(ground, joints[0, 0])
    world = joints @ R.T + t
    feet = world[:, list(FOOT_JOINTS)]
    found = estimated_contacts(feet, fps, offsets) if contacts is None else np.asarray(contacts, bool)
    contacts = still_in_image(found, feet_cam, fps)
    anchors = ray_anchors(feet, contacts, t, offsets)
    shift = plant_along_view(feet, contacts, anchors, _unit(world[:, 0] - t))
    pitch, roll = camera_angles(ground)
    out.update(joints_world=world + shift[:, None], root_shift=shift, contacts=contacts, anchors=anchors,
               world_R=R, world_t=t, camera_height=ground.height, camera_pitch_deg=pitch, camera_roll_deg=roll,
               camera_position=t)
    return out


def world_smpl(global_orient: np.ndarray, transl: np.ndarray, rest_pelvis: np.ndarray, world_R: np.ndarray,
               world_t: np.ndarray, root_shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame SMPL global_orient (F,3) / transl (F,3) -> the same bodies in the world.

    The body model rotates about its rest pelvis J0: X = G (x - J0) + J0 + transl, so in the world
    R X + t + shift = (R G)(x - J0) + J0 + [R (J0 + transl) + t + shift - J0]."""
    import torch

    from backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    G = axis_angle_to_matrix(torch.as_tensor(np.asarray(global_orient, np.float64)))
    orient = matrix_to_axis_angle(torch.as_tensor(world_R) @ G).numpy()
    j0 = np.asarray(rest_pelvis, np.float64)
    return orient, (j0 + np.asarray(transl, np.float64)) @ world_R.T + world_t + root_shift - j0


def global_rotations(local_rot: np.ndarray, parents) -> np.ndarray:
    """(F,24,3,3) world rotations of every joint from SMPL's local ones (parents before children)."""
    out = local_rot.copy()
    for j in range(1, local_rot.shape[1]):
        out[:, j] = out[:, parents[j]] @ local_rot[:, j]
    return out


FLOOR_ROUNDS = 3               # IK passes, each lowering the body where a planted sole stayed in the air
FLOOR_TOLERANCE_M = 0.005      # a planted sole this far above the floor is left alone
FLOOR_EASE_FRAMES = 3          # the lowering eases in and out over this many frames on each side


def floor_drop(soles: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """How far (F,) (m, >= 0) to lower the whole body so planted soles reach the floor.

    soles (F,4) sole heights of FOOT_JOINTS, planted (F,4) bool (fully pinned by the IK).  Per frame
    the highest planted sole, never more than the lowest free sole (a free foot is not pushed into
    the floor); then the largest over +-FLOOR_EASE_FRAMES averaged over the same width, which is at
    least the frame's own need and changes gently (no step in the root's height)."""
    need = np.where(planted, soles, -np.inf).max(1)
    room = np.where(planted, np.inf, soles).min(1)
    need = np.clip(np.minimum(need, room), 0.0, None)
    need = np.where(need > FLOOR_TOLERANCE_M, need, 0.0)
    k = FLOOR_EASE_FRAMES
    pad = np.concatenate([np.zeros(k), need, np.zeros(k)])
    widest = np.lib.stride_tricks.sliding_window_view(pad, 2 * k + 1).max(1)
    return _box(widest, 2 * k + 1) if len(need) >= 2 * k + 1 else widest


def world_result(joints: np.ndarray, global_orient: np.ndarray, body_pose: np.ndarray, transl: np.ndarray,
                 rest_joints: np.ndarray, rest_vertices: np.ndarray, fps: float, ik: bool = True,
                 contacts: np.ndarray | None = None) -> dict:
    """estimate_world for a camera-frame SMPL result (F,24,3 joints; F,3 / F,69 / F,3 axis-angle and
    transl), plus the world body: ``global_orient_world``, ``body_pose_world`` (the legs moved by
    leg_ik onto the feet's floor anchors when ``ik``), ``transl_world`` and ``joints_world`` to match."""
    import torch

    from backend.body.body_model import SMPL_PARENTS
    from backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    offsets = sole_offsets(rest_joints, rest_vertices)
    est = output_world(joints, fps, offsets, contacts=contacts)
    if est["status"] != "ok":
        return est
    orient, transl_w = world_smpl(global_orient, transl, rest_joints[0], est["world_R"], est["world_t"],
                                  est["root_shift"])
    aa = np.concatenate([orient, np.asarray(body_pose, np.float64)], -1).reshape(len(orient), 24, 3)
    local = axis_angle_to_matrix(torch.as_tensor(aa)).numpy()
    world_joints = est["joints_world"]
    if ik:
        rest = np.asarray(rest_joints, np.float64)
        drop = np.zeros(len(local))
        for round_ in range(FLOOR_ROUNDS):
            # A leg too short to reach its anchor leaves the foot in the air: lower the body there.
            lowered = world_joints - drop[:, None, None] * [0, 1, 0]
            targets, weights = foot_targets(lowered[:, list(FOOT_JOINTS)], est["contacts"], offsets, est["anchors"])
            new_local, new_joints = leg_ik(global_rotations(local, SMPL_PARENTS), local, lowered, rest, targets,
                                           weights)
            more = floor_drop(new_joints[:, list(FOOT_JOINTS), 1] - np.asarray(offsets), weights >= 1)
            if round_ == FLOOR_ROUNDS - 1 or not more.any():
                break                       # the joints above are posed with exactly this drop
            drop = drop + more
        local, world_joints = lift_free_feet(new_local, new_joints, rest, targets, weights, offsets,
                                             est["camera_position"])
        local = level_planted_feet(local, rest, weights)
        transl_w = transl_w - drop[:, None] * [0, 1, 0]
        est["root_shift"] = est["root_shift"] - drop[:, None] * [0, 1, 0]
        # What the legs could not lift (none on the clips of docs/world.md): lift those frames.
        lift = np.maximum(0.0, -(world_joints[:, list(FOOT_JOINTS), 1] - np.asarray(offsets)).min(1))
        world_joints = world_joints + lift[:, None, None] * [0, 1, 0]
        transl_w = transl_w + lift[:, None] * [0, 1, 0]
        est["root_shift"] = est["root_shift"] + lift[:, None] * [0, 1, 0]
    pose = matrix_to_axis_angle(torch.as_tensor(local)).numpy().reshape(len(local), 72)
    est.update(joints_world=world_joints, global_orient_world=pose[:, :3], body_pose_world=pose[:, 3:],
               transl_world=transl_w, sole_offsets=offsets)
    return est


def out_fields(result: dict, contacts: np.ndarray | None = None) -> tuple[dict, dict]:
    """The optional OUT.npz world fields for an assembled single-view video result, and a summary
    for its info JSON.  result needs joints (F,24,3), global_orient (F,3), body_pose (F,69),
    transl (F,3), rest_joints, rest_vertices and fps.  A moving camera gives no fields, only the
    summary saying so.

    Fields: ``joints_world`` (F,24,3) m, Y up, floor Y = 0; ``global_orient_world`` (F,3),
    ``body_pose_world`` (F,69) (legs planted on the floor), ``transl_world`` (F,3): the SMPL body
    posed in the world; ``foot_contacts`` (F,4) bool (left/right ankle, left/right ball of the
    foot); ``camera_R_world`` (3,3) camera-to-world rotation of the OpenCV camera axes and
    ``camera_position`` (3,) in the world; ``camera_height`` (m), ``camera_pitch_deg`` (> 0
    looking down), ``camera_roll_deg``."""
    est = world_result(result["joints"], result["global_orient"], result["body_pose"], result["transl"],
                       result["rest_joints"], result["rest_vertices"], float(result["fps"]), contacts=contacts)
    summary = {k: est[k] for k in ("status", "drift_deg", "drift_m", "floor_points")}
    if est["status"] != "ok":
        return {}, summary
    f32 = lambda x: np.asarray(x, np.float32)
    fields = dict(joints_world=f32(est["joints_world"]), global_orient_world=f32(est["global_orient_world"]),
                  body_pose_world=f32(est["body_pose_world"]), transl_world=f32(est["transl_world"]),
                  foot_contacts=est["contacts"], camera_R_world=f32(est["world_R"]),
                  camera_position=f32(est["camera_position"]), camera_height=np.float32(est["camera_height"]),
                  camera_pitch_deg=np.float32(est["camera_pitch_deg"]),
                  camera_roll_deg=np.float32(est["camera_roll_deg"]))
    summary.update(camera_height=round(float(est["camera_height"]), 3),
                   camera_pitch_deg=round(float(est["camera_pitch_deg"]), 2))
    return fields, summary
