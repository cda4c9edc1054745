"""One body-model interface for the user's SMPL files and the free default.

Both go through ``smplx.SMPL`` for the full mesh.  The refinement loop only
needs joints and keypoints, so :meth:`BodyModel.joints_fast` computes them by
forward kinematics on the shaped skeleton plus an exact linear-blend-skinning
of the few regressed keypoints, without skinning the mesh.

Poses are rotation matrices, batch-first: ``rotmats`` (B,24,3,3) holds the
global orientation then the 23 body joints in SMPL order.  Betas (B,10) or
(10,); translation (B,3).  Outputs are in metres in the model's frame (Y up).
"""
from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.body import free_model
from backend.body.smpl_files import SMPLFileError, load_smpl_arrays, smpl_data_struct
from backend.contract.layout import (
    COCO17_NAMES, NUM_JOINTS, SMPL_COCO_BODY_JOINTS, SMPL_COCO_FACE_VERTICES, SMPL_PARENTS,
)
from backend.rotations import axis_angle_to_matrix

NUM_BETAS = 10


@dataclass
class BodyOutput:
    joints: torch.Tensor           # (B,24,3)
    keypoints: torch.Tensor        # (B,K,3), COCO-17 first
    vertices: torch.Tensor | None = None  # (B,V,3) on the full path only


@dataclass
class ShapedBody:
    """Shape-only part of the fast path: rest joints (B,24,3) and each keypoint's offsets in its joints'
    frames (B,K,24,3), m_kj - a_kj rest_j (BodyModel.joints_fast)."""
    rest_joints: torch.Tensor
    kp_local: torch.Tensor

    def __getitem__(self, index) -> "ShapedBody":
        return ShapedBody(self.rest_joints[index], self.kp_local[index])


@dataclass
class KeypointMap:
    """Keypoints as joint combinations plus vertex regressions: kp = D @ joints + C @ vertices.

    names (K,), joint_weights D (K,24), vertex_ids (U,) and vertex_weights C (K,U)."""
    names: tuple[str, ...]
    joint_weights: np.ndarray
    vertex_ids: np.ndarray
    vertex_weights: np.ndarray

    @staticmethod
    def from_regressor(names, regressor: np.ndarray) -> "KeypointMap":
        # Rows must sum to one exactly (float32 storage rounds them) or translations leak in.
        regressor = regressor / regressor.sum(1, keepdims=True)
        used = np.nonzero(np.abs(regressor).sum(0) > 0)[0]
        return KeypointMap(tuple(names), np.zeros((len(names), NUM_JOINTS)), used, regressor[:, used])

    @staticmethod
    def smpl_coco17() -> "KeypointMap":
        """COCO-17 on SMPL's own mesh: face points from the usual vertex picks, body points from joints."""
        k = len(COCO17_NAMES)
        D = np.zeros((k, NUM_JOINTS))
        face_ids = np.array(list(SMPL_COCO_FACE_VERTICES.values()))
        C = np.zeros((k, len(face_ids)))
        for i, name in enumerate(COCO17_NAMES):
            if name in SMPL_COCO_BODY_JOINTS:
                D[i, SMPL_COCO_BODY_JOINTS[name]] = 1.0
            else:
                C[i, list(SMPL_COCO_FACE_VERTICES).index(name)] = 1.0
        return KeypointMap(COCO17_NAMES, D, face_ids, C)


def _quiet(fn, *args, **kwargs):
    # smplx prints a warning for every model with 10 shape components.
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _kinematic_levels(parents) -> list[list[int]]:
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        depth[j] = 0 if p < 0 else depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


