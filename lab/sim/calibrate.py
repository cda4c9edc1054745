"""Calibrate the detector simulator against BlazePose on rendered frames (docs/detector_calibration.md).

    python -m lab calibrate-detector render --split train --excerpts 160 --seed 0 --out cache/calibration/train
    python -m lab calibrate-detector stats cache/calibration/train      # -> docs/detector_calibration.json
    python -m lab calibrate-detector render --split val --excerpts 40 --seed 1 --out cache/calibration/val
    python -m lab calibrate-detector evaluate cache/calibration/val --limit 20 [--regressor R] [--prior P]

``render`` (seeded, resumable: chunks already on disk are skipped):
1. Motion: ``--excerpts`` short excerpts (``--length`` consecutive 24 fps frames) of randomly chosen
   usable CMU clips of the split's subjects (``lab.data.dataset.split_of``), fitted to the
   free body model as the dataset converter does (``lab.data.convert``: one calibration on the
   chosen clips, then the batched fit of the excerpts only: no full conversion needed).
2. Per excerpt: a random body (betas ~ N(0, I), clipped to +-2.5), a random static camera
   (``lab.sim.cameras.sample_cameras``: yaw all around, pitch, distance through the fill, focal
   length 24-85 mm) at a small resolution, clothes colours per body part, a Blender studio light and its
   rotation, floor colour, and a procedural background behind.
3. Rendering: Blender's Workbench engine in a bpy subprocess per chunk of ``--chunk`` excerpts
   (``lab/scripts/render_calibration_frames.py``), then BlazePose (``backend.detect``, video mode, one
   graph per excerpt) on each frame.  The chunk's truth (COCO-17 + FOOT6 projections, depth, camera,
   parameters) and detections go to ``OUT/chunk_XXXX.npz``; the PNGs are deleted.

``stats`` measures the statistics of those detections against the truth (``detector_statistics``)
on the even chunks, fits a ``NoiseLevel`` to them (``fit_noise_level``), measures the odd chunks
as the held-out part and writes all of it to ``--json``, plus the held-out truth (``--heldout``), on
which tests check that the simulator with the fitted preset reproduces the held-out statistics.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lab.sim.detector_noise import (
    CONF_ERR_SCALE,
    FAR_SIDE_M,
    KEYPOINT_NAMES,
    OUTLIER_SCALE,
    SWAP_GROUPS,
    NoiseLevel,
    _pairs,
    body_axes,
    far_side,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "lab" / "scripts" / "render_calibration_frames.py"
RESOLUTIONS = ((640, 360), (480, 360), (360, 480))   # small: the renders' cost; BlazePose sees 256x256 crops
FOCAL_MM_RANGE = (24.0, 85.0)
FILL_RANGE = (0.35, 0.9)
BETA_CLIP = 2.5
FOUND_CONF = 0.1          # a point below this confidence counts as missed (as lab.detect.evaluate)
GROSS_ERR = 0.1           # an error this large (x size) is a gross error, not jitter
SWAP_MIN_APART = 0.05     # a left/right group can be told swapped when its true points are this far apart (x size)
# Blender (Z up) from the body model's frame (Y up): (x, y, z) -> (x, -z, y).
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# Clothes by body part (SMPL joint of largest skinning weight): skin, shirt, trousers, shoes;
# forearms and shins are skin with short sleeves / shorts.
PART_OF_JOINT = np.array([2, 2, 2, 1, 2, 2, 1, 3, 3, 1, 3, 3, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0])
FOREARMS, SHINS = (18, 19), (4, 5)


# -- motion ------------------------------------------------------------------------------------------
def choose_excerpts(split: str, n: int, length: int, seed: int,
                    subjects: tuple[int, ...] | None = None) -> list[tuple[str, int]]:
    """n (clip_id, first resampled frame) of distinct usable clips of the split (repeats if too few), only
    of ``subjects`` when given (e.g. bench.SUBJECT_PARTS['tuning']: tuning data never reaches a report)."""
    from lab.data import cmu, convert, dataset

    usable, _ = convert.select_clips(cmu.read_clips(cmu.cmu_root()))
    clips = [c for c in usable if dataset.split_of(c.subject) == split and convert.resampled_length(c) >= length
             and (subjects is None or c.subject in subjects)]
    if not clips:
        raise ValueError(f"no usable {split} clip of subjects {subjects} is {length} frames long")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(clips), size=n, replace=n > len(clips))
    return [(clips[i].clip_id, int(rng.integers(0, convert.resampled_length(clips[i]) - length + 1)))
            for i in picked]


class ExcerptFitter:
    """The dataset converter's calibration (on the chosen clips) and fit, for excerpts only."""

    def __init__(self, clip_ids: list[str], cache: Path):
        from backend.body.body_model import BodyModel
        from lab.data import cmu, convert, retarget

        root = cmu.cmu_root()
        by_id = {c.clip_id: c for c in cmu.read_clips(root)}
        self.clips = by_id
        path = cache / "calibration.npz"
        if path.is_file():
            z = np.load(path)
            calib = retarget.Calibration(z["betas"], z["offsets"], float(z["residual_mm"]))
        else:
            chosen = sorted({by_id[c] for c in clip_ids}, key=lambda c: (c.subject, c.clip_id))
            calib = convert.run_calibration(BodyModel.load(None), cmu.load_skeleton(root), chosen, root)
            np.savez(path, betas=calib.betas, offsets=calib.offsets, residual_mm=calib.residual_mm)
        self.fitter = convert.ClipFitter(root, calib, retarget.FitConfig())

    def fit(self, excerpts: list[tuple[str, int]], length: int) -> dict:
        """World-frame global_orient (E,L,3), body_pose (E,L,69), transl (E,L,3) float64, residual_mm (E,)."""
        order = sorted(range(len(excerpts)), key=lambda i: (self.clips[excerpts[i][0]].subject, excerpts[i]))
        fits = self.fitter.fit_job([self.clips[excerpts[i][0]] for i in order],
                                   [(excerpts[i][1], excerpts[i][1] + length) for i in order])
        out = [None] * len(excerpts)
        for i, fit in zip(order, fits):
            out[i] = fit
        pose = np.stack([f["pose"] for f in out]).astype(np.float64)
        return dict(global_orient=pose[..., :3], body_pose=pose[..., 3:],
                    transl=np.stack([f["transl"] for f in out]).astype(np.float64),
                    residual_mm=np.array([1000 * f["residual"].mean() for f in out]))


