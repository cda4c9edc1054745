"""Detector-like noise on projected COCO-17 (+ 6 foot) keypoints, with confidences in [0, 1].

From clean projections (pixels + depth) this makes what a 2D pose detector would
report, frame by frame or over a video window (frames are then correlated):

1. Jitter: Gaussian, std per axis = ``level.jitter`` x person size x a per-joint factor
   (``JOINT_SIGMA_SCALE``: wrists, ankles and feet worst, face best).  Person size is
   the larger side of the clean keypoints' box in that frame (its height for an upright
   person).  Over frames the jitter is AR(1) with coefficient ``level.temporal_rho``
   (stationary: same std every frame, lag-1 autocorrelation rho).
2. Outliers: with ``level.outlier_rate`` a point lands ``OUTLIER_SCALE`` x person size
   away (std per axis) instead, i.i.d. per frame (a detector snapping to a wrong blob).
3. Left/right swaps: per ``SWAP_GROUPS`` group (whole arm, whole leg) the left and right
   labels are exchanged, in runs (mean ``level.swap_run`` frames, stationary rate
   ``level.swap_rate`` per group and frame).  Swapped points keep the confidence of a
   well-localised point: identity confusions are confident in real detectors.
4. Confidence: ``sigmoid(conf_logit0 - CONF_SLOPE * err / (CONF_ERR_SCALE * size) +
   conf_noise * n)`` with ``err`` the point's localisation error in pixels and ``n`` an
   AR(1) unit normal; so confidence falls with the error.
   With ``level.conf_slope`` in place of ``CONF_SLOPE`` when a preset sets it.
5. Calibrated presets (``"blazepose"``, fitted by ``lab.sim.calibrate`` on rendered frames) also set
   ``joint_sigma`` (per-joint jitter std, fraction of size, replacing ``jitter x JOINT_SIGMA_SCALE``),
   ``joint_bias`` (a systematic per-joint shift in the body frame of ``body_axes``: towards the
   person's left side and towards the shoulders, fractions of size; not counted in the confidence's
   error), ``always_missing`` (points the detector never reports, e.g. BlazePose's small toes),
   ``joint_dropout`` and ``joint_outlier_rate`` (per-joint rates), ``joint_conf_logit0`` (per-joint confidence logit)
   and ``far_sigma_scale`` (jitter factor of points on the body's far side, ``far_side``).
6. Missing points, reported as (0, 0, 0) as OpenPose-style detectors do, with a status code:
   - OCCLUDED: random dropouts in runs (mean ``level.occlusion_run`` frames), per joint
     (``dropout_rate``) and per limb (``limb_occlusion_rate``, whole ``OCCLUSION_LIMBS``);
   - SELF_OCCLUDED: face points hidden by the head (``level.face_self_occlusion``): nose and
     eyes when the head faces away, the far eye / far ear in profile (depth rules below);
   - TRUNCATED: the true point lies outside the image (a point inside whose noisy position
     falls outside is clipped to the image instead, as a heatmap detector would);
   - BEHIND: the true point is behind the camera (depth <= ``NEAR_PLANE_M``).

Shapes: pixels (B,F,K,2) for video windows or (B,K,2) for independent frames, depth
(B,F,K) / (B,K), image_size (B,2) [w, h].  K = 17 (COCO order) or 23 (+ FOOT6_NAMES).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.contract.layout import COCO17_NAMES, FOOT6_NAMES
from lab.sim.cameras import torch_generator

KEYPOINT_NAMES = COCO17_NAMES + FOOT6_NAMES

# Jitter std per joint relative to ``level.jitter`` (hips = 1).
JOINT_SIGMA_SCALE = {
    "nose": 0.6, "eye": 0.6, "ear": 0.7, "shoulder": 0.9, "elbow": 1.2, "wrist": 1.6,
    "hip": 1.0, "knee": 1.2, "ankle": 1.5, "big_toe": 1.6, "small_toe": 1.6, "heel": 1.5,
}
SWAP_GROUPS = {"arm": ("shoulder", "elbow", "wrist"),
               "leg": ("hip", "knee", "ankle", "big_toe", "small_toe", "heel")}
OCCLUSION_LIMBS = {"arm": ("elbow", "wrist"), "leg": ("knee", "ankle", "big_toe", "small_toe", "heel")}
OUTLIER_SCALE = 0.15        # outlier offset std per axis, fraction of person size
CONF_SLOPE = 2.0            # confidence logit lost per unit of normalised error
CONF_ERR_SCALE = 0.03       # error normaliser, fraction of person size
FAR_SIDE_M = 0.10          # a point this much deeper than the hips' mean lies on the body's far side
NEAR_PLANE_M = 0.05         # points closer than this (or behind) are not seen
FACE_AWAY_MARGIN_M = 0.02   # nose this much deeper than the ears' midpoint: face turned away (> ~100 deg)
EYE_HIDE_MARGIN_M = 0.05    # an eye this much deeper than the other is hidden (eyes ~6 cm apart: > ~55 deg)
EAR_HIDE_MARGIN_M = 0.10    # an ear this much deeper than the other is hidden (ears ~15 cm apart: > ~40 deg)

# Status codes (int8), one per reported point.
VISIBLE, OCCLUDED, SELF_OCCLUDED, TRUNCATED, BEHIND = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class NoiseLevel:
    """Detector quality.  Sizes are fractions of the person's size, rates are per point
    (or per group) and frame, runs are mean lengths in frames."""
    jitter: float = 0.0               # base jitter std (x JOINT_SIGMA_SCALE)
    temporal_rho: float = 0.0         # AR(1) coefficient of jitter and confidence noise over frames
    outlier_rate: float = 0.0
    dropout_rate: float = 0.0         # per joint
    limb_occlusion_rate: float = 0.0  # per limb (OCCLUSION_LIMBS, left and right separately)
    occlusion_run: float = 1.0
    swap_rate: float = 0.0            # per SWAP_GROUPS group
    swap_run: float = 1.0
    conf_logit0: float = math.inf     # confidence logit of a perfect point (inf: confidence 1)
    conf_noise: float = 0.0           # std of the confidence logit noise
    face_self_occlusion: bool = False
    conf_slope: float = CONF_SLOPE    # confidence logit lost per unit of normalised error
    joint_sigma: tuple[float, ...] | None = None            # (K,) per-joint jitter std (x size); None: jitter x scale
    joint_bias: tuple[tuple[float, float], ...] | None = None  # (K,2) [left, up] shift in body_axes (x size)
    always_missing: tuple[str, ...] = ()                     # keypoint names never reported (OCCLUDED)
    confident_outliers: bool = False  # outliers keep a jitter-sized confidence (BlazePose: confidently wrong)
    far_sigma_scale: float = 1.0      # jitter std factor of far-side points (FAR_SIDE_M behind the hips)
    joint_outlier_rate: tuple[float, ...] | None = None      # (K,) per-joint outlier rates; None: outlier_rate
    joint_dropout: tuple[float, ...] | None = None           # (K,) per-joint dropout rates; None: dropout_rate
    joint_conf_logit0: tuple[float, ...] | None = None       # (K,) per-joint conf_logit0; None: conf_logit0

    @staticmethod
    def preset(name: str) -> NoiseLevel:
        """One of PRESETS: "clean", "low", "medium", "high", "blazepose"; vary one with dataclasses.replace."""
        if name == "blazepose" and name not in PRESETS:
            PRESETS[name] = _blazepose_preset()
        return PRESETS[name]


PRESETS = {
    "clean": NoiseLevel(),
    "low": NoiseLevel(jitter=0.006, temporal_rho=0.6, outlier_rate=0.005, dropout_rate=0.02,
                      limb_occlusion_rate=0.01, occlusion_run=8.0, swap_rate=0.005, swap_run=3.0,
                      conf_logit0=3.5, conf_noise=0.3, face_self_occlusion=True),
    "medium": NoiseLevel(jitter=0.012, temporal_rho=0.7, outlier_rate=0.02, dropout_rate=0.05,
                         limb_occlusion_rate=0.03, occlusion_run=8.0, swap_rate=0.02, swap_run=4.0,
                         conf_logit0=3.0, conf_noise=0.5, face_self_occlusion=True),
    "high": NoiseLevel(jitter=0.025, temporal_rho=0.8, outlier_rate=0.05, dropout_rate=0.10,
                       limb_occlusion_rate=0.06, occlusion_run=10.0, swap_rate=0.05, swap_run=5.0,
                       conf_logit0=2.5, conf_noise=0.8, face_self_occlusion=True),
}


CALIBRATION_PATH = Path(__file__).resolve().parents[2] / "docs" / "detector_calibration.json"


def _blazepose_preset() -> NoiseLevel:
    """The preset fitted to BlazePose on rendered frames (``preset`` in CALIBRATION_PATH, written by
    ``python -m lab calibrate-detector stats``)."""
    fitted = json.loads(CALIBRATION_PATH.read_text())["preset"]
    tuples = {k: tuple(tuple(v) if isinstance(v, list) else v for v in fitted[k])
              for k in ("joint_sigma", "joint_bias", "always_missing", "joint_dropout", "joint_conf_logit0",
                                                               "joint_outlier_rate")}
    return NoiseLevel(**dict(fitted, **tuples))


def far_side(depth: torch.Tensor) -> torch.Tensor:
    """(...,K) COCO-ordered depths -> (...,K) bool: deeper than the hips' mean by more than FAR_SIDE_M."""
    return depth - depth[..., 11:13].mean(-1, keepdim=True) > FAR_SIDE_M