def _parent_picker(positions: list[int], device: torch.device):
    """How one tree level takes its parents' rows from the level above, (B,n,...) -> (B,len(positions),...):
    a slice where the parents are consecutive there, an expand where they are all one joint, else a gather
    (slices and expands cost nothing to differentiate; a gather's backward scatters)."""
    first, n = positions[0], len(positions)
    if positions == list(range(first, first + n)):
        return lambda x: x[:, first:first + n]
    if positions == [first] * n:
        return lambda x: x[:, first:first + 1].expand(-1, n, *x.shape[2:])
    index = torch.as_tensor(positions, dtype=torch.long, device=device)
    return lambda x: x.index_select(1, index)


@functools.lru_cache(maxsize=16)
def _tree_plan(parents: tuple[int, ...], levels: tuple[tuple[int, ...], ...], device: torch.device) -> tuple:
    """What :func:`forward_kinematics` needs of a tree: the joints in level order (J,), each level's slice of
    that order, per level after the first its parents' picker (:func:`_parent_picker`), the permutation back
    to joint order (J,), and every joint's parent but the root's (J-1,)."""
    as_index = lambda x: torch.as_tensor(x, dtype=torch.long, device=device)
    order = [j for level in levels for j in level]
    ends = [sum(len(level) for level in levels[:i + 1]) for i in range(len(levels))]
    spans = [slice(e - len(level), e) for e, level in zip(ends, levels)]
    pickers = [_parent_picker([prev.index(parents[j]) for j in level], device)
               for prev, level in zip(levels[:-1], levels[1:])]
    return (as_index(order), spans, pickers, as_index(sorted(range(len(order)), key=order.__getitem__)),
            as_index(parents[1:]))


def forward_kinematics(rotmats: torch.Tensor, rest_joints: torch.Tensor, parents, levels):
    """World rotations (B,J,3,3) and posed joints (B,J,3) from local rotations and rest joints.

    Joints of one tree depth are processed together (9 steps for SMPL instead of 24), each depth from
    the one above it only: the inputs are put in depth order once, each depth takes its parents by a
    slice where it can, and the result goes back to joint order once at the end."""
    order, spans, pickers, to_joint_order, parents_t = _tree_plan(tuple(parents), tuple(map(tuple, levels)),
                                                                  rotmats.device)
    offsets = torch.cat([rest_joints[:, :1], rest_joints[:, 1:] - rest_joints[:, parents_t]], dim=1)
    local_R, local_p = rotmats.index_select(1, order), offsets.index_select(1, order)
    R, p = [local_R[:, spans[0]]], [local_p[:, spans[0]]]
    for span, pick in zip(spans[1:], pickers):
        R_par = pick(R[-1])
        p.append(pick(p[-1]) + (R_par @ local_p[:, span, :, None])[..., 0])
        R.append(R_par @ local_R[:, span])
    return torch.cat(R, 1).index_select(1, to_joint_order), torch.cat(p, 1).index_select(1, to_joint_order)