# -- one chunk ---------------------------------------------------------------------------------------
def clothes_colors(part: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V,) SMPL joint of each vertex -> (V,3) linear RGB: skin, shirt, trousers, shoes, drawn at random."""
    skin = np.array([0.75, 0.55, 0.42]) * rng.uniform(0.25, 1.1)
    palette = np.stack([skin, rng.uniform(0.03, 0.8, 3), rng.uniform(0.02, 0.5, 3), rng.uniform(0.01, 0.3, 3)])
    region = PART_OF_JOINT[part].copy()
    if rng.random() < 0.4:                      # short sleeves
        region[np.isin(part, FOREARMS)] = 0
    if rng.random() < 0.25:                     # shorts
        region[np.isin(part, SHINS)] = 0
    return palette[region]


def background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """(h,w,3) float in [0,1]: smooth random colour field, a few flat rectangles, sensor noise."""
    import cv2

    grid = rng.uniform(0.0, 1.0, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    img = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    for _ in range(rng.integers(0, 6)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        img[y0:y0 + rng.integers(10, h // 2), x0:x0 + rng.integers(10, w // 2)] = rng.uniform(0, 1, 3)
    return img


def blender_camera(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World-to-camera (OpenCV, model frame) -> Blender camera matrix_world (4,4) (cameras look down -Z, +Y up)."""
    cam_to_world = R.T @ np.diag([1.0, -1.0, -1.0])
    M = np.eye(4)
    M[:3, :3] = MODEL_TO_BLENDER @ cam_to_world
    M[:3, 3] = MODEL_TO_BLENDER @ (-R.T @ t)
    return M


def make_chunk(bm, motion: dict, rng: np.random.Generator, seed: int) -> tuple[dict, dict]:
    """(job arrays for the Blender worker, truth arrays) of E excerpts of L frames (see the module doc)."""
    from backend.body.body_model import pose_to_rotmats
    from lab.sim.cameras import SENSOR_WIDTH_MM, project, sample_cameras

    e, length = motion["global_orient"].shape[:2]
    betas = np.clip(rng.standard_normal((e, 10)), -BETA_CLIP, BETA_CLIP)
    t = lambda x: torch.as_tensor(x, dtype=bm.dtype)
    flat = lambda x: t(x).reshape(e * length, -1)
    with torch.no_grad():
        out = bm(pose_to_rotmats(flat(motion["global_orient"]), flat(motion["body_pose"])),
                 t(np.repeat(betas, length, 0)), flat(motion["transl"]))
    verts = out.vertices.reshape(e, length, -1, 3)
    kps = out.keypoints.reshape(e, length, -1, 3)[:, :, :23]
    joints = out.joints.reshape(e, length, 24, 3)
    cams = sample_cameras(torch.cat([joints, kps], 2).reshape(e, -1, 3), torch.Generator().manual_seed(seed),
                          resolutions=RESOLUTIONS, focal_mm_range=FOCAL_MM_RANGE, fill_range=FILL_RANGE)
    uv, depth = project(kps.reshape(e, -1, 3), cams)
    R, tr = cams.R.numpy(), cams.t.numpy()
    size = cams.image_size.numpy()
    weights = np.load(ROOT / "backend" / "assets" / "free_body_model.npz")["weights"]
    part = weights.argmax(1)
    job = dict(vertices=(verts.numpy() @ MODEL_TO_BLENDER.T).astype(np.float32), faces=bm.faces.astype(np.int32),
               vertex_colors=np.stack([clothes_colors(part, rng) for _ in range(e)]).astype(np.float32),
               camera_matrix=np.stack([blender_camera(R[i], tr[i]) for i in range(e)]),
               lens_mm=cams.focal_length.numpy() / size[:, 0] * SENSOR_WIDTH_MM, image_size=size.astype(np.int32),
               floor_color=rng.uniform(0.05, 0.8, (e, 3)), studio_light=rng.integers(0, 64, e),
               studio_rotate=rng.uniform(-math.pi, math.pi, e))
    truth = dict(uv=uv.reshape(e, length, 23, 2).numpy().astype(np.float32),
                 depth=depth.reshape(e, length, 23).numpy().astype(np.float32),
                 image_size=size.astype(np.float32), focal_length=cams.focal_length.numpy().astype(np.float32),
                 cam_R=R.astype(np.float32), cam_t=tr.astype(np.float32), betas=betas.astype(np.float32),
                 **{k: motion[k].astype(np.float32) for k in ("global_orient", "body_pose", "transl")})
    return job, truth


