"""Where a 2D detector's keypoints sit on the body: a landmark model fitted to its outputs on renders.

The simulator used to project the body model's own keypoints, the very points the engine's guidance
reprojects through (the inverse crime: a simulated detector that agrees with the engine's keypoint
model by construction).  A landmark model replaces them, per keypoint, with

- a point on the body: a convex combination of a few mesh vertices (so it follows the skin under
  any pose and shape: linear-blend skinning of those vertices), and
- a per-joint bias in the image, in the body frame of ``detector_noise.body_axes`` ([towards the
  person's left, towards the shoulders], fractions of the person's size): what no point on the body
  explains (e.g. a detector that places the ears outwards whatever the view),

fitted by least squares of the reprojection against the detector's detections on renders whose
truth is known (``python -m lab.sim.landmarks fit``: renders of training-split motion made by
``python -m lab calibrate-detector render``).  Candidate vertices of a keypoint are those near the
body model's own keypoint in the rest pose; the fit is a non-negative least squares on their
projections (a convex combination of projections equals the projection of the convex combination up
to the perspective of a few centimetres, well under a pixel), pruned to ``MAX_VERTICES`` vertices and
refitted.  Points the detector never reports (BlazePose's small toes) keep the body model's keypoint.

``landmark_body(bm, "blazepose-fit")`` is a body model whose keypoints are the fitted points (same
skeleton and mesh); ``detector_level(level, model)`` adds the model's bias to a noise level, and
for ``"blazepose"`` uses the noise preset refitted to the residuals around the fitted points.

    python -m lab.sim.landmarks fit lab/assets/landmarks_train      # -> lab/assets/landmarks_blazepose.npz
    python -m lab.sim.landmarks compare docs/benchmark/detections_val64_tuning   # old vs new, per joint
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from backend.body.body_model import BodyModel, KeypointMap, pose_to_rotmats
from backend.body.free_model import FREE_MODEL_PATH, extra_vertex_ids, load_free_model
from lab.sim.detector_noise import KEYPOINT_NAMES, SWAP_GROUPS, NoiseLevel, _pairs, body_axes

ROOT = Path(__file__).resolve().parents[2]
LANDMARK_PATHS = {"blazepose-fit": ROOT / "lab" / "assets" / "landmarks_blazepose.npz"}
LANDMARK_CHOICES = ("regressor", *LANDMARK_PATHS)   # "regressor": the body model's own keypoints (old)
CANDIDATE_RADIUS_M = 0.12   # candidate vertices lie this close to the body model's keypoint in the rest pose
CANDIDATE_SPACING_M = 0.02   # ... thinned to about one per this distance (neighbours are near-duplicates)
MAX_VERTICES = 6            # vertices kept per landmark after the first fit
GROSS = 0.1                 # residuals above this (x person size) are the detector's gross errors: left out
FOUND_CONF = 0.1            # a detection below this confidence is missed (as lab.sim.calibrate)
SUM_WEIGHT = 100.0          # weight of the "weights sum to one" row of the least squares
# Ridge on the bias, in frames' worth of residual: for an upright body a shift of the point along the trunk
# and an image bias "up" look alike from every side; of two such near-equal fits the one with the point on
# the body (the smaller bias) is kept.  Small against the hundreds of frames that measure a true bias.
BIAS_RIDGE = 3.0


# -- the model ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)   # identity: arrays inside; cached bodies key on it
class LandmarkModel:
    """K landmarks as sparse convex vertex weights plus an image bias.

    names (K,); rows, vertex_ids, weights (M,) sparse entries (row k of the (K,V) weight matrix);
    bias (K,2) [left, up] x person size; fitted (K,) bool (False: the body model's keypoint kept);
    noise: the "blazepose" NoiseLevel refitted around the landmarks (asdict form) or {}; info: provenance."""
    names: tuple[str, ...]
    rows: np.ndarray
    vertex_ids: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    fitted: np.ndarray
    noise: dict
    info: dict

    def keypoint_map(self) -> KeypointMap:
        """The landmarks as a body-model KeypointMap (no joint terms, vertex weights C (K,U))."""
        used = np.unique(self.vertex_ids)
        C = np.zeros((len(self.names), len(used)))
        np.add.at(C, (self.rows, np.searchsorted(used, self.vertex_ids)), self.weights)
        return KeypointMap(tuple(self.names), np.zeros((len(self.names), 24)), used, C)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, names=np.array(self.names), rows=self.rows.astype(np.int16),
                            vertex_ids=self.vertex_ids.astype(np.int32), weights=self.weights.astype(np.float64),
                            bias=self.bias.astype(np.float64), fitted=self.fitted,
                            noise=np.array(json.dumps(self.noise)), info=np.array(json.dumps(self.info)))

    @staticmethod
    def load(path: Path) -> LandmarkModel:
        with np.load(path, allow_pickle=False) as z:
            return LandmarkModel(tuple(str(n) for n in z["names"]), z["rows"].astype(np.int64),
                                 z["vertex_ids"].astype(np.int64), z["weights"], z["bias"], z["fitted"],
                                 json.loads(str(z["noise"])), json.loads(str(z["info"])))


@lru_cache(maxsize=4)
def load_landmarks(name: str) -> LandmarkModel:
    """A committed landmark model by name (LANDMARK_PATHS)."""
    return LandmarkModel.load(LANDMARK_PATHS[name])


class LandmarkBody(BodyModel):
    """The free body model whose keypoints are a landmark model's points (joints and mesh unchanged)."""

    def __init__(self, model: LandmarkModel, path: Path = FREE_MODEL_PATH, dtype: torch.dtype = torch.float32):
        data = load_free_model(path)
        super().__init__(data, model.keypoint_map(), vertex_ids=extra_vertex_ids(data), source=str(path), dtype=dtype)
        self.landmarks = model


def landmark_body(bm: BodyModel, landmarks: str | LandmarkModel | None) -> BodyModel:
    """The body the simulated detector sees: ``bm`` itself for None / "regressor" (its own keypoints),
    else a LandmarkBody on the same device and dtype.  The landmarks are defined on the free model's
    mesh: ``bm`` must be that model (or a LandmarkBody of it)."""
    if landmarks is None or landmarks == "regressor":
        return bm
    model = load_landmarks(landmarks) if isinstance(landmarks, str) else landmarks
    if isinstance(bm, LandmarkBody) and bm.landmarks is model:
        return bm
    if bm.smpl.v_template.shape[0] != _free_vertex_count():
        raise ValueError("landmark models are fitted on the free body model's mesh; this body model has another")
    return _cached_body(model, bm.dtype, str(bm.joint_template.device))


@lru_cache(maxsize=1)
def _free_vertex_count() -> int:
    with np.load(FREE_MODEL_PATH) as z:
        return int(z["v_template"].shape[0])


@lru_cache(maxsize=8)
def _cached_body(model: LandmarkModel, dtype: torch.dtype, device: str) -> LandmarkBody:
    """One LandmarkBody per model, dtype and device (building one sets up the whole mesh model)."""
    return LandmarkBody(model, dtype=dtype).to(device)


def detector_level(level: NoiseLevel | str, model: LandmarkModel | None) -> NoiseLevel | str:
    """The noise level on top of a landmark model: the model's bias added to the level's (none for the
    hand-made presets), and "blazepose" replaced by its preset refitted around the landmarks (whose
    own joint_bias is the residual bias left by the least-squares fit)."""
    if model is None:
        return level
    if level == "blazepose" and model.noise:
        level = NoiseLevel(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list)
                              else v for k, v in model.noise.items()})
    level = NoiseLevel.preset(level) if isinstance(level, str) else level
    k = len(model.names)
    own = np.zeros((k, 2)) if level.joint_bias is None else np.asarray(level.joint_bias, dtype=np.float64)[:k]
    bias = model.bias + np.pad(own, ((0, k - len(own)), (0, 0)))
    return replace(level, joint_bias=tuple((float(a), float(b)) for a, b in bias))