class BodyModel(torch.nn.Module):
    """SMPL-format body model (24 joints, keypoints, optional vertices), batched and differentiable."""

    def __init__(self, arrays: dict[str, np.ndarray], keypoints: KeypointMap, *,
                 vertex_ids: dict[str, int] | None = None, source: str = "", dtype=torch.float32):
        super().__init__()
        import smplx

        self.source = source
        self.keypoint_names = keypoints.names
        struct = smpl_data_struct({k: arrays[k] for k in ("v_template", "shapedirs", "posedirs", "J_regressor",
                                                          "weights", "kintree_table", "f")})
        self.smpl = _quiet(smplx.SMPL, model_path=source or ".", data_struct=struct, num_betas=NUM_BETAS,
                           vertex_ids=vertex_ids, dtype=dtype, create_betas=False, create_global_orient=False,
                           create_body_pose=False, create_transl=False)
        self.parents = list(SMPL_PARENTS)
        self.levels = _kinematic_levels(self.parents)
        f64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))
        v_t, dirs = f64(arrays["v_template"]), f64(arrays["shapedirs"])[..., :NUM_BETAS]
        J_reg, W = f64(arrays["J_regressor"]), f64(arrays["weights"])
        posedirs = f64(arrays["posedirs"]).reshape(v_t.shape[0], 3, -1)

        # Shaped skeleton: joints are linear in betas.
        self.register_buffer("joint_template", (J_reg @ v_t).to(dtype))                     # (24,3)
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vcs->jcs", J_reg, dirs).to(dtype))  # (24,3,S)

        # Keypoints by exact skinning of their regressed points: with c (K,U) vertex weights and
        # W skinning weights, kp = sum_j R_j (m_kj - a_kj J_j) + a_kj t_j,
        # a_kj = sum_v c_kv W_vj and m_kj = sum_v c_kv W_vj v_posed(v), linear in betas and pose.
        ids = torch.as_tensor(keypoints.vertex_ids, dtype=torch.long)
        c = f64(keypoints.vertex_weights)
        cw = c[:, :, None] * W[ids][None]                                    # (K,U,24)
        self.register_buffer("kp_joint_weights", f64(keypoints.joint_weights).to(dtype))
        self.register_buffer("kp_vertex_ids", ids)
        self.register_buffer("kp_vertex_weights", c.to(dtype))
        self.register_buffer("kp_a", cw.sum(1).to(dtype))                                     # (K,24)
        self.register_buffer("kp_joint_sum", (cw.sum(1) + f64(keypoints.joint_weights)).to(dtype))  # a + D
        self.register_buffer("kp_m0", torch.einsum("kuj,uc->kjc", cw, v_t[ids]).to(dtype))     # (K,24,3)
        self.register_buffer("kp_ms", torch.einsum("kuj,ucs->kjcs", cw, dirs[ids]).to(dtype))  # (K,24,3,S)
        kp_mp = torch.einsum("kuj,ucp->kjcp", cw, posedirs[ids])
        self.has_pose_correctives = bool(kp_mp.abs().max() > 0)
        self.register_buffer("kp_mp", kp_mp.to(dtype) if self.has_pose_correctives else torch.zeros(0, dtype=dtype))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, dtype=torch.float32) -> "BodyModel":
        """The user's SMPL file (.pkl/.npz), or the free default when ``path`` is None."""
        if path is None:
            path = free_model.FREE_MODEL_PATH
        path = Path(path)
        if path.suffix == ".npz" and path.exists():
            with np.load(path, allow_pickle=False) as z:
                ours = "keypoint_regressor" in z.files
            if ours:
                data = free_model.load_free_model(path)
                kp = KeypointMap.from_regressor(data["keypoint_names"], data["keypoint_regressor"].astype(np.float64))
                return cls(data, kp, vertex_ids=free_model.extra_vertex_ids(data), source=str(path), dtype=dtype)
        return cls(load_smpl_arrays(path), KeypointMap.smpl_coco17(), source=str(path), dtype=dtype)

    @property
    def faces(self) -> np.ndarray:
        return np.asarray(self.smpl.faces, dtype=np.int64)

    @property
    def dtype(self) -> torch.dtype:
        return self.joint_template.dtype

    # -- evaluation ----------------------------------------------------------------------------
    def _prepare(self, rotmats, betas, transl):
        b = rotmats.shape[0]
        betas = torch.as_tensor(betas, dtype=self.dtype, device=rotmats.device)
        betas = betas.expand(b, -1) if betas.dim() == 1 or betas.shape[0] == 1 else betas
        if transl is None:
            transl = rotmats.new_zeros(b, 3)
        return betas.reshape(b, -1)[:, :NUM_BETAS], transl

    def forward(self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None,
                return_vertices: bool = True) -> BodyOutput:
        """Full path through smplx (mesh skinning). rotmats (B,24,3,3)."""
        betas, transl = self._prepare(rotmats, betas, transl)
        out = self.smpl(betas=betas, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:],
                        transl=transl, pose2rot=False)
        joints = out.joints[:, :NUM_JOINTS]
        verts = out.vertices
        kp = (torch.einsum("kj,bjc->bkc", self.kp_joint_weights, joints)
              + torch.einsum("ku,buc->bkc", self.kp_vertex_weights, verts[:, self.kp_vertex_ids]))
        return BodyOutput(joints, kp, verts if return_vertices else None)

    def shaped(self, betas: torch.Tensor) -> "ShapedBody":
        """Everything of the fast path that depends on betas (B,10) only, to reuse across poses."""
        rest = self.joint_template + torch.einsum("jcs,bs->bjc", self.joint_shapedirs, betas)
        # In place: over a whole clip (the output's joints) this tensor is the largest the engine holds.
        local = torch.einsum("kjcs,bs->bkjc", self.kp_ms, betas).add_(self.kp_m0)
        return ShapedBody(rest_joints=rest, kp_local=local.addcmul_(self.kp_a[..., None], rest[:, None], value=-1.0))

    def joints_fast(self, rotmats: torch.Tensor, betas: "torch.Tensor | ShapedBody",
                    transl: torch.Tensor | None = None) -> BodyOutput:
        """Joints and keypoints without skinning the mesh; equal to :meth:`forward` up to round-off.

        ``betas`` may be a :class:`ShapedBody` from :meth:`shaped` (same batch) to skip the shape terms."""
        if isinstance(betas, ShapedBody):
            shape, transl = betas, rotmats.new_zeros(rotmats.shape[0], 3) if transl is None else transl
        else:
            betas, transl = self._prepare(rotmats, betas, transl)
            shape = self.shaped(betas)
        m = shape.kp_local
        world_R, joints = forward_kinematics(rotmats, shape.rest_joints, self.parents, self.levels)
        if self.has_pose_correctives:
            eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
            pose_feature = (rotmats[:, 1:] - eye).reshape(rotmats.shape[0], -1)
            m = m + torch.einsum("kjcp,bp->bkjc", self.kp_mp, pose_feature)
        # Joint j's skinning translation is J_j - R_j rest_j: a_kj (J_j - R_j rest_j) + R_j m_kj
        # = R_j (m_kj - a_kj rest_j) + a_kj J_j, the first term's offsets precomputed in shaped().
        kp = torch.einsum("bjxy,bkjy->bkx", world_R, m) + torch.einsum("kj,bjc->bkc", self.kp_joint_sum, joints)
        return BodyOutput(joints + transl[:, None], kp + transl[:, None])