def render_frames(job: dict, workdir: Path) -> float:
    """Runs the Blender worker on ``job`` into ``workdir``; returns seconds."""
    path = workdir / "job.npz"
    np.savez(path, **job)
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(WORKER), str(path), str(workdir)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("Blender rendering failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    return time.time() - t0


def detect_frames(workdir: Path, shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Each rendered RGBA frame over a random background -> BlazePose (E,L,23,3) [x, y, conf]; seconds."""
    import cv2

    from backend.detect.blazepose import BlazePose, to_layouts

    e, length = shape
    out = np.zeros((e, length, 23, 3), np.float32)
    t0 = time.time()
    for i in range(e):
        with BlazePose(static=False) as detector:   # fresh tracking per excerpt
            back = None
            for f in range(length):
                rgba = cv2.imread(str(workdir / f"{i:03d}_{f:03d}.png"), cv2.IMREAD_UNCHANGED)
                rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA).astype(np.float32) / 255.0
                if back is None:
                    back = background(rgba.shape[1], rgba.shape[0], rng)
                alpha = rgba[..., 3:]
                img = rgba[..., :3] * alpha + back * (1 - alpha)
                img = (255 * img + rng.normal(0, 2.0, img.shape)).clip(0, 255).astype(np.uint8)
                person = detector(img)
                if person is not None:
                    coco, feet = to_layouts(person.image)
                    out[i, f] = np.concatenate([coco, feet])
    return out, time.time() - t0


def render_main(args) -> int:
    from backend.body.body_model import BodyModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from lab.bench_common import SUBJECT_PARTS

    subjects = SUBJECT_PARTS[args.subjects] if args.subjects else None
    excerpts = choose_excerpts(args.split, args.excerpts, args.length, args.seed, subjects)
    chunks = [excerpts[i:i + args.chunk] for i in range(0, len(excerpts), args.chunk)]
    todo = [c for c in range(len(chunks)) if not (out / f"chunk_{c:04d}.npz").is_file()][:args.max_chunks]
    print(f"{len(excerpts)} excerpts x {args.length} frames of {args.split} subjects in {len(chunks)} chunks; "
          f"{len(todo)} to do", flush=True)
    if not todo:
        return 0
    fitter = ExcerptFitter([c for c, _ in excerpts], out)
    bm = BodyModel.load(None, dtype=torch.float64)
    for c in todo:
        t0 = time.time()
        motion = fitter.fit(chunks[c], args.length)
        t_fit = time.time() - t0
        rng = np.random.default_rng([args.seed, c])
        job, truth = make_chunk(bm, motion, rng, args.seed * 100003 + c)
        with tempfile.TemporaryDirectory(prefix="calib_", dir=out) as tmp:
            t_render = render_frames(job, Path(tmp))
            detected, t_detect = detect_frames(Path(tmp), truth["uv"].shape[:2], rng)
        frames = detected.shape[0] * detected.shape[1]
        tmp_path = out / f".chunk_{c:04d}.tmp.npz"
        np.savez_compressed(tmp_path, detected=detected, clip_ids=np.array([x for x, _ in chunks[c]]),
                            starts=np.array([s for _, s in chunks[c]]), residual_mm=motion["residual_mm"],
                            seconds=np.array([t_fit, t_render, t_detect]), **truth)
        tmp_path.replace(out / f"chunk_{c:04d}.npz")
        print(f"chunk {c + 1}/{len(chunks)}: {frames} frames, fit {t_fit:.0f} s, "
              f"render {t_render / frames:.2f} s/frame, "
              f"detect {t_detect / frames:.3f} s/frame", flush=True)
    (out / "command.json").write_text(json.dumps(dict(command="python -m lab calibrate-detector "
                                                      + " ".join(sys.argv[2:]), **vars(args)), indent=1))
    return 0


# -- statistics --------------------------------------------------------------------------------------
def load_chunks(folder: Path, parity: int | None = None) -> dict:
    """Concatenated chunk arrays (leading E) of the chunks with index % 2 == parity (all when None)."""
    paths = sorted(folder.glob("chunk_*.npz"))
    paths = [p for p in paths if parity is None or int(p.stem.split("_")[1]) % 2 == parity]
    if not paths:
        raise SystemExit(f"no chunk_*.npz in {folder}: run `python -m lab calibrate-detector render` first")
    parts = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) if parts[0][k].ndim else np.stack([p[k] for p in parts])
            for k in parts[0]}


def _groups(k: int) -> list[tuple[list[int], list[int]]]:
    names = KEYPOINT_NAMES[:k]
    return [_pairs(names, parts) for parts in SWAP_GROUPS.values()]


def _runs(on: np.ndarray) -> float:
    """Mean length of runs of True along the last axis of (..., L) bool (NaN without any run)."""
    starts = on[..., 0].sum() + (on[..., 1:] & ~on[..., :-1]).sum()
    return float(on.sum() / starts) if starts else float("nan")


def _lag1(x: np.ndarray, ok: np.ndarray) -> float:
    """Lag-1 correlation over axis 1 of (E,L,...) zero-mean residuals, where ``ok`` (E,L,...) on both frames."""
    both = ok[:, 1:] & ok[:, :-1]
    a, b = x[:, 1:][both], x[:, :-1][both]
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def detector_statistics(uv: np.ndarray, depth: np.ndarray, detected: np.ndarray, image_size: np.ndarray) -> dict:
    """Detector errors against the truth, in the simulator's terms (lists, JSON-ready).

    uv (E,L,K,2) true pixels, depth (E,L,K) metres, detected (E,L,K,3) [x, y, conf] (conf < FOUND_CONF:
    missed), image_size (E,2).  K = 23 (COCO-17 + FOOT6).  Errors are in the body frame of
    ``body_axes`` ([left, up]) as fractions of the person's size (larger side of the true points' box).
    Left/right groups (arm, leg) count as swapped when the crossed assignment is under half the
    straight one's error; swapped groups are un-swapped before the jitter statistics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # joints never found: NaN means, reported as such
        return _statistics(uv, depth, detected, image_size)


def _statistics(uv, depth, detected, image_size) -> dict:
    e, length, k, _ = uv.shape
    inside = ((uv >= 0) & (uv <= image_size[:, None, None])).all(-1) & (depth > 0.05)
    size = (uv.max(2) - uv.min(2)).max(-1)                                   # (E,L)
    found = (detected[..., 2] >= FOUND_CONF) & inside
    det = detected[..., :2].copy()
    swap_rate, swap_run, swapped_any = [], [], np.zeros((e, length, k), bool)
    for left, right in _groups(k):
        ok = found[..., left].all(-1) & found[..., right].all(-1)
        dist = lambda a, b: np.linalg.norm(det[..., a, :] - uv[..., b, :], axis=-1).sum(-1)
        straight, crossed = dist(left, left) + dist(right, right), dist(left, right) + dist(right, left)
        apart = np.linalg.norm(uv[..., left, :] - uv[..., right, :], axis=-1).mean(-1) > SWAP_MIN_APART * size
        swapped = ok & apart & (crossed < 0.5 * straight)
        swap_rate.append(float(swapped.sum() / max((ok & apart).sum(), 1)))
        swap_run.append(_runs(swapped))
        swapped_any[..., left + right] |= swapped[..., None]
        both = left + right
        partner = right + left
        det[..., both, :] = np.where(swapped[..., None, None], detected[..., partner, :2], det[..., both, :])
    axes = body_axes(torch.as_tensor(uv, dtype=torch.float64)).numpy()       # (E,L,2,2)
    res = np.einsum("elcd,elkd->elkc", axes, det - uv) / size[..., None, None]  # (E,L,K,2) [left, up]
    err = np.linalg.norm(res, axis=-1)
    gross = found & (err > GROSS_ERR)
    fine = found & ~gross
    nan_fine = np.where(fine[..., None], res, np.nan)
    bias = np.nan_to_num(np.nanmean(nan_fine, axis=(0, 1)))                 # (K,2)
    centred = np.where(fine[..., None], res - bias, 0.0)
    far = far_side(torch.as_tensor(depth)).numpy()
    # Per-joint std on the near side, robust (1.4826 x median absolute deviation: outliers that land
    # near the truth do not inflate it); the far side's pooled factor on top (far_sigma_scale).
    near_fine = fine & ~far
    mad = lambda x: 1.4826 * float(np.median(np.abs(x))) if x.size else 0.0
    sigma = np.array([mad(centred[..., j, :][near_fine[..., j]]) for j in range(k)])       # (K,)
    z = centred / np.maximum(sigma, 1e-6)[:, None]                          # (E,L,K,2) z-scores
    far_scale = mad(z[fine & far]) / mad(z[near_fine]) if (fine & far).any() else 1.0
    dev = np.linalg.norm(centred, axis=-1) / CONF_ERR_SCALE
    conf = detected[..., 2].clip(1e-3, 1 - 1e-3)
    logit = np.log(conf / (1 - conf))
    x, y = dev[fine & ~swapped_any], logit[fine & ~swapped_any]
    slope, intercept = np.polyfit(x, y, 1) if len(x) > 2 else (0.0, 0.0)
    noise = float(np.std(y - (intercept + slope * x))) if len(x) > 2 else 0.0
    mean_conf = np.nanmean(np.where(found, detected[..., 2], np.nan), axis=(0, 1))
    joint_conf = [joint_confidence(dev[..., j][fine[..., j]], mean_conf[j], -slope, noise) for j in range(k)]
    missed = inside & ~found
    near = depth - depth[..., 11:13].mean(-1, keepdims=True) < -FAR_SIDE_M
    dev_px = np.linalg.norm(centred, axis=-1)
    by_size = {}
    for lo, hi in ((0, 150), (150, 250), (250, 10_000)):
        sel = fine & ((size >= lo) & (size < hi))[..., None]
        by_size[f"{lo}-{hi}px"] = dict(frames=int(((size >= lo) & (size < hi)).sum()),
                                       mean_dev=float(dev_px[sel].mean()) if sel.any() else None)
    frac = lambda m, of: (m.sum((0, 1)) / np.maximum(of.sum((0, 1)), 1)).tolist()
    return dict(
        frames=int(e * length), excerpts=int(e), joints=list(KEYPOINT_NAMES[:k]),
        person_size_px=float(size.mean()),
        bias=bias.tolist(), sigma=sigma.tolist(),
        gross_rate=frac(gross, found), missed_rate=frac(missed, inside),
        frames_without_person=int((detected[..., 2] == 0).all(-1).sum()),
        missed_run=_runs(np.moveaxis(missed, 1, -1)),
        swap_rate=swap_rate, swap_run=swap_run,
        lag1_correlation=_lag1(centred, fine[..., None] & np.ones(2, bool)),
        mean_confidence=mean_conf.tolist(),
        confidence_fit=dict(logit0=float(intercept), slope=float(-slope), noise=noise,
                            joint_logit0=[c[0] for c in joint_conf], joint_low_share=[c[1] for c in joint_conf]),
        depth_effect=dict(far_sigma_scale=far_scale, far_side_dev=float(dev_px[fine & far].mean()),
                          near_side_dev=float(dev_px[fine & near].mean()),
                          by_person_size=by_size),
    )


def joint_confidence(dev: np.ndarray, mean_conf: float, slope: float, noise: float) -> tuple:
    """(logit0, low share) for one joint: the logit0 at which the simulator's confidences
    sigmoid(logit0 - slope dev + noise n), over this joint's deviations ``dev`` (N,) and unit normals n,
    have the measured mean ``mean_conf`` among those >= FOUND_CONF (bisection), and the share of them
    below FOUND_CONF (points the simulator's confidence alone makes missed).  (None, 0) if never found."""
    if len(dev) == 0 or not np.isfinite(mean_conf):
        return None, 0.0
    n = np.random.default_rng(0).standard_normal(64)
    conf = lambda a: 1 / (1 + np.exp(-(a - slope * dev[:, None] + noise * n)))
    found_mean = lambda c: float(c[c >= FOUND_CONF].mean()) if (c >= FOUND_CONF).any() else 0.0
    lo, hi = -10.0, 20.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if found_mean(conf(mid)) < mean_conf else (lo, mid)
    a = (lo + hi) / 2
    return round(a, 4), float((conf(a) < FOUND_CONF).mean())


def fit_noise_level(stats: dict) -> NoiseLevel:
    """A NoiseLevel reproducing ``stats`` (detector_statistics): per-joint sigma and bias as measured,
    outliers from the gross-error share (an outlier of std OUTLIER_SCALE per axis lies beyond
    GROSS_ERR with probability exp(-GROSS_ERR^2 / (2 OUTLIER_SCALE^2))), dropouts from the misses,
    swaps, AR(1) coefficient and confidence as measured (per-joint dropouts and confidence logits).
    Never-found points are ``always_missing``."""
    names = stats["joints"]
    missed = np.array(stats["missed_rate"])
    never = tuple(n for n, m in zip(names, missed) if m > 0.99)
    seen = missed <= 0.99
    p_beyond = math.exp(-GROSS_ERR ** 2 / (2 * OUTLIER_SCALE ** 2))
    fit = stats["confidence_fit"]
    sigma = np.array(stats["sigma"])
    sigma[~seen] = float(np.median(sigma[seen]))
    return NoiseLevel(
        jitter=float(np.median(sigma[seen])), temporal_rho=float(np.clip(stats["lag1_correlation"], 0.0, 0.95)),
        outlier_rate=float(np.mean(np.array(stats["gross_rate"])[seen]) / p_beyond),
        dropout_rate=float(np.mean(missed[seen])), limb_occlusion_rate=0.0,
        occlusion_run=float(np.nan_to_num(stats["missed_run"], nan=1.0)),
        swap_rate=float(np.mean(stats["swap_rate"])), swap_run=float(np.nanmean(stats["swap_run"] + [1.0])
                                                                     if np.all(np.isnan(stats["swap_run"]))
                                                                     else np.nanmean(stats["swap_run"])),
        conf_logit0=round(fit["logit0"], 4), conf_noise=round(fit["noise"], 4), conf_slope=round(fit["slope"], 4),
        face_self_occlusion=False, confident_outliers=True,
        far_sigma_scale=round(stats["depth_effect"]["far_sigma_scale"], 4),
        # The simulator's low confidences miss points too: drop only the rest at random.
        joint_dropout=tuple(round(float(max(0.0, (m - low) / (1 - low))), 5) if ok else 0.0
                            for m, low, ok in zip(missed, fit["joint_low_share"], seen)),
        joint_outlier_rate=tuple(round(float(r) / p_beyond, 5) for r in stats["gross_rate"]),
        joint_conf_logit0=tuple(fit["logit0"] if a is None else a for a in fit["joint_logit0"]),
        joint_sigma=tuple(round(float(s), 5) for s in sigma),
        joint_bias=tuple((round(b[0], 5), round(b[1], 5)) for b in stats["bias"]), always_missing=never)


def simulated_statistics(truth: dict, level: NoiseLevel | str, seed: int = 0) -> dict:
    """detector_statistics of the simulator (``level``) on the same true points as ``truth``
    (uv (E,L,K,2), depth (E,L,K), image_size (E,2))."""
    from lab.sim.detector_noise import simulate_detections

    uv, depth = torch.as_tensor(truth["uv"], dtype=torch.float64), torch.as_tensor(truth["depth"], dtype=torch.float64)
    det = simulate_detections(uv, depth, torch.as_tensor(truth["image_size"], dtype=torch.float64), level,
                              torch.Generator().manual_seed(seed))
    return detector_statistics(truth["uv"], truth["depth"], det.keypoints.numpy(), truth["image_size"])


# Tolerances of ``compare``: how close the simulator must come to the held-out statistics.  Spread,
# bias, gross errors and confidence: a little above the two real halves' distance from each other
# (sampling noise of ~80 excerpts, "halves_discrepancy" in the json: 0.31, 0.005, 0.038, 0.039);
# misses, lag-1 correlation and swaps: the fitted model's remaining error (0.065, 0.10, 0.035: the
# simulator misses wrists more often, its outliers and dropouts break the correlation more, swaps are
# rare).  The old presets miss by 0.69-2.9 in spread, 0.37-0.45 in misses, 0.22-0.35 in correlation.
TOLERANCES = dict(sigma_rel=0.35, bias_abs=0.01, missed_abs=0.08, gross_abs=0.05, swap_abs=0.04,
                  lag1_abs=0.12, confidence_abs=0.06)


def _joint_groups(names) -> np.ndarray:
    """(G,K) 0/1 rows averaging each joint kind (left and right, or the face points) together."""
    kind = lambda n: "face" if n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear") else \
        n.removeprefix("left_").removeprefix("right_")
    kinds = list(dict.fromkeys(kind(n) for n in names))
    rows = np.array([[kind(n) == k for n in names] for k in kinds], float)
    return rows / rows.sum(1, keepdims=True)


def compare(measured: dict, simulated: dict) -> dict:
    """Largest discrepancies (same keys as TOLERANCES) over the joint kinds the detector reports (left
    and right pooled, the face's five points pooled: a few hundred correlated frames leave single
    joints too noisy to compare)."""
    seen = np.array(measured["missed_rate"]) <= 0.99
    groups = _joint_groups([n for n, ok in zip(measured["joints"], seen) if ok])
    arr = lambda s, key: np.tensordot(groups, np.array(s[key], dtype=float)[seen], axes=1)
    conf = lambda s: np.nan_to_num(arr(s, "mean_confidence"))
    return dict(
        sigma_rel=float(np.max(np.abs(arr(simulated, "sigma") / arr(measured, "sigma") - 1))),
        bias_abs=float(np.max(np.abs(arr(simulated, "bias") - arr(measured, "bias")))),
        missed_abs=float(np.max(np.abs(arr(simulated, "missed_rate") - arr(measured, "missed_rate")))),
        gross_abs=float(np.max(np.abs(arr(simulated, "gross_rate") - arr(measured, "gross_rate")))),
        swap_abs=float(np.max(np.abs(np.array(simulated["swap_rate"]) - np.array(measured["swap_rate"])))),
        lag1_abs=abs(simulated["lag1_correlation"] - measured["lag1_correlation"]),
        confidence_abs=float(np.max(np.abs(conf(simulated) - conf(measured)))),
    )


def within_tolerance(discrepancy: dict) -> dict:
    """{key: bool} discrepancy <= TOLERANCES[key]."""
    return {k: bool(v <= TOLERANCES[k]) for k, v in discrepancy.items()}


def stats_main(args) -> int:
    folder = Path(args.folder)
    fit_part, held_part = load_chunks(folder, 0), load_chunks(folder, 1)
    measured_fit = detector_statistics(fit_part["uv"], fit_part["depth"], fit_part["detected"], fit_part["image_size"])
    measured_held = detector_statistics(held_part["uv"], held_part["depth"], held_part["detected"],
                                        held_part["image_size"])
    level = fit_noise_level(measured_fit)
    comparisons = {name: compare(measured_held, simulated_statistics(held_part, lv))
                   for name, lv in (("blazepose", level), ("low", "low"), ("medium", "medium"), ("high", "high"))}
    seconds = np.concatenate([load_chunks(folder)["seconds"].reshape(-1, 3)]).sum(0)
    frames = measured_fit["frames"] + measured_held["frames"]
    command = json.loads((folder / "command.json").read_text()) if (folder / "command.json").is_file() else {}
    preset = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(level).items()}
    report = dict(
        command="python -m lab calibrate-detector " + " ".join(sys.argv[2:]), render=command,
        seconds_per_frame=dict(fit=seconds[0] / frames, render=seconds[1] / frames, detect=seconds[2] / frames),
        preset=preset, tolerances=TOLERANCES, fit_part=measured_fit, heldout_part=measured_held,
        heldout_discrepancy=comparisons,
        # Sampling noise: how far the two real halves are from each other (what TOLERANCES must allow).
        halves_discrepancy=compare(measured_held, measured_fit),
        heldout_within_tolerance={k: within_tolerance(v) for k, v in comparisons.items()})
    Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    np.savez_compressed(args.heldout, **{k: held_part[k] for k in ("uv", "depth", "image_size")})
    print(json.dumps(dict(preset=preset, heldout_within_tolerance=report["heldout_within_tolerance"],
                          heldout_discrepancy=comparisons), indent=1, default=float))
    return 0