def body_axes(uv: torch.Tensor) -> torch.Tensor:
    """(...,K,2) COCO-ordered clean pixels -> (...,2,2) unit image directions [left, up] of the body:
    ``up`` from the hips' midpoint to the shoulders' midpoint, ``left`` perpendicular to it, towards
    the person's left side (its sign follows the left minus right shoulder and hip)."""
    shoulders, hips = uv[..., 5:7, :].mean(-2), uv[..., 11:13, :].mean(-2)
    up = shoulders - hips
    up = up / up.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    side = torch.stack([-up[..., 1], up[..., 0]], -1)
    to_left = uv[..., 5, :] + uv[..., 11, :] - uv[..., 6, :] - uv[..., 12, :]
    side = side * torch.where((side * to_left).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return torch.stack([side, up], -2)


@dataclass
class Detections:
    """Simulated detector output; leading dims (B,F) or (B,) like the input."""
    keypoints: torch.Tensor  # (...,K,3) [x_px, y_px, conf]; missing points are (0, 0, 0)
    status: torch.Tensor     # (...,K) int8: VISIBLE, OCCLUDED, SELF_OCCLUDED, TRUNCATED, BEHIND
    swapped: torch.Tensor    # (...,K) bool: the slot reports its left/right partner's point
    outlier: torch.Tensor    # (...,K) bool: gross mislocalisation
    sigma: torch.Tensor      # (...,K) jitter std in pixels used for each slot


def _pairs(names, parts) -> tuple[list[int], list[int]]:
    """Left and right indices of the named parts present in ``names``."""
    left = [names.index(f"left_{p}") for p in parts if f"left_{p}" in names]
    right = [names.index(f"right_{p}") for p in parts if f"right_{p}" in names]
    return left, right


def joint_sigma_scale(k: int) -> torch.Tensor:
    """(K,) JOINT_SIGMA_SCALE in keypoint order."""
    names = KEYPOINT_NAMES[:k]
    return torch.tensor([JOINT_SIGMA_SCALE[n.removeprefix("left_").removeprefix("right_")] for n in names],
                        dtype=torch.float64)


def expected_occlusion_rate(level: NoiseLevel, k: int) -> torch.Tensor:
    """(K,) stationary probability that a point is OCCLUDED (random dropouts only)."""
    names = KEYPOINT_NAMES[:k]
    in_limb = torch.zeros(k, dtype=torch.bool)
    for parts in OCCLUSION_LIMBS.values():
        left, right = _pairs(names, parts)
        in_limb[left + right] = True
    keep = (1 - level.dropout_rate) * torch.where(in_limb, 1 - level.limb_occlusion_rate, 1.0)
    return (1 - keep).to(torch.float64)


def ar1_normal(shape, frames: int, rho: float, g: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """(shape[0], frames, *shape[1:]) unit normals, AR(1) over frames with lag-1 correlation rho."""
    z = [torch.randn(shape, generator=g, dtype=dtype)]
    innovation = math.sqrt(1.0 - rho * rho)
    for _ in range(frames - 1):
        z.append(rho * z[-1] + innovation * torch.randn(shape, generator=g, dtype=dtype))
    return torch.stack(z, 1)


def markov_runs(shape, frames: int, rate: float, mean_run: float, g: torch.Generator) -> torch.Tensor:
    """(shape[0], frames, *shape[1:]) bool on/off chains: stationary P(on) = rate, runs of
    on-frames last ``mean_run`` frames on average.  One frame: Bernoulli(rate)."""
    rate = torch.as_tensor(rate, dtype=torch.float64)  # a float, or per-element rates broadcast to shape
    if (rate <= 0.0).all():
        return torch.zeros((shape[0], frames, *shape[1:]), dtype=torch.bool)
    p_off = 1.0 / max(mean_run, 1.0)
    p_on = (rate * p_off / (1.0 - rate)).clamp(max=1.0)  # balances the flow on <-> off at P(on) = rate
    state = torch.rand(shape, generator=g) < rate
    out = [state]
    for _ in range(frames - 1):
        u = torch.rand(shape, generator=g)
        state = torch.where(state, u >= p_off, u < p_on)
        out.append(state)
    return torch.stack(out, 1)


def _face_hidden(depth: torch.Tensor) -> torch.Tensor:
    """(B,F,K) depth -> (B,F,K) bool: face points the head hides (COCO order: nose, eyes, ears)."""
    hidden = torch.zeros_like(depth, dtype=torch.bool)
    nose, l_eye, r_eye, l_ear, r_ear = (depth[..., i] for i in range(5))
    away = nose - (l_ear + r_ear) / 2 > FACE_AWAY_MARGIN_M
    hidden[..., 0] = away
    hidden[..., 1] = away | (l_eye - r_eye > EYE_HIDE_MARGIN_M)
    hidden[..., 2] = away | (r_eye - l_eye > EYE_HIDE_MARGIN_M)
    hidden[..., 3] = l_ear - r_ear > EAR_HIDE_MARGIN_M
    hidden[..., 4] = r_ear - l_ear > EAR_HIDE_MARGIN_M
    return hidden


def _swap_source(b: int, frames: int, k: int, level: NoiseLevel, g: torch.Generator):
    """(B,F,K) index of the point each slot reports, and the (B,F,K) swapped mask."""
    names = KEYPOINT_NAMES[:k]
    src = torch.arange(k).expand(b, frames, k).clone()
    for parts in SWAP_GROUPS.values():
        left, right = _pairs(names, parts)
        on = markov_runs((b,), frames, level.swap_rate, level.swap_run, g)[..., None]  # (B,F,1)
        src[..., left] = torch.where(on, torch.tensor(right), src[..., left])
        src[..., right] = torch.where(on, torch.tensor(left), src[..., right])
    return src, src != torch.arange(k)


def _occluded(b: int, frames: int, k: int, level: NoiseLevel, g: torch.Generator) -> torch.Tensor:
    """(B,F,K) random dropouts: per joint and per whole limb, in runs."""
    names = KEYPOINT_NAMES[:k]
    rate = level.dropout_rate if level.joint_dropout is None else torch.tensor(level.joint_dropout[:k])
    occ = markov_runs((b, k), frames, rate, level.occlusion_run, g)
    for parts in OCCLUSION_LIMBS.values():
        for side in _pairs(names, parts):
            on = markov_runs((b,), frames, level.limb_occlusion_rate, level.occlusion_run, g)
            occ[..., side] |= on[..., None]
    return occ


def simulate_detections(pixels: torch.Tensor, depth: torch.Tensor, image_size: torch.Tensor,
                        level: NoiseLevel | str, generator) -> Detections:
    """Detector output for clean projections; see the module docstring.

    pixels (B,F,K,2) or (B,K,2), depth (B,F,K) or (B,K), image_size (B,2) [w, h];
    ``generator`` a torch.Generator or numpy Generator (the only randomness used).
    Random draws are made in a fixed order in float64 on the CPU, then cast back."""
    level = NoiseLevel.preset(level) if isinstance(level, str) else level
    g = torch_generator(generator)
    single = pixels.dim() == 3
    if single:
        pixels, depth = pixels[:, None], depth[:, None]
    dtype, device = pixels.dtype, pixels.device
    uv = pixels.detach().to("cpu", torch.float64)
    z = depth.detach().to("cpu", torch.float64)
    wh = torch.as_tensor(image_size).detach().to("cpu", torch.float64)[:, None, None]  # (B,1,1,2)
    b, frames, k, _ = uv.shape

    in_front = z > NEAR_PLANE_M
    inside = in_front & ((uv >= 0) & (uv <= wh)).all(-1)
    # Person size from the points in front of the camera (behind ones project to garbage).
    big, small = torch.full_like(uv, math.inf), torch.full_like(uv, -math.inf)
    box = (torch.where(in_front[..., None], uv, small).amax(2) - torch.where(in_front[..., None], uv, big).amin(2))
    size = box.amax(-1).nan_to_num(1.0, 1.0, 1.0).clamp_min(1.0)[..., None]  # (B,F,1)

    scale = (level.jitter * joint_sigma_scale(k) if level.joint_sigma is None
             else torch.tensor(level.joint_sigma[:k], dtype=torch.float64))
    sigma = scale * size                                                                 # (B,F,K)
    if level.far_sigma_scale != 1.0:  # limbs behind the body are seen worse (depth-dependent)
        sigma = torch.where(far_side(z), level.far_sigma_scale * sigma, sigma)
    offset = sigma[..., None] * ar1_normal((b, k, 2), frames, level.temporal_rho, g)
    outlier_rate = (level.outlier_rate if level.joint_outlier_rate is None
                    else torch.tensor(level.joint_outlier_rate[:k], dtype=torch.float64))
    outlier = torch.rand((b, frames, k), generator=g) < outlier_rate
    wild = OUTLIER_SCALE * size[..., None] * torch.randn((b, frames, k, 2), generator=g, dtype=torch.float64)
    jitter_err = offset.norm(dim=-1)
    offset = torch.where(outlier[..., None], wild, offset)
    err = jitter_err if level.confident_outliers else offset.norm(dim=-1)
    if level.joint_bias is not None:  # systematic: shifts the point, not the detector's doubt
        bias = torch.tensor(level.joint_bias[:k], dtype=torch.float64)                  # (K,2)
        offset = offset + size[..., None] * torch.einsum("kc,bfcd->bfkd", bias, body_axes(uv))
    logit_noise = ar1_normal((b, k), frames, level.temporal_rho, g)

    # Swaps: a slot reports its partner's (noisy) point, with that point's visibility.
    src, swapped = _swap_source(b, frames, k, level, g)
    take = lambda x: torch.gather(x, 2, src if x.dim() == 3 else src[..., None].expand_as(x))
    noisy, err, outlier, sigma = take(uv + offset), take(err), take(outlier), take(sigma)
    in_front, inside, face_hidden = take(in_front), take(inside), take(_face_hidden(z))
    occluded = _occluded(b, frames, k, level, g)
    occluded[..., [i for i, n in enumerate(KEYPOINT_NAMES[:k]) if n in level.always_missing]] = True

    logit0 = (level.conf_logit0 if level.joint_conf_logit0 is None
              else take(torch.tensor(level.joint_conf_logit0[:k], dtype=torch.float64).expand(b, frames, k)))
    logit = logit0 - level.conf_slope * err / (CONF_ERR_SCALE * size) + level.conf_noise * logit_noise
    conf = torch.sigmoid(logit)
    status = torch.full((b, frames, k), VISIBLE, dtype=torch.int8)
    for code, mask in ((OCCLUDED, occluded), (SELF_OCCLUDED, face_hidden & level.face_self_occlusion),
                       (TRUNCATED, ~inside), (BEHIND, ~in_front)):  # later codes take precedence
        status[mask] = code
    noisy = torch.minimum(noisy.clamp_min(0.0), wh)
    kp = torch.cat([noisy, conf[..., None]], -1)
    kp[status != VISIBLE] = 0.0

    out = Detections(kp.to(device, dtype), status.to(device), swapped.to(device), outlier.to(device),
                     sigma.to(device, dtype))
    if single:
        out = Detections(*(x[:, 0] for x in (out.keypoints, out.status, out.swapped, out.outlier, out.sigma)))
    return out