def move_body(root: torch.Tensor, transl: torch.Tensor, pelvis: torch.Tensor, R: torch.Tensor,
              t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The same posed body expressed in another frame, x' = R x + t (a camera turned or moved).

    The body model turns about the shaped body's rest pelvis J0, not the origin: x = G (v - J0) + J0 + transl,
    so R x + t = (R G)(v - J0) + J0 + [R (J0 + transl) + t - J0].  root (N,3,3) global orientation,
    transl (N,3), pelvis (N,3) rest pelvis (``shaped(betas).rest_joints[:, 0]``), R (N,3,3), t (N,3) or
    None -> root (N,3,3), transl (N,3)."""
    moved = (R @ (pelvis + transl)[..., None])[..., 0]
    return R @ root, (moved if t is None else moved + t) - pelvis


def pose_to_rotmats(global_orient: torch.Tensor, body_pose: torch.Tensor) -> torch.Tensor:
    """SMPL axis-angle parameters (B,3) and (B,69) -> rotation matrices (B,24,3,3)."""
    aa = torch.cat([global_orient.reshape(-1, 1, 3), body_pose.reshape(-1, NUM_JOINTS - 1, 3)], dim=1)
    return axis_angle_to_matrix(aa)


__all__ = ["BodyModel", "BodyOutput", "KeypointMap", "ShapedBody", "SMPLFileError", "forward_kinematics", "move_body",
           "pose_to_rotmats"]