# -- the models on real detections -------------------------------------------------------------------
def truth_joints(bm, chunk: dict) -> np.ndarray:
    """(E,L,24,3) true joints in each excerpt's camera frame (metres)."""
    from backend.body.body_model import pose_to_rotmats

    e, length = chunk["global_orient"].shape[:2]
    t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(e * length, -1)
    with torch.no_grad():
        j = bm.joints_fast(pose_to_rotmats(t(chunk["global_orient"]), t(chunk["body_pose"])),
                           t(np.repeat(chunk["betas"], length, 0)), t(chunk["transl"])).joints.numpy()
    j = j.reshape(e, length, 24, 3)
    return np.einsum("eij,elkj->elki", chunk["cam_R"], j) + chunk["cam_t"][:, None, None]


def excerpt_obs(chunk: dict, i: int, mode: str) -> dict:
    """Excerpt i's BlazePose COCO-17 detections as a validated OBS (principal point at the centre, 24 fps)."""
    from backend.contract.observations import validate_observations

    size = chunk["image_size"][i].astype(np.float64)
    return validate_observations(dict(keypoints=chunk["detected"][i, :, :17].astype(np.float64), image_size=size,
                                      focal_length=np.float64(chunk["focal_length"][i]), principal_point=size / 2,
                                      fps=np.float64(24.0)), mode)