# -- geometry of the renders -------------------------------------------------------------------------
def candidate_vertices(template: np.ndarray, keypoints: np.ndarray, radius: float = CANDIDATE_RADIUS_M,
                       spacing: float = CANDIDATE_SPACING_M) -> list[np.ndarray]:
    """Per keypoint, the ids of rest-pose vertices within ``radius`` of it, thinned to one per ``spacing``
    cube (the vertex nearest each occupied cube's centre).  template (V,3), keypoints (K,3) -> K id arrays."""
    out = []
    for p in keypoints:
        near = np.nonzero(np.linalg.norm(template - p, axis=1) < radius)[0]
        cell = np.floor(template[near] / spacing).astype(np.int64)
        off = np.linalg.norm(template[near] - (cell + 0.5) * spacing, axis=1)
        order = np.lexsort((off, cell[:, 2], cell[:, 1], cell[:, 0]))
        first = np.ones(len(order), bool)
        first[1:] = (np.diff(cell[order], axis=0) != 0).any(1)
        out.append(np.sort(near[order[first]]))
    return out


def render_geometry(bm: BodyModel, chunk: dict, vertex_ids: np.ndarray, batch: int = 64) -> tuple:
    """Pixels (E,L,U,2) and depth (E,L,U) of vertices ``vertex_ids`` (U,) in each rendered frame of
    ``chunk`` (lab.sim.calibrate.load_chunks; principal point at the image centre, as rendered)."""
    e, length = chunk["global_orient"].shape[:2]
    t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(e * length, -1)
    rot = pose_to_rotmats(t(chunk["global_orient"]), t(chunk["body_pose"]))
    betas, transl = t(np.repeat(chunk["betas"], length, 0)), t(chunk["transl"])
    ids = torch.as_tensor(vertex_ids, dtype=torch.long)
    with torch.no_grad():
        verts = torch.cat([bm(rot[i:i + batch], betas[i:i + batch], transl[i:i + batch]).vertices[:, ids]
                           for i in range(0, e * length, batch)]).numpy().reshape(e, length, -1, 3)
    cam = np.einsum("eij,elvj->elvi", chunk["cam_R"].astype(np.float64), verts) + chunk["cam_t"][:, None, None]
    f = chunk["focal_length"].astype(np.float64)[:, None, None, None]
    uv = cam[..., :2] / cam[..., 2:] * f + chunk["image_size"].astype(np.float64)[:, None, None] / 2
    return uv, cam[..., 2]


