"""Retargeting the CMU (cgspeed) skeleton onto our SMPL-layout body model.

Two steps, both batched over frames:

1. Rotation transfer (:func:`transfer_rotations`).  Both rest poses are T-poses facing +Z with
   left = +X, so world frames agree.  Each SMPL joint j takes the world rotation of its mocap
   segment m relative to the mocap rest, ``Gs_j(t) = G_m(t) G_m_rest^T Q_j``, where the constant
   Q_j turns SMPL's rest bone (j -> child) onto the mocap rest bone: at the mocap rest SMPL's
   bones point where the mocap bones point, and any rest-pose difference is cancelled.  Local
   rotations follow from ``R_j = Gs_parent^T Gs_j``.  SMPL's left/right_foot (toes) and
   left/right_hand have no mocap segment and keep identity local rotations.
2. Fit (:func:`fit_clip_batch`): Adam on 6D rotations and translation so the SMPL joints
   (those of ``BodyModel.joints_fast``) reach the mocap targets, with a prior to stay near the
   transfer and a temporal smoothness prior on the correction.  The targets are the mocap joints,
   plus for joints that do not coincide anatomically (pelvis, hips, spine, neck, head, collars,
   shoulders; arms re-rooted) a constant offset in the frame of the mocap segment they ride on.
   Those offsets and ONE betas vector are fitted once on a subset (:func:`calibrate`) and then
   frozen, since every clip uses the same fixed skeleton.
3. Toes (:func:`fit_toes`): the mocap foot ends at the ankle and has no toes, so SMPL's toe
   joints (left/right_foot) would stay straight and dip ~5 cm into the floor at toe-off.  Only
   the toe rotations are fitted to keep the sole vertices above the clip's floor (weak prior to
   straight toes, smooth in time), alternating with the floor estimate (:func:`clip_floor`).
   The fitted joints do not depend on the toes, so the residual is unchanged.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from backend.body.body_model import BodyModel, forward_kinematics
from backend.contract.layout import SMPL_JOINT_NAMES, SMPL_PARENTS
from backend.contract.rotations import rotation_between
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix
from lab.data import cmu

SMPL = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}

# SMPL joint -> (mocap segment whose rotation it takes, SMPL child, mocap child for the bone
# direction).  A mocap child of None means the mocap joint's local +X (its bone axis: the feet
# have no child joint); an SMPL child of None means no direction alignment (Q = I).
ROTATION_MAP = {
    "pelvis": ("hip", None, None),
    "left_hip": ("lThigh", "left_knee", "lShin"),
    "right_hip": ("rThigh", "right_knee", "rShin"),
    "spine1": ("abdomen", "spine2", "chest"),
    "left_knee": ("lShin", "left_ankle", "lFoot"),
    "right_knee": ("rShin", "right_ankle", "rFoot"),
    "spine2": ("chest", "spine3", "neck"),
    "left_ankle": ("lFoot", "left_foot", None),
    "right_ankle": ("rFoot", "right_foot", None),
    "spine3": ("chest", "neck", "neck"),
    "neck": ("neck", "head", "head"),
    "left_collar": ("lCollar", "left_shoulder", "lShldr"),
    "right_collar": ("rCollar", "right_shoulder", "rShldr"),
    "head": ("head", None, None),
    "left_shoulder": ("lShldr", "left_elbow", "lForeArm"),
    "right_shoulder": ("rShldr", "right_elbow", "rForeArm"),
    "left_elbow": ("lForeArm", "left_wrist", "lHand"),
    "right_elbow": ("rForeArm", "right_wrist", "rHand"),
    "left_wrist": ("lHand", "left_hand", "lMid1"),
    "right_wrist": ("rHand", "right_hand", "rMid1"),
}

# Position targets: SMPL joint -> (mocap point, mocap segment it rides on, calibrated offset?).
# The target is the mocap point plus a constant offset in that segment's frame (see Calibration).
# Legs and pelvis are matched absolutely, so foot contacts stay where they were captured: the
# knees and ankles are the same anatomical joint centres in both skeletons (offset 0).  The torso
# joints sit at different heights (the mocap hip joint is ~3 cm BELOW its thigh joints, SMPL's
# pelvis above them; the mocap has no spine3), and the mocap hips and shoulders are narrower than
# SMPL's (its shoulder joints are ~6 cm more medial), so those get offsets.
POSITION_MAP = {
    "pelvis": ("hip", "hip", True),
    "left_hip": ("lThigh", "hip", True),
    "right_hip": ("rThigh", "hip", True),
    "spine1": ("abdomen", "hip", True),
    "left_knee": ("lShin", "lThigh", False),
    "right_knee": ("rShin", "rThigh", False),
    "spine2": ("chest", "abdomen", True),
    "left_ankle": ("lFoot", "lShin", False),
    "right_ankle": ("rFoot", "rShin", False),
    "spine3": ("chest", "chest", True),
    "neck": ("neck", "chest", True),
    "left_collar": ("lCollar", "chest", True),
    "right_collar": ("rCollar", "chest", True),
    "head": ("head", "neck", True),
    "left_shoulder": ("lShldr", "chest", True),
    "right_shoulder": ("rShldr", "chest", True),
    "left_elbow": ("lForeArm", "lShldr", True),
    "right_elbow": ("rForeArm", "rShldr", True),
    "left_wrist": ("lHand", "lForeArm", True),
    "right_wrist": ("rHand", "rForeArm", True),
}
# The arm targets are re-rooted at the shifted shoulder: elbow and wrist inherit the offsets of the
# joints above them, so the arm keeps the mocap bone directions from SMPL's wider shoulders instead
# of bending inward (into the torso) to reach the narrow mocap elbows.  Their own offsets absorb
# the bone-length differences.
INHERIT = {"left_elbow": "left_shoulder", "right_elbow": "right_shoulder",
           "left_wrist": "left_elbow", "right_wrist": "right_elbow"}
FIT_JOINTS = tuple(SMPL[n] for n in POSITION_MAP)          # (P,) SMPL indices, P = 20
FIT_JOINT_NAMES = tuple(POSITION_MAP)
LEARN_OFFSET = np.array([v[2] for v in POSITION_MAP.values()])


def _inherit_matrix() -> np.ndarray:
    """(P,P) 0/1: target j adds the offset displacement of i when H[j,i] = 1."""
    H = np.eye(len(FIT_JOINT_NAMES))
    for j, name in enumerate(FIT_JOINT_NAMES):
        while name in INHERIT:
            name = INHERIT[name]
            H[j, FIT_JOINT_NAMES.index(name)] = 1.0
    return H


INHERIT_MATRIX = _inherit_matrix()


# Betas are only weakly determined (several shapes fit the skeleton equally well): this keeps them
# within about +-1.5 at ~0.5 mm more calibration residual than the unregularised fit.
BETAS_PRIOR = 0.3


@dataclass(frozen=True)
class FitConfig:
    iters: int = 30
    lr: float = 0.01
    pos_sigma: float = 0.01      # m: 1 cm of joint error costs 1
    rot_sigma: float = 0.25      # 6D distance (~10 deg) that costs prior_weight
    prior_weight: float = 1.0    # stay near the rotation transfer
    smooth_weight: float = 2.0   # frame-to-frame change of the correction, same units
    toe_iters: int = 10          # Adam steps per floor round (0: straight toes)
    toe_lr: float = 0.05         # rad per step: toes start straight and may bend by tens of degrees
    toe_max_deg: float = 50.0    # toe dorsiflexion limit (toe-off needs ~30-50 deg)
    toe_prior_weight: float = 0.1  # straight toes are only a default: no mocap joint drives them
    floor_sigma: float = 0.01    # m: 1 cm of one sole vertex below the floor costs 1


@dataclass(frozen=True)
class Calibration:
    """Dataset-wide constants: betas (10,) and target offsets (P,3) in metres (mocap segment frames)."""
    betas: np.ndarray
    offsets: np.ndarray
    residual_mm: float = float("nan")   # mean residual on the calibration frames

    def to_json(self) -> dict:
        return {"betas": np.round(self.betas, 5).tolist(),
                "offsets_m": {n: np.round(o, 4).tolist() for n, o in zip(FIT_JOINT_NAMES, self.offsets)},
                "residual_mm": round(self.residual_mm, 2)}

    @staticmethod
    def from_json(d: dict) -> Calibration:
        """Inverse of :meth:`to_json`, e.g. ``load_split("train")["meta"]["calibration"]``."""
        return Calibration(np.asarray(d["betas"], np.float64),
                           np.array([d["offsets_m"][n] for n in FIT_JOINT_NAMES], np.float64),
                           float(d.get("residual_mm", "nan")))


# -- mocap side ---------------------------------------------------------------------------------
def _indices(sk: cmu.Skeleton):
    pts = np.array([sk.index(v[0]) for v in POSITION_MAP.values()])
    anchors = np.array([sk.index(v[1]) for v in POSITION_MAP.values()])
    return pts, anchors


def mocap_targets(sk: cmu.Skeleton, P: np.ndarray, G: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mocap FK (F,43,3), (F,43,3,3) and offsets (P,3) -> target SMPL joint positions (F,P,3)."""
    pts, anchors = _indices(sk)
    return P[:, pts] + INHERIT_MATRIX @ np.einsum("fpij,pj->fpi", G[:, anchors], offsets)