def evaluate_engine(engine, folder: Path, modes_: tuple[str, ...] = ("frame", "video"),
                    limit: int | None = None) -> dict:
    """MPJPE / PA-MPJPE (mm, 24 joints, pelvis-aligned) on the detections of ``folder``'s chunks: the
    regressor's start on every usable excerpt ("start"), and the start and each engine mode (default
    EngineOptions) on the first ``limit`` of them ("start_subset", modes).  Excerpts with a frame where
    BlazePose found no one are left out (the start of such a frame means nothing)."""
    from backend.body.body_model import BodyModel
    from backend.metrics import mpjpe, pa_mpjpe

    data = load_chunks(folder)
    gt = truth_joints(BodyModel.load(None, dtype=torch.float64), data)
    keep = [i for i in range(len(gt)) if (data["detected"][i, :, :17, 2] > 0).any(-1).all()]
    score = lambda pred, truth: (mpjpe(pred, truth).mean(), pa_mpjpe(pred, truth).mean())
    errors = {name: [] for name in ("start", "start_subset") + modes_}
    t0 = time.time()
    for i in keep:
        obs = excerpt_obs(data, i, "frame")
        kp = engine.as_tensor(obs["keypoints"][0])
        f = kp.shape[0]
        est = engine.initial(kp, engine.as_tensor(obs["focal_length"]).expand(f),
                             engine.as_tensor(obs["principal_point"]).expand(f, 2))
        start = engine.body.joints_fast(est["rotmats"], est["betas"], est["transl"]).joints.cpu().numpy()
        errors["start"].append(score(start, gt[i]))
    for i in keep[:limit]:
        for mode in modes_:
            out = engine.run(excerpt_obs(data, i, mode), mode=mode)
            if mode == modes_[0]:
                errors["start_subset"].append(score(out["init_joints"], gt[i]))
            errors[mode].append(score(out["joints"], gt[i]))
    result = {name: dict(mpjpe=float(np.mean([e[0] for e in v])), pa_mpjpe=float(np.mean([e[1] for e in v])),
                         excerpts=len(v)) for name, v in errors.items() if v}
    return dict(result, excerpts_total=int(len(gt)), excerpts_usable=len(keep), frames_per_excerpt=int(gt.shape[1]),
                seconds=round(time.time() - t0, 1))