def frame_scale(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(...,K,2) COCO-ordered clean pixels -> person size (...) (larger side of the points' box) and
    body axes (...,2,2) [left, up] (detector_noise.body_axes), as the simulator and the calibration use."""
    size = (uv.max(-2) - uv.min(-2)).max(-1)
    return size, body_axes(torch.as_tensor(uv, dtype=torch.float64)).numpy()


def unswapped(detected: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,K,3) detections with each left/right group (SWAP_GROUPS) exchanged back where the crossed
    assignment is nearer the truth (N,K,2) than the straight one (the detector's identity confusions)."""
    out = detected.copy()
    names = KEYPOINT_NAMES[:detected.shape[1]]
    for parts in SWAP_GROUPS.values():
        left, right = _pairs(names, parts)
        dist = lambda a, b: np.linalg.norm(detected[:, a, :2] - truth[:, b], axis=-1).sum(-1)
        crossed = dist(left, right) + dist(right, left) < 0.5 * (dist(left, left) + dist(right, right))
        out[np.ix_(crossed, left + right)] = detected[np.ix_(crossed, right + left)]
    return out


# -- the fit -----------------------------------------------------------------------------------------
def fit_point(candidates: np.ndarray, detections: np.ndarray, axes: np.ndarray, size: np.ndarray) -> tuple:
    """Convex vertex weights and image bias whose reprojection best matches the detections.

    candidates (N,C,2) pixels of C candidate vertices in N frames, detections (N,2) pixels, axes (N,2,2)
    body axes, size (N,) person size (each frame's residual counts in units of its size).  Solves
    min |sum_c w_c p_c + size (b @ axes) - d|^2 / size^2 + BIAS_RIDGE^2 |b|^2 over w >= 0, sum w = 1,
    b free -> w (C,), b (2,)."""
    from scipy.optimize import nnls

    n, c = candidates.shape[:2]
    ref = candidates.mean(1)                                                  # (N,2): conditioning only
    A_w = ((candidates - ref[:, None]) / size[:, None, None]).transpose(0, 2, 1).reshape(2 * n, c)
    A_b = axes.transpose(0, 2, 1).reshape(2 * n, 2)                           # bias along [left, up]
    y = ((detections - ref) / size[:, None]).reshape(2 * n)
    ridge = np.hstack([np.zeros((2, c)), BIAS_RIDGE * np.eye(2), -BIAS_RIDGE * np.eye(2)])
    A = np.vstack([np.hstack([A_w, A_b, -A_b]), np.r_[np.full(c, SUM_WEIGHT), np.zeros(4)], ridge])
    sol, _ = nnls(A, np.r_[y, SUM_WEIGHT, 0.0, 0.0], maxiter=50 * (c + 4))
    w = sol[:c] / max(sol[:c].sum(), 1e-12)
    return w, sol[c:c + 2] - sol[c + 2:]


def fit_landmark(candidates: np.ndarray, detections: np.ndarray, axes: np.ndarray, size: np.ndarray,
                 ok: np.ndarray, max_vertices: int = MAX_VERTICES, rounds: int = 2) -> tuple:
    """fit_point on the frames ``ok`` (N,) bool, ``rounds`` times leaving out the gross residuals
    (> GROSS x size) of the previous fit, then pruned to the ``max_vertices`` largest weights and refitted.
    -> weights (C,) (zero outside the kept vertices), bias (2,), used (N,) bool (the frames of the last fit)."""
    def fit(keep: np.ndarray, used: np.ndarray) -> tuple:
        w, b = fit_point(candidates[used][:, keep], detections[used], axes[used], size[used])
        pred = np.einsum("c,ncd->nd", w, candidates[:, keep]) + size[:, None] * np.einsum("c,ncd->nd", b, axes)
        return w, b, ok & (np.linalg.norm(pred - detections, axis=-1) < GROSS * size)

    keep, used = np.arange(candidates.shape[1]), ok
    for _ in range(rounds):
        w, b, used = fit(keep, used)
    keep = np.argsort(w)[::-1][:max_vertices]
    w, b, used = fit(keep, used)
    full = np.zeros(candidates.shape[1])
    full[keep] = w
    return full, b, used


def project_landmarks(W: np.ndarray, bias: np.ndarray, uv: np.ndarray, size: np.ndarray,
                      axes: np.ndarray) -> np.ndarray:
    """Landmark pixels (N,K,2) from weights W (K,U) over the vertices' pixels uv (N,U,2) (convex
    combination of projections), plus the bias (K,2) in each frame's body axes (N,2,2) x size (N,)."""
    return np.einsum("ku,nud->nkd", W, uv) + size[:, None, None] * np.einsum("kc,ncd->nkd", bias, axes)


# -- the command -------------------------------------------------------------------------------------
def _frames(folder: Path, bm: BodyModel, ids: np.ndarray) -> dict:
    """A render folder's frames, flattened to N = E x L: vertex pixels (N,U,2) and depth (N,U), the
    body model's keypoints (N,K,2) and depth (N,K), detections (N,K,3) with swapped groups undone,
    image sizes (N,2), and the (E,L) shape."""
    from lab.sim.calibrate import load_chunks

    chunk = load_chunks(folder)
    uv, depth = render_geometry(bm, chunk, ids)
    e, length = uv.shape[:2]
    flat = lambda x: x.reshape(e * length, *x.shape[2:]).astype(np.float64)
    truth = flat(chunk["uv"])
    return dict(uv=flat(uv), depth=flat(depth), truth=truth, truth_depth=flat(chunk["depth"]),
                detected=unswapped(flat(chunk["detected"]), truth), raw_detected=flat(chunk["detected"]),
                image_size=np.repeat(chunk["image_size"].astype(np.float64), length, 0), shape=(e, length))


def _found(frames: dict, k: int) -> np.ndarray:
    """(N,K) bool: the detector reported the point and its true place is in the image, in front."""
    uv, wh = frames["truth"][:, :k], frames["image_size"][:, None]
    inside = ((uv >= 0) & (uv <= wh)).all(-1) & (frames["truth_depth"][:, :k] > 0.05)
    return (frames["detected"][:, :k, 2] >= FOUND_CONF) & inside


def fit_model(folder: Path, info: dict) -> tuple[LandmarkModel, dict]:
    """The landmark model of the detections in ``folder`` (render chunks) and fit diagnostics."""
    bm = BodyModel.load(None, dtype=torch.float64)
    data = load_free_model()
    template = data["v_template"]
    regressor = KeypointMap.from_regressor(data["keypoint_names"], data["keypoint_regressor"].astype(np.float64))
    rest_kp = regressor.vertex_weights @ template[regressor.vertex_ids]                          # (K,3)
    k = len(KEYPOINT_NAMES)
    cands = candidate_vertices(template, rest_kp)
    ids = np.unique(np.concatenate(cands + [regressor.vertex_ids]))   # the unfitted points keep the body's
    frames = _frames(folder, bm, ids)
    size, axes = frame_scale(frames["truth"][:, :17])
    found = _found(frames, k)
    rows, vids, weights, bias, fitted, report = [], [], [], np.zeros((k, 2)), np.zeros(k, bool), {}
    for j, name in enumerate(KEYPOINT_NAMES):
        if found[:, j].mean() < 0.05:                  # never reported (BlazePose's small toes): keep the body's
            support = np.nonzero(regressor.vertex_weights[j])[0]
            rows += [j] * len(support)
            vids += list(regressor.vertex_ids[support])
            weights += list(regressor.vertex_weights[j, support])
            continue
        cols = np.searchsorted(ids, cands[j])
        w, b, used = fit_landmark(frames["uv"][:, cols], frames["detected"][:, j, :2], axes, size, found[:, j])
        nz = np.nonzero(w)[0]
        rows += [j] * len(nz)
        vids += list(cands[j][nz])
        weights += list(w[nz])
        bias[j], fitted[j] = b, True
        point = w[nz] @ template[cands[j][nz]]
        report[name] = dict(frames=int(found[:, j].sum()), used=int(used.sum()), vertices=int(len(nz)),
                            bias=[round(float(x), 5) for x in b],
                            rest_shift_m=round(float(np.linalg.norm(point - rest_kp[j])), 4),
                            surface_distance_m=round(float(np.linalg.norm(template - point, axis=1).min()), 4))
    model = LandmarkModel(tuple(KEYPOINT_NAMES), np.array(rows), np.array(vids), np.array(weights), bias, fitted,
                          {}, info)
    return replace(model, noise=refit_noise(model, frames, ids)), report


def weights_on(model: LandmarkModel, ids: np.ndarray) -> np.ndarray:
    """(K,U) the model's vertex weights over the sorted vertex ids (U,), which must hold all its vertices."""
    cols = np.searchsorted(ids, model.vertex_ids)
    if not np.array_equal(ids[np.minimum(cols, len(ids) - 1)], model.vertex_ids):
        raise ValueError("the landmark model uses vertices outside ids")
    W = np.zeros((len(model.names), len(ids)))
    np.add.at(W, (model.rows, cols), model.weights)
    return W


def landmark_pixels(model: LandmarkModel, frames: dict, ids: np.ndarray, with_bias: bool = True) -> np.ndarray:
    """(N,K,2) the model's landmark pixels in the frames (vertex pixels frames['uv'] over ``ids``),
    the bias in the body axes and size of the landmarks' own COCO-17 points (as the simulator applies it)."""
    W = weights_on(model, ids)
    surface = project_landmarks(W, np.zeros_like(model.bias), frames["uv"], np.ones(len(frames["uv"])),
                                np.zeros((len(frames["uv"]), 2, 2)))
    if not with_bias:
        return surface
    size, axes = frame_scale(surface[:, :17])
    return surface + size[:, None, None] * np.einsum("kc,ncd->nkd", model.bias, axes)


# Parts of the "blazepose" preset that describe where the detections fall around the points (refitted around
# the landmarks); the rest (misses, swaps, confidences) describes the detector's behaviour, kept from the
# calibration (docs/detector_calibration.md), measured on 2x more frames than the landmark renders.
RESIDUAL_FIELDS = ("jitter", "joint_sigma", "joint_bias", "temporal_rho", "far_sigma_scale", "outlier_rate",
                   "joint_outlier_rate")


def refit_noise(model: LandmarkModel, frames: dict, ids: np.ndarray, rounds: int = 3) -> dict:
    """The "blazepose" preset with its RESIDUAL_FIELDS refitted (lab.sim.calibrate.fit_noise_level) to the
    detections' errors around the landmarks (bias included), as a JSON-ready dict.

    The per-joint spreads are then rescaled (``rounds`` times) until the simulator's spread measured against
    the body model's keypoints matches BlazePose's on the same frames: the landmarks' own pose- and
    view-dependent offsets from those keypoints account for part of what the detector's spread around
    them leaves (they are not independent of it), so adding the two overshoots."""
    from lab.sim.calibrate import detector_statistics, fit_noise_level
    from lab.sim.detector_noise import simulate_detections

    e, length = frames["shape"]
    shaped = lambda x: x.reshape(e, length, *x.shape[1:])
    wh = frames["image_size"].reshape(e, length, 2)[:, 0]
    W = weights_on(model, ids)
    surface, depth = landmark_pixels(model, frames, ids, with_bias=False), np.einsum("ku,nu->nk", W, frames["depth"])
    around = detector_statistics(shaped(landmark_pixels(model, frames, ids)), shaped(depth),
                                 shaped(frames["raw_detected"]), wh)
    level = replace(NoiseLevel.preset("blazepose"), **{k: getattr(fit_noise_level(around), k) for k in RESIDUAL_FIELDS})
    against_truth = lambda det: np.array(detector_statistics(shaped(frames["truth"]), shaped(frames["truth_depth"]),
                                                             det, wh)["sigma"])
    target = against_truth(shaped(frames["raw_detected"]))
    for _ in range(rounds):
        det = simulate_detections(torch.as_tensor(shaped(surface)), torch.as_tensor(shaped(depth)),
                                  torch.as_tensor(wh), detector_level(level, model),
                                  torch.Generator().manual_seed(0)).keypoints.numpy()
        ratio = np.where(target > 0, target / np.maximum(against_truth(det), 1e-6), 1.0)
        sigma = np.asarray(level.joint_sigma) * ratio
        level = replace(level, joint_sigma=tuple(round(float(x), 5) for x in sigma),
                        jitter=float(np.median(sigma[target > 0])))
    return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(level).items()}


def distance_table(folder: Path, model: LandmarkModel) -> dict:
    """Per keypoint, the mean and median 2D distance (px, and x person size) between simulated-clean
    keypoints and the detector's detections on ``folder``'s renders, for the body model's own keypoints
    ("regressor") and the landmark model ("landmarks": surface points plus bias).  Points the detector
    reported (confidence >= FOUND_CONF, true place in the image), left/right swaps undone; "fine" leaves
    out the gross errors (> GROSS x size from the regressor's point) of both alike."""
    bm = BodyModel.load(None, dtype=torch.float64)
    ids = np.unique(model.vertex_ids)
    frames = _frames(folder, bm, ids)
    k = len(model.names)
    found = _found(frames, k)
    size, _ = frame_scale(frames["truth"][:, :17])
    det = frames["detected"][:, :k, :2]
    dist = {"regressor": np.linalg.norm(frames["truth"][:, :k] - det, axis=-1),
            "landmarks": np.linalg.norm(landmark_pixels(model, frames, ids) - det, axis=-1)}
    fine = found & (dist["regressor"] < GROSS * size[:, None])
    out = {}
    for j, name in enumerate(model.names):
        if not found[:, j].any():
            continue
        out[name] = {src: dict(mean_px=round(float(d[found[:, j], j].mean()), 2),
                               median_px=round(float(np.median(d[found[:, j], j])), 2),
                               fine_mean_px=round(float(d[fine[:, j], j].mean()), 2),
                               fine_mean_size=round(float((d[:, j] / size)[fine[:, j]].mean()), 4))
                     for src, d in dist.items()}
    pooled = lambda src, mask: float(dist[src][:, :17][mask[:, :17]].mean())
    out["coco17"] = {src: dict(mean_px=round(pooled(src, found), 2), fine_mean_px=round(pooled(src, fine), 2),
                               fine_mean_size=round(float((dist[src][:, :17] / size[:, None])[fine[:, :17]].mean()), 4))
                     for src in dist}
    return dict(folder=str(folder), frames=int(len(det)), person_size_px=round(float(size.mean()), 1), joints=out)


def statistics_discrepancy(folder: Path, model: LandmarkModel, seed: int = 0) -> dict:
    """How far the simulated "blazepose" detector's statistics (lab.sim.calibrate.compare: per joint kind,
    largest discrepancy of spread, bias, misses, ...) are from BlazePose's on ``folder``'s renders, all
    measured against the body model's keypoints: the old simulator (the body model's keypoints and the
    calibrated preset) and the new one (the landmarks and the preset refitted around them)."""
    from lab.sim.calibrate import compare, detector_statistics
    from lab.sim.detector_noise import simulate_detections

    bm = BodyModel.load(None, dtype=torch.float64)
    ids = np.unique(model.vertex_ids)
    fr = _frames(folder, bm, ids)
    e, length = fr["shape"]
    shaped = lambda x: x.reshape(e, length, *x.shape[1:])
    wh = fr["image_size"].reshape(e, length, 2)[:, 0]
    W = weights_on(model, ids)
    sources = {"regressor": (fr["truth"], fr["truth_depth"], "blazepose"),
               "landmarks": (landmark_pixels(model, fr, ids, with_bias=False), np.einsum("ku,nu->nk", W, fr["depth"]),
                             detector_level("blazepose", model))}
    stats = lambda det: detector_statistics(shaped(fr["truth"]), shaped(fr["truth_depth"]), det, wh)
    measured = stats(shaped(fr["raw_detected"]))
    out = {}
    for name, (uv, depth, level) in sources.items():
        det = simulate_detections(torch.as_tensor(shaped(uv)), torch.as_tensor(shaped(depth)), torch.as_tensor(wh),
                                  level, torch.Generator().manual_seed(seed))
        out[name] = {k: round(v, 4) for k, v in compare(measured, stats(det.keypoints.numpy())).items()}
    return out


def _folder_info(folder: Path) -> dict:
    command = folder / "command.json"
    return json.loads(command.read_text()) if command.is_file() else {}


def fit_main(args) -> int:
    folder = Path(args.folder)
    info = dict(command="python -m lab.sim.landmarks " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
                data=str(folder), render=_folder_info(folder), candidate_radius_m=CANDIDATE_RADIUS_M,
                candidate_spacing_m=CANDIDATE_SPACING_M, max_vertices=MAX_VERTICES, gross=GROSS)
    model, report = fit_model(folder, info)
    model = replace(model, info=dict(info, fit=report))
    model.save(Path(args.out))
    print(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


def compare_main(args) -> int:
    model = LandmarkModel.load(Path(args.model))
    table = distance_table(Path(args.folder), model)
    table["statistics_discrepancy"] = statistics_discrepancy(Path(args.folder), model)
    path = Path(args.model).resolve()
    table["model"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else args.model
    table["command"] = "python -m lab.sim.landmarks " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    print(json.dumps(table, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.sim.landmarks", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fit", help="fit the landmark model to a render folder's detections")
    f.add_argument("folder", help="chunks of `python -m lab calibrate-detector render` (training-split motion)")
    f.add_argument("--out", default=str(LANDMARK_PATHS["blazepose-fit"]))
    c = sub.add_parser("compare", help="distance of the old and new clean keypoints to the detections")
    c.add_argument("folder")
    c.add_argument("--model", default=str(LANDMARK_PATHS["blazepose-fit"]))
    c.add_argument("--json", help="also write the table here")
    args = ap.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(1)
    return dict(fit=fit_main, compare=compare_main)[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