def transfer_constants(sk: cmu.Skeleton, smpl_rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-SMPL-joint mocap segment index (24,) (-1: none) and A_j = G_m_rest^T Q_j (24,3,3)."""
    P_rest, G_rest = cmu.rest_pose(sk)
    seg = np.full(len(SMPL_JOINT_NAMES), -1)
    A = np.tile(np.eye(3), (len(SMPL_JOINT_NAMES), 1, 1))
    for name, (mocap, smpl_child, mocap_child) in ROTATION_MAP.items():
        j, m = SMPL[name], sk.index(mocap)
        Q = np.eye(3)
        if smpl_child is not None:
            b_s = smpl_rest_joints[SMPL[smpl_child]] - smpl_rest_joints[j]
            b_m = G_rest[m][:, 0] if mocap_child is None else P_rest[sk.index(mocap_child)] - P_rest[m]
            Q = rotation_between(b_s, b_m)
        seg[j], A[j] = m, G_rest[m].T @ Q
    return seg, A


def transfer_rotations(G: np.ndarray, seg: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Mocap world rotations (F,43,3,3) -> SMPL local rotations (F,24,3,3) (see module doc)."""
    Gs = np.empty((G.shape[0], len(SMPL_PARENTS), 3, 3))
    for j, p in enumerate(SMPL_PARENTS):   # parents come first; unmapped joints follow their parent
        Gs[:, j] = G[:, seg[j]] @ A[j] if seg[j] >= 0 else Gs[:, p]
    local = Gs.copy()
    local[:, 1:] = np.swapaxes(Gs[:, list(SMPL_PARENTS[1:])], -1, -2) @ Gs[:, 1:]
    return local


# -- fitting ------------------------------------------------------------------------------------
def rest_joints(bm: BodyModel, betas: np.ndarray) -> np.ndarray:
    """SMPL joints (24,3) in the zero pose for betas (10,), zero translation."""
    b = torch.as_tensor(betas, dtype=bm.dtype)
    return (bm.joint_template + torch.einsum("jcs,s->jc", bm.joint_shapedirs, b)).double().numpy()


def smpl_joints(bm: BodyModel, R: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
    """``bm.joints_fast(R, betas, transl).joints`` (B,24,3) for betas (10,), without its keypoints.

    Same forward kinematics; the keypoints are unused here and cost a quarter of the fit's time."""
    rest = bm.joint_template + torch.einsum("jcs,s->jc", bm.joint_shapedirs, betas)
    _, joints = forward_kinematics(R, rest.expand(R.shape[0], -1, -1), bm.parents, bm.levels)
    return joints + transl[:, None]


def _smoothness(x: torch.Tensor, same_clip: torch.Tensor) -> torch.Tensor:
    """Mean over consecutive same-clip frames of the squared change of x (B,J,6), summed over joints."""
    if not same_clip.any():
        return x.new_zeros(())
    step = ((x[1:] - x[:-1]) ** 2).sum((-1, -2))
    return (step * same_clip).sum() / same_clip.sum()


def _objective(bm, rot6d, transl, init6d, targets, same_clip, betas, cfg: FitConfig):
    """Scalar loss plus per-frame-per-joint residual (B,P) in metres."""
    R = rot6d_to_matrix(rot6d)
    joints = smpl_joints(bm, R, betas, transl)[:, FIT_JOINTS]
    err = joints - targets
    dist = err.norm(dim=-1)
    # Sums over joints, means over frames: 1 cm at one joint costs 1, like rot_sigma at one joint.
    loss = (err ** 2).sum((-1, -2)).mean() / cfg.pos_sigma ** 2
    delta = rot6d - init6d
    loss = loss + cfg.prior_weight * (delta ** 2).sum((-1, -2)).mean() / cfg.rot_sigma ** 2
    # Smooth correction: the transfer is as smooth as the mocap, the fit must not add jitter.
    loss = loss + cfg.smooth_weight * _smoothness(delta, same_clip) / cfg.rot_sigma ** 2
    return loss, dist


def _pelvis_transl(bm, betas, targets: torch.Tensor) -> torch.Tensor:
    """Translation putting the SMPL pelvis (root, not moved by rotations) on its target."""
    b = torch.as_tensor(betas, dtype=bm.dtype)
    pelvis_rest = bm.joint_template[0] + bm.joint_shapedirs[0] @ b
    return targets[:, FIT_JOINT_NAMES.index("pelvis")] - pelvis_rest


def _segments(same_clip: np.ndarray) -> list[slice]:
    """Clip slices of a batch from its (B-1,) same-clip flags."""
    cuts = np.concatenate([[0], np.nonzero(~np.asarray(same_clip, bool))[0] + 1, [len(same_clip) + 1]])
    return [slice(a, b) for a, b in itertools.pairwise(cuts)]


def fit_clip_batch(bm: BodyModel, init_R: np.ndarray, targets: np.ndarray, same_clip: np.ndarray,
                   betas: np.ndarray, cfg: FitConfig = FitConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit frames of one or more concatenated clips.

    init_R (B,24,3,3) rotation transfer, targets (B,P,3) metres, same_clip (B-1,) bool (frame t and t+1
    belong to the same clip), betas (10,) frozen.  Returns local rotations (B,24,3,3), transl (B,3) and
    the residual (B,P) in metres."""
    dt = bm.dtype
    init6d = matrix_to_rot6d(torch.as_tensor(init_R, dtype=dt))
    tgt = torch.as_tensor(targets, dtype=dt)
    mask = torch.as_tensor(same_clip, dtype=dt)
    b = torch.as_tensor(betas, dtype=dt)
    rot6d = init6d.clone().requires_grad_(True)
    transl = _pelvis_transl(bm, b, tgt).clone().requires_grad_(True)
    opt = torch.optim.Adam([rot6d, transl], lr=cfg.lr)
    for _ in range(cfg.iters):
        opt.zero_grad(set_to_none=True)
        loss, _ = _objective(bm, rot6d, transl, init6d, tgt, mask, b, cfg)
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, dist = _objective(bm, rot6d, transl, init6d, tgt, mask, b, cfg)
        R = rot6d_to_matrix(rot6d)
    return R.double().numpy(), transl.detach().double().numpy(), dist.double().numpy()


TOES = [SMPL["left_foot"], SMPL["right_foot"]]
FLOOR_ROUNDS = 2   # floor estimate and toe fit alternate: straight toes dip at toe-off and bias the floor low


def toe_rotations(angle: torch.Tensor) -> torch.Tensor:
    """Toe dorsiflexion angles (...) in radians -> local toe rotations (...,3,3): about -x (the toes'
    lateral axis; SMPL's local frames are the model axes), which lifts toes pointing along +z."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([one, zero, zero, zero, c, s, zero, -s, c], dim=-1).unflatten(-1, (3, 3))


def fit_toes(bm: BodyModel, R: np.ndarray, transl: np.ndarray, same_clip: np.ndarray, soles: Soles,
             cfg: FitConfig = FitConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Bend the toes so the soles stay above each clip's floor (see module doc).

    R (B,24,3,3), transl (B,3) from :func:`fit_clip_batch` (toes straight), same_clip (B-1,).
    One dorsiflexion angle per toe and frame in [0, toe_max_deg].  Returns R with the toe
    rotations and the floor height (B,) of each frame's clip, in the input frame (subtract it
    from transl[:, 1] to put the floor at y = 0)."""
    dt = bm.dtype
    R = R.copy()
    parts = soles.toe_parts(bm, torch.as_tensor(R, dtype=dt), torch.as_tensor(transl, dtype=dt))
    mask = torch.as_tensor(same_clip, dtype=dt)
    limit = float(np.radians(cfg.toe_max_deg))
    sigma = float(np.radians(10.0))   # 10 deg of bend costs toe_prior_weight
    angle = torch.zeros(len(R), len(TOES), dtype=dt)
    for _ in range(FLOOR_ROUNDS if cfg.toe_iters > 0 else 1):
        with torch.no_grad():
            heights = soles.heights_with_toes(parts, toe_rotations(angle)).double().numpy()
        floor = np.empty(len(R))
        for seg in _segments(same_clip):
            floor[seg] = clip_floor(heights[seg])
        if cfg.toe_iters <= 0:
            break
        floor_t = torch.as_tensor(floor, dtype=dt)[:, None]
        angle = angle.requires_grad_(True)
        opt = torch.optim.Adam([angle], lr=cfg.toe_lr)
        for _ in range(cfg.toe_iters):
            opt.zero_grad(set_to_none=True)
            below = torch.relu(floor_t - soles.heights_with_toes(parts, toe_rotations(angle)))
            loss = ((below ** 2).sum(-1).mean() / cfg.floor_sigma ** 2
                    + (cfg.toe_prior_weight * (angle ** 2).sum(-1).mean()
                       + cfg.smooth_weight * _smoothness(angle[..., None], mask)) / sigma ** 2)
            loss.backward()
            opt.step()
            with torch.no_grad():
                angle.clamp_(0.0, limit)
        angle = angle.detach()
    R[:, TOES] = toe_rotations(angle).double().numpy()
    return R, floor


def calibrate(bm: BodyModel, sk: cmu.Skeleton, P: np.ndarray, G: np.ndarray, same_clip: np.ndarray,
              iters: int = 400, cfg: FitConfig = FitConfig(), lr: float = 0.01) -> Calibration:
    """Fit the shared betas and target offsets (plus per-frame poses and translations) on a subset.

    P (B,43,3), G (B,43,3,3) mocap FK of the subset, same_clip (B-1,).  The rotation transfer used
    as init and prior is computed at betas 0 (bone directions barely depend on the shape)."""
    dt = bm.dtype
    pts, anchors = _indices(sk)
    P_pt = torch.as_tensor(P[:, pts], dtype=dt)
    G_an = torch.as_tensor(G[:, anchors], dtype=dt)
    learn = torch.as_tensor(LEARN_OFFSET, dtype=dt)[:, None]
    H = torch.as_tensor(INHERIT_MATRIX, dtype=dt)
    mask = torch.as_tensor(same_clip, dtype=dt)
    seg, A = transfer_constants(sk, rest_joints(bm, np.zeros(10)))
    init6d = matrix_to_rot6d(torch.as_tensor(transfer_rotations(G, seg, A), dtype=dt))

    betas = torch.zeros(10, dtype=dt, requires_grad=True)
    offsets = torch.zeros(len(FIT_JOINTS), 3, dtype=dt, requires_grad=True)
    rot6d = init6d.clone().requires_grad_(True)
    transl = _pelvis_transl(bm, betas.detach(), P_pt).clone().requires_grad_(True)
    # Betas move in units of ~1 and offsets in cm: their own step sizes (slow to converge otherwise).
    opt = torch.optim.Adam([{"params": [betas], "lr": 5 * lr}, {"params": [offsets], "lr": lr / 2},
                            {"params": [rot6d, transl]}], lr=lr)
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        targets = P_pt + H @ torch.einsum("bpij,pj->bpi", G_an, offsets * learn)
        loss, dist = _objective(bm, rot6d, transl, init6d, targets, mask, betas, cfg)
        loss = loss + BETAS_PRIOR * (betas ** 2).sum() + ((offsets * learn) ** 2).sum() / 0.1 ** 2
        loss.backward()
        opt.step()
    return Calibration(betas.detach().double().numpy(), (offsets * learn).detach().double().numpy(),
                       float(dist.detach().mean()) * 1000)


# -- floor contact ------------------------------------------------------------------------------
FLOOR_PERCENTILE = 5.0   # of the lowest sole vertex over a clip's frames: robust to climbing and jumps


@dataclass(frozen=True)
class Soles:
    """Plantar-surface vertices: within ``band`` of the feet's lowest point in the zero pose.

    ids (S,), rest positions (S,3), skinning weights (S,24) and rest joints (24,3) at betas (10,);
    left (S,) marks the left foot."""
    ids: np.ndarray
    rest: torch.Tensor
    weights: torch.Tensor
    rest_joints: torch.Tensor
    left: np.ndarray
    betas: np.ndarray

    @staticmethod
    def build(bm: BodyModel, betas: np.ndarray, band: float = 0.01, stride: int = 4) -> Soles:
        b = torch.as_tensor(betas, dtype=bm.dtype)
        v = bm.smpl.v_template + torch.einsum("vcs,s->vc", bm.smpl.shapedirs[..., :b.numel()], b)
        ids = torch.nonzero(v[:, 1] < v[:, 1].min() + band)[::stride, 0]   # every 4th is plenty
        return Soles(ids.numpy(), v[ids], bm.smpl.lbs_weights[ids],
                     torch.as_tensor(rest_joints(bm, betas), dtype=bm.dtype), (v[ids, 0] > 0).numpy(),
                     np.asarray(betas, dtype=np.float64))

    def heights(self, bm: BodyModel, R: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        """(B,S) heights of the sole vertices (differentiable); R (B,24,3,3) local rotations, transl (B,3)."""
        world_R, world_p = forward_kinematics(R, self.rest_joints.expand(R.shape[0], -1, -1), bm.parents, bm.levels)
        # Linear blend skinning, height only: y_s = sum_j W_sj (R_j[1] . (v_s - J_j) + p_j[1]),
        # as two matmuls (no (B,S,24,3) tensor).
        Ry = world_R[:, :, 1]                                                             # (B,24,3)
        Wv = (self.weights[:, :, None] * self.rest[:, None]).reshape(len(self.ids), -1)   # (S,72)
        c = world_p[..., 1] - (Ry * self.rest_joints).sum(-1)                             # (B,24)
        return Ry.reshape(R.shape[0], -1) @ Wv.T + c @ self.weights.T + transl[:, 1:2]

    def lowest(self, bm: BodyModel, R: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """(B,) height of the lowest sole vertex per frame (numpy in and out)."""
        with torch.no_grad():
            h = self.heights(bm, torch.as_tensor(R, dtype=bm.dtype), torch.as_tensor(transl, dtype=bm.dtype))
        return h.min(1).values.double().numpy()

    def toe_parts(self, bm: BodyModel, R: torch.Tensor, transl: torch.Tensor) -> tuple:
        """Sole heights split into a fixed part and the toe joints' share, for :meth:`heights_with_toes`.

        With the rest of the pose fixed, a toe joint t (parent ankle a) moves its share of vertex s to
        W_st ((G_a[1] @ R_t) . (v_s - J_t) + p_t[1]); G_a and p_t do not depend on R_t."""
        with torch.no_grad():
            world_R, world_p = forward_kinematics(R, self.rest_joints.expand(R.shape[0], -1, -1),
                                                  bm.parents, bm.levels)
            ankle_rows = world_R[:, [bm.parents[t] for t in TOES], 1]                   # (B,2,3)
            d = self.rest[None] - self.rest_joints[TOES][:, None]                         # (2,S,3)
            p_y = world_p[:, TOES, 1]                                                     # (B,2)
            parts = (ankle_rows, d, p_y, self.weights[:, TOES].T)                          # W: (2,S)
            base = self.heights(bm, R, transl) - self._toe_share(parts, R[:, TOES])
        return (base, *parts)

    @staticmethod
    def _toe_share(parts, R_toes: torch.Tensor) -> torch.Tensor:
        ankle_rows, d, p_y, W = parts
        rows = (ankle_rows[:, :, None] @ R_toes)[:, :, 0]                                 # (B,2,3)
        return (W * (torch.einsum("btc,tsc->bts", rows, d) + p_y[..., None])).sum(1)      # (B,S)

    def heights_with_toes(self, parts: tuple, R_toes: torch.Tensor) -> torch.Tensor:
        """(B,S) sole heights with the toe rotations R_toes (B,2,3,3) (differentiable)."""
        return parts[0] + self._toe_share(parts[1:], R_toes)


def clip_floor(heights: np.ndarray) -> float:
    """Floor height of one clip from its sole heights (F,S): the FLOOR_PERCENTILE of the lowest sole
    vertex over frames."""
    return float(np.percentile(heights.min(1), FLOOR_PERCENTILE))