VAL_FOLDER = ROOT / "cache" / "calibration" / "val"
# Committed detections of a render of validation-subject motion (10 excerpts x 64 frames, seed 5; the chunk
# files `render` wrote, no images): the benchmark's real-detection rows when nothing was rendered here.
COMMITTED_FOLDER = ROOT / "docs" / "benchmark" / "detections_val64"


def detections_folder() -> Path:
    """The rendered validation detections: this machine's render if there is one, else the committed one."""
    return VAL_FOLDER if any(VAL_FOLDER.glob("chunk_*.npz")) else COMMITTED_FOLDER


def detector_accuracy(folder: Path) -> dict:
    """BlazePose against the projected truth on ``folder``'s chunks: 2D error (px) of the COCO-17 points it
    reports (confidence > 0) as mean / median / p95, the share of frames with the person found, and the
    detection wall time per frame measured when rendering (a shared CPU: not a speed figure)."""
    data = load_chunks(Path(folder))
    kp, uv = data["detected"][:, :, :17], data["uv"][:, :, :17]
    seen = kp[..., 2] > 0
    err = np.linalg.norm(kp[..., :2] - uv, axis=-1)[seen]
    frames = kp.shape[0] * kp.shape[1]
    seconds = np.atleast_2d(data["seconds"])[:, 2].sum()
    return dict(points=int(seen.sum()), mean_px=round(float(err.mean()), 2), median_px=round(float(np.median(err)), 2),
                p95_px=round(float(np.percentile(err, 95)), 2), found=round(float(seen.any(-1).mean()), 4),
                frames=int(frames), detect_s_per_frame=round(float(seconds / frames), 3))


def bench_rows(engine, folder: Path | None = None, limit: int | None = 20) -> list[dict]:
    """Benchmark rows (method, excerpts, frames, PA-MPJPE / MPJPE 24 in mm) of ``evaluate_engine`` on
    the validation-subject detections (``detections_folder()`` by default); [] when there are none."""
    folder = Path(folder or detections_folder())
    if not any(folder.glob("chunk_*.npz")):
        return []
    result = evaluate_engine(engine, folder, ("frame", "video"), limit)
    return [dict(method=name, excerpts=result[name]["excerpts"],
                 frames=result[name]["excerpts"] * result["frames_per_excerpt"],
                 pa_mpjpe24=result[name]["pa_mpjpe"], mpjpe24=result[name]["mpjpe"])
            for name in ("start", "start_subset", "frame", "video")]


def load_engine(regressor_path: Path | None = None, prior_path: Path | None = None):
    """The engine with the committed weights, or with another regressor and/or prior."""
    from backend.body.body_model import BodyModel
    from backend.engine.api import Engine
    from backend.models.checkpoints import load_prior, load_regressor

    if regressor_path is None and prior_path is None:
        return Engine.load(device="cpu")
    reg, _ = load_regressor(*([regressor_path] if regressor_path else []))
    prior, mean, std, _ = load_prior(*([prior_path] if prior_path else []))
    return Engine(BodyModel.load(), reg, prior, mean, std, "cpu")


def evaluate_main(args) -> int:
    engine = load_engine(Path(args.regressor) if args.regressor else None, Path(args.prior) if args.prior else None)
    result = evaluate_engine(engine, Path(args.folder), tuple(args.modes), args.limit)
    result["regressor"] = args.regressor or "backend/assets/regressor.pt"
    result["prior"] = args.prior or "backend/assets/prior.pt"
    result["command"] = "python -m lab calibrate-detector " + " ".join(sys.argv[2:])
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab calibrate-detector", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("render", help="render, detect and store chunks of frames (resumable)")
    r.add_argument("--split", choices=("train", "val"), default="train")
    r.add_argument("--excerpts", type=int, default=200)
    r.add_argument("--length", type=int, default=8, help="consecutive 24 fps frames per excerpt")
    r.add_argument("--chunk", type=int, default=8, help="excerpts per Blender process")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--subjects", choices=("tuning", "report"),
                   help="validation subjects of one part only (lab.bench.SUBJECT_PARTS)")
    r.add_argument("--out", default=str(ROOT / "cache" / "calibration" / "train"))
    r.add_argument("--max-chunks", type=int, help="render at most this many chunks now (resume later)")
    s = sub.add_parser("stats", help="statistics, fitted preset and held-out check -> json")
    s.add_argument("folder")
    s.add_argument("--json", default=str(ROOT / "docs" / "detector_calibration.json"))
    s.add_argument("--heldout", default=str(ROOT / "docs" / "detector_calibration_heldout.npz"))
    v = sub.add_parser("evaluate", help="the models' accuracy on the rendered frames' BlazePose detections")
    v.add_argument("folder")
    v.add_argument("--regressor", help="regressor checkpoint (default: the committed one)")
    v.add_argument("--prior", help="prior checkpoint (default: the committed one)")
    v.add_argument("--modes", nargs="+", default=["frame", "video"], choices=["frame", "video"])
    v.add_argument("--limit", type=int, help="first N usable excerpts only")
    v.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    return dict(render=render_main, stats=stats_main, evaluate=evaluate_main)[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
