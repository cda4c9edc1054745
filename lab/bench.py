"""Benchmark of ScoreHMR against the baselines on held-out motion with simulated detections.

    python -m lab bench [--frames N] [--videos N] [--instants N] [--quick] [--threads 1] [--out docs/benchmark]

Validation subjects of the converted CMU data (``load_split('val')``), random body shapes
(betas ~ N(0, I), as in training), random cameras and detector noise from ``lab.sim`` with
fixed seeds.  Tables shaped like the paper's:

* Table 2 (single frame): for three starts (our regressor; a weak regressor = ours + ~12 deg
  per-joint rotation and translation noise; near-perfect = ground truth + 3 deg), the rows
  start / +SMPLify / +DPoser-style / +ScoreHMR (paper: the loop) / +ScoreHMR (ours: backend.engine.frame_fit).
* Table 4 (video): start / start+filter / per-frame ScoreHMR + filter / temporal SMPLify /
  ScoreHMR paper / ScoreHMR ours / ScoreHMR (motion prior: --motion-prior, default the shipped
  backend/assets/motion_prior.pt, docs/motion_prior.md), with acceleration errors.
* Unknown focal length (``focal``): single frames (regressor start) and video clips seen by cameras whose
  field of view across the long side is drawn uniformly in 40-75 deg (``sample_cameras(fov_deg_range=...)``),
  the engine told the true focal length ('known') or the CLI's default (55 deg, 'unknown') on the same
  keypoints; with the root depth error (%), which a wrong focal length moves.
* Table 3 (multi-view, 2/4/8 views): calibrated (triangulate + fit, ScoreHMR calibrated) and
  uncalibrated (per-view start vs ScoreHMR Eq. 13 (paper) and Eq. 13 guidance without the prior (ours)).
* Off-centre (``off_centre``): single frames with the person anywhere in the frame, partly outside,
  1.5-10 m away (``sample_cameras(off_centre=True)``), and the same frames centred for reference:
  our regressor's start and ScoreHMR frame mode with the naive regressor (box-normalised keypoints)
  and with its virtual camera (``backend.models.regressor.virtual_view``); global-orientation error.
* Speed: frames/s per method and device, denoiser evaluations per frame, peak memory, and
  where the time goes in video mode.

Errors in mm: MPJPE / PA-MPJPE on 14 LSP and 24 SMPL joints (``backend.metrics.joint_errors``);
acceleration error in mm/frame^2 on pelvis-relative joints (the paper's protocol) and on
camera-frame joints ("abs": translation jitter included).  Writes ``benchmark.md`` and
``benchmark.json`` into ``--out``.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from backend.contract.observations import DEFAULT_FOV_DEG
from backend.engine import baselines as bl
from backend.engine import problems
from backend.engine.frame_fit import REGRESSOR_SOURCE
from backend.engine.modes import calibrated as calibrated_mode, frame, multiview
from backend.engine.gmm import GMM, GMM_PATH, MaxMixturePrior
from backend.engine.views import triangulate
from backend.models.motion import MOTION_PRIOR_PATH
from backend.rotations import axis_angle_to_matrix
from lab import bench_video
from lab.bench_common import (
    FOCAL_SETTINGS,
    FPS,
    SUBJECT_PARTS,
    errors,
    joints_of,
    root_depth_errors,
    select_subjects,
    table,
    told_focal,
    video_errors,
)
from lab.sim import calibrate
from lab.sim.cameras import FOV_DEG_RANGE, fov_deg
from lab.sim.landmarks import LANDMARK_CHOICES, landmark_body
from lab.sim.observations import multiview_observations, single_view_observations, video_observations

DEFAULT_OUT = Path("docs/benchmark")
# Starts of the single-frame table.
WEAK_ROT_DEG = 12.0                   # RMS per-joint rotation noise added to our regressor's estimate
WEAK_TRANSL_M = (0.03, 0.03, 0.15)    # translation noise std (x, y, depth)
NEAR_ROT_DEG = 3.0                    # RMS per-joint rotation noise added to the ground truth
NEAR_TRANSL_M = (0.01, 0.01, 0.01)
STARTS = ("regressor", "weak", "near-perfect")
# Seeds of the sections (added to --seed) so that each section's data does not depend on the others' sizes.
SECTIONS = ("single_frame", "video", "focal", "multiview", "long_clip", "animator", "detector", "off_centre")
LONG_CLIP_FPS = 30
SEED_FRAME, SEED_VIDEO, SEED_MULTIVIEW, SEED_NOISE, SEED_DPOSER, SEED_OFF_CENTRE = 101, 202, 303, 404, 505, 606
SEED_FOCAL = 707
PLACEMENTS = dict(centred=None, **{"off-centre": dict(off_centre=True)})   # off_centre section: camera_kwargs


@dataclass
class BenchConfig:
    frames: int = 256                  # single-frame table
    videos: int = 5                    # video table: clips of ...
    video_length: int = 96             # ... frames (4 s at 24 fps)
    instants: int = 32                 # multi-view table: instants per view count
    views: tuple[int, ...] = (2, 4, 8)
    sections: tuple[str, ...] = SECTIONS   # a subset is for development; the committed report has all
    long_minutes: float = 10.0             # long-clip memory check: minutes at 30 fps
    level: str = "medium"              # detector noise preset (lab.sim.detector_noise.PRESETS)
    subjects: str = "report"           # a part of SUBJECT_PARTS or 'all' validation subjects
    seed: int = 0
    quick: bool = False
    # Smoke runs only (--quick): fewer ScoreHMR outer iterations / fitting steps; None = the methods' defaults.
    scorehmr_iterations: int | None = None
    fit_steps: int | None = None
    # The video table's (and animator section's) "ScoreHMR (motion prior)" row: a motion prior checkpoint
    # (backend.models.motion), None for no such row.
    motion_prior: str | None = None


QUICK = dict(frames=6, videos=1, video_length=24, instants=2, views=(2, 4), scorehmr_iterations=2, fit_steps=15,
             long_minutes=0.2)


# -- measurement -----------------------------------------------------------------------------------
def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the process' peak RSS (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Wall time and peak memory of a block: torch.cuda.max_memory_allocated on GPU; on CPU the
    process' peak RSS (VmHWM, reset at entry where Linux allows, else ru_maxrss over the run)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.reset = _reset_peak_rss()
        self.rss0 = (_status_kb("VmRSS") or 0) / 1024
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.memory = "cuda max_memory_allocated"
        else:
            hwm = _status_kb("VmHWM") if self.reset else None
            self.peak_mb = (hwm / 1024) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.memory = "peak RSS" if hwm else "ru_maxrss (process lifetime)"
        self.seconds = time.perf_counter() - self.t0
        return False


class _Timed:
    """Callable wrapper accumulating the wall time of its calls (synchronising CUDA)."""

    def __init__(self, fn, device: torch.device):
        self.fn, self.device, self.seconds, self.calls = fn, device, 0.0, 0

    def __call__(self, *args, **kwargs):
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        if sync:
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


@contextlib.contextmanager
def profile_video(engine):
    """Times the pieces of the ScoreHMR loop in video mode by wrapping, for the duration of the block:
    the denoiser (engine.prior), the body model (engine.body.joints_fast), the guidance loss
    (problems.video_loss's closures, body model included) and the backward pass (torch.autograd.grad,
    the loop's only one).  Nothing is changed outside the block.  Yields a dict of _Timed."""
    dev = engine.device
    timers = dict(denoiser=_Timed(engine.prior, dev), body=_Timed(engine.body.joints_fast, dev),
                  backward=_Timed(torch.autograd.grad, dev))
    loss_timers = []
    make_loss = problems.video_loss

    def timed_video_loss(*args, **kwargs):
        loss_timers.append(_Timed(make_loss(*args, **kwargs), dev))
        return loss_timers[-1]

    prior, grad = engine.prior, torch.autograd.grad
    engine.prior = timers["denoiser"]
    engine.body.joints_fast = timers["body"]
    problems.video_loss = timed_video_loss
    torch.autograd.grad = timers["backward"]
    try:
        yield dict(timers, loss=loss_timers)
    finally:
        engine.prior, torch.autograd.grad, problems.video_loss = prior, grad, make_loss
        del engine.body.joints_fast


def frame_observations(sim_body, data: dict, frames: int, seed: int, level: str = "medium",
                       camera_kwargs: dict | None = None) -> dict:
    """Simulated single-view observations of min(frames, N) random frames of ``data`` (a load_split dict),
    random body shapes and cameras; the same seed gives the same frames, bodies, cameras and noise."""
    rng = np.random.default_rng(seed)
    n = min(frames, len(data["global_orient"]))
    idx = np.sort(rng.choice(len(data["global_orient"]), n, replace=False))
    params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                  betas=rng.standard_normal((n, 10)), transl=np.zeros((n, 3), np.float32))
    return single_view_observations(sim_body, params, torch.Generator().manual_seed(seed), level,
                                    camera_kwargs=camera_kwargs)


def load_validation(subjects: str = "report", dataset=None) -> dict:
    """The validation split (load_split('val')), cut to a part of SUBJECT_PARTS unless ``subjects`` is 'all'."""
    from lab.data.dataset import load_split

    data = load_split("val", dataset)
    return data if subjects == "all" else select_subjects(data, SUBJECT_PARTS[subjects])


# -- starts, results and errors --------------------------------------------------------------------
def _rot_noise(shape, deg: float, g: torch.Generator) -> torch.Tensor:
    """Random rotations (shape,3,3) with RMS angle ``deg`` (isotropic axis-angle noise)."""
    aa = torch.randn(*shape, 3, generator=g, dtype=torch.float64) * math.radians(deg) / math.sqrt(3)
    return axis_angle_to_matrix(aa).float()


def perturbed(start: dict, deg: float, transl_std, g: torch.Generator) -> dict:
    """start with every joint rotation turned by noise of RMS ``deg`` and translation noise (std per axis)."""
    b = start["rotmats"].shape[0]
    dev = start["rotmats"].device
    noise_t = torch.randn(b, 3, generator=g, dtype=torch.float64).float() * torch.tensor(transl_std)
    return dict(rotmats=_rot_noise((b, 24), deg, g).to(dev) @ start["rotmats"], betas=start["betas"].clone(),
                transl=start["transl"] + noise_t.to(dev))


def ground_truth(obs: dict, dev) -> dict:
    from backend.body.body_model import pose_to_rotmats

    go, bp = obs["gt_global_orient"], obs["gt_body_pose"]
    n = go.reshape(-1, 3).shape[0]
    return dict(rotmats=pose_to_rotmats(go.reshape(n, 3), bp.reshape(n, 69)).float().to(dev),
                betas=obs["gt_betas"].reshape(n, 10).float().to(dev),
                transl=obs["gt_transl"].reshape(n, 3).float().to(dev))


def orientation_error_deg(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Angles (N,) in degrees between predicted and true global orientations, rotmats (N,3,3)."""
    cos = ((pred.transpose(1, 2) @ gt).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


@contextlib.contextmanager
def virtual_camera(engine, on: bool):
    """The engine's regressor with (on) or without its virtual camera for the duration of the block."""
    before = engine.virtual_camera
    engine.virtual_camera = on
    try:
        yield
    finally:
        engine.virtual_camera = before


# -- the benchmark -------------------------------------------------------------------------------
@dataclass
class Bench:
    engine: object
    data: dict
    prior: MaxMixturePrior
    cfg: BenchConfig
    sim_body: object = None
    speed: list = field(default_factory=list)
    breakdown: list = field(default_factory=list)

    def __post_init__(self):
        self.dev = self.engine.device
        # The simulator draws on the CPU.
        self.sim_body = self.sim_body or (self.engine.body if self.dev.type == "cpu"
                                          else copy.deepcopy(self.engine.body).cpu())
        self.prior = self.prior.to(self.dev)
        self.smplify_opts = bl.SmplifyOptions()
        self.dposer_opts = bl.DPoserOptions()
        self.fit3d_opts = bl.Fit3DOptions()
        if self.cfg.fit_steps:
            s = self.cfg.fit_steps
            self.smplify_opts = replace(self.smplify_opts, steps=s, camera_steps=max(1, s // 3))
            self.dposer_opts = replace(self.dposer_opts, steps=s)
            self.fit3d_opts = replace(self.fit3d_opts, steps=s, camera_steps=max(1, s // 3))

    def options(self, mode: str, variant: str = "ours", motion: bool = False):
        """EngineOptions for a mode (with the smoke-run override) and its resolved loop and weights;
        ``motion``: with the config's motion prior."""
        from backend.engine.api import EngineOptions

        opts = EngineOptions(variant=variant, motion_prior=self.cfg.motion_prior if motion else None)
        loop, w = opts.resolved(mode)
        if self.cfg.scorehmr_iterations:
            opts.loop = loop = replace(loop, iterations=min(loop.iterations, self.cfg.scorehmr_iterations))
        return opts, loop, w

    def measure(self, mode: str, method: str, frames: int, fn, views: int = 1, evaluations=None,
                record: bool = True):
        """Runs fn() under a Meter and (if ``record``) adds a speed row; returns fn's result and seconds."""
        with Meter(self.dev) as m:
            out = fn()
        evals = evaluations(out) if evaluations else 0
        if record:
            self.speed.append(dict(
                mode=mode, method=method, device=str(self.dev), frames=frames, views=views,
                seconds=round(m.seconds, 3), frames_per_s=round(frames / max(m.seconds, 1e-9), 2),
                denoiser_evals_per_frame=round(evals / frames, 1), peak_mb=round(m.peak_mb, 1), memory=m.memory))
        return out, m.seconds

    def _t(self, x):
        return x.to(self.dev, torch.float32)

    def _params(self, idx: np.ndarray, betas: np.ndarray, transl: bool) -> dict:
        d = self.data
        return dict(global_orient=d["global_orient"][idx], body_pose=d["body_pose"][idx], betas=betas,
                    transl=d["transl"][idx] if transl else np.zeros(idx.shape + (3,), np.float32))

    # -- Table 2 ------------------------------------------------------------------------------
    def single_frame(self) -> list[dict]:
        cfg = self.cfg
        obs = frame_observations(self.sim_body, self.data, cfg.frames, cfg.seed + SEED_FRAME, cfg.level)
        return self._frame_rows(obs, STARTS, record=True)

    def _frame_rows(self, obs: dict, start_names: tuple[str, ...], record: bool) -> list[dict]:
        """Rows of the single-frame table on simulated frames ``obs`` (the engine told obs' focal lengths) for
        the starts named (of STARTS); speed rows of the regressor start's methods when ``record``."""
        cfg, e = self.cfg, self.engine
        n = obs["keypoints"].shape[0]
        kp, focal, pp, size = (self._t(obs[k]) for k in ("keypoints", "focal_length", "principal_point", "image_size"))
        gt = obs["gt_joints"].double().numpy()
        g = torch.Generator().manual_seed(cfg.seed + SEED_NOISE)
        reg = e.initial(kp, focal, pp)
        # The engine's own start (Engine.run without an init): variant 'ours' treats it as such (frame_fit).
        reg = dict(rotmats=reg["rotmats"], betas=reg["betas"], transl=reg["transl"], source=REGRESSOR_SOURCE)
        starts = dict(regressor=reg, weak=perturbed(reg, WEAK_ROT_DEG, WEAK_TRANSL_M, g),
                      **{"near-perfect": perturbed(ground_truth(obs, self.dev), NEAR_ROT_DEG, NEAR_TRANSL_M, g)})
        ctx = e.context(kp, focal, pp)
        opts, loop, w = self.options("frame")
        fit = opts.resolved_frame_fit()     # variant 'ours'; the paper's row is the loop for every frame
        if cfg.fit_steps:
            fit = replace(fit, fit=replace(fit.fit, steps=cfg.fit_steps))
        o = problems.Observations(kp, focal, pp, size)
        ours = replace(opts.for_mode("frame"), loop=loop, weights=w, frame_fit=fit)
        paper = replace(ours, frame_fit=None)
        rows = []
        for name in start_names:
            start = starts[name]
            record_start = record and name == "regressor"  # speed rows once, from the realistic start
            methods = {
                "start": (lambda s=start: s, None),
                "+SMPLify": (lambda s=start: bl.smplify(e.body, self.prior, o, s, self.smplify_opts), None),
                "+DPoser-style": (lambda s=start: bl.dposer_style(
                    e.body, e.prior, e.alphas, o, ctx, s, self.dposer_opts,
                    generator=torch.Generator().manual_seed(cfg.seed + SEED_DPOSER)),
                    lambda r: r["denoiser_evaluations"]),
                "+ScoreHMR (paper)": (lambda s=start: frame.refine(e, o, dict(s, context=ctx), paper),
                                      lambda r: r["evaluations"]),
                "+ScoreHMR (ours)": (lambda s=start: frame.refine(e, o, dict(s, context=ctx), ours),
                                     lambda r: r["evaluations"]),
            }
            for method, (fn, evals) in methods.items():
                res, sec = self.measure("frame", method.lstrip("+"), n, fn, evaluations=evals,
                                        record=record_start and method != "start")
                pred = joints_of(e, res)
                rows.append(dict(start=name, method=method, frames=n, **errors(pred, gt),
                                 **root_depth_errors(pred, gt), s_per_frame=round(sec / n, 4)))
        return rows

    # -- Table 4 ------------------------------------------------------------------------------
    def video(self) -> list[dict]:
        obs = self._clips(self.cfg.seed + SEED_VIDEO)
        return self._video_rows(obs, record=True) if obs else []

    def _clips(self, seed: int, camera_kwargs: dict | None = None) -> dict | None:
        """Simulated video observations (B,F,...) of cfg.videos random validation windows of cfg.video_length
        frames (None when no clip is that long); the same seed gives the same windows, bodies, cameras, noise."""
        from lab.data.dataset import window_starts

        cfg = self.cfg
        rng = np.random.default_rng(seed)
        all_starts = window_starts(self.data, cfg.video_length, cfg.video_length)
        if len(all_starts) == 0:
            return None
        chosen = np.sort(rng.choice(all_starts, min(cfg.videos, len(all_starts)), replace=False))
        idx = chosen[:, None] + np.arange(cfg.video_length)[None]
        return video_observations(self.sim_body, self._params(idx, rng.standard_normal((len(chosen), 10)), True),
                                  torch.Generator().manual_seed(seed), cfg.level, fps=FPS, camera_kwargs=camera_kwargs)

    def _video_rows(self, obs: dict, record: bool) -> list[dict]:
        """Rows of the video table on simulated clips ``obs`` (the engine told obs' focal lengths); with
        ``record`` also the speed rows and the first clip's time breakdown."""
        e = self.engine
        gt = obs["gt_joints"].double().numpy()
        clips, f = obs["keypoints"].shape[:2]
        preds: dict[str, list] = {}
        times: dict[str, float] = {}
        for i in range(clips):
            _, methods = bench_video.clip_methods(self, obs, i)
            for method, (fn, evals) in methods.items():
                # The first clip's ScoreHMR (ours) run is also timed piece by piece (the wrappers cost ~nothing).
                profiled = record and i == 0 and method == "ScoreHMR (ours)"
                profile = profile_video(e) if profiled else contextlib.nullcontext()
                with profile as timers:
                    res, sec = self.measure("video", method, f, fn, evaluations=evals,
                                            record=record and method != "start")
                if timers:
                    self.breakdown = self._breakdown(timers, sec, f)
                preds.setdefault(method, []).append(joints_of(e, res))
                times[method] = times.get(method, 0.0) + sec
        if record:
            self._merge_speed("video")
        n_frames = f * clips
        return [dict(method=m, videos=clips, frames=f, **video_errors(np.stack(p), gt),
                     **root_depth_errors(np.stack(p), gt),
                     s_per_frame=round(times[m] / n_frames, 4) if m != "start" else 0.0) for m, p in preds.items()]

    # -- unknown focal length ---------------------------------------------------------------------
    def focal(self) -> dict:
        """Single frames (regressor start) and video clips seen by cameras whose field of view is drawn uniformly
        in FOV_DEG_RANGE (seeded, per frame / clip), the engine told the true focal length ('known') or, as the
        CLI when the user gives none, the default ('unknown'): the same keypoints in both settings.  Rows of
        the single-frame and video tables with 'focal' and the root depth error; the draw's field of view."""
        cfg = self.cfg
        cameras = dict(fov_deg_range=FOV_DEG_RANGE)
        frames = frame_observations(self.sim_body, self.data, cfg.frames, cfg.seed + SEED_FOCAL, cfg.level, cameras)
        clips = self._clips(cfg.seed + SEED_FOCAL, cameras)
        fov = torch.cat([fov_deg(o["focal_length"].double(), o["image_size"].double())
                         for o in (frames, clips) if o is not None])
        return dict(
            single_frame=[dict(r, focal=s) for s in FOCAL_SETTINGS
                          for r in self._frame_rows(told_focal(frames, s), ("regressor",), record=False)],
            video=[dict(r, focal=s) for s in FOCAL_SETTINGS
                   for r in (self._video_rows(told_focal(clips, s), record=False) if clips else [])],
            fov_deg=dict(min=round(float(fov.min()), 1), mean=round(float(fov.mean()), 1),
                         max=round(float(fov.max()), 1), told=DEFAULT_FOV_DEG))

    def _merge_speed(self, mode: str) -> None:
        """One speed row per method of a mode (sums over the per-sequence calls)."""
        keep = [r for r in self.speed if r["mode"] != mode]
        merged: dict[str, dict] = {}
        for r in (r for r in self.speed if r["mode"] == mode):
            m = merged.get(r["method"])
            if m is None:
                merged[r["method"]] = dict(r, evals=r["denoiser_evals_per_frame"] * r["frames"])
                continue
            m["frames"] += r["frames"]
            m["seconds"] = round(m["seconds"] + r["seconds"], 3)
            m["evals"] += r["denoiser_evals_per_frame"] * r["frames"]
            m["peak_mb"] = max(m["peak_mb"], r["peak_mb"])
        for m in merged.values():
            m["frames_per_s"] = round(m["frames"] / max(m["seconds"], 1e-9), 2)
            m["denoiser_evals_per_frame"] = round(m.pop("evals") / m["frames"], 1)
        self.speed = keep + list(merged.values())

    def _breakdown(self, timers: dict, total: float, frames: int) -> list[dict]:
        """Rows of 'where the time goes' from profile_video's timers and the run's wall time."""
        body = timers["body"].seconds
        loss = sum(t.seconds for t in timers["loss"])
        parts = [("denoiser (forward)", timers["denoiser"].seconds, timers["denoiser"].calls),
                 ("body model (joints_fast, forward)", body, timers["body"].calls),
                 ("guidance terms (loss minus body model)", max(loss - body, 0.0),
                  sum(t.calls for t in timers["loss"])),
                 ("backward (autograd.grad)", timers["backward"].seconds, timers["backward"].calls)]
        parts.append(("other: DDIM/Adam updates, windowing, the final fit's L-BFGS (backend.engine.polish), Python "
                      "overhead", total - sum(p[1] for p in parts), 0))
        return [dict(part=p, seconds=round(s, 3), share=round(s / total, 3), calls=c, frames=frames)
                for p, s, c in parts]

    # -- Table 3 ------------------------------------------------------------------------------
    def multiview(self) -> list[dict]:
        cfg, e = self.cfg, self.engine
        rows = []
        for views in cfg.views:
            rng = np.random.default_rng(cfg.seed + SEED_MULTIVIEW + views)
            n = min(cfg.instants, len(self.data["global_orient"]))
            idx = np.sort(rng.choice(len(self.data["global_orient"]), n, replace=False))
            obs = multiview_observations(self.sim_body, self._params(idx, rng.standard_normal((n, 10)), False),
                                         torch.Generator().manual_seed(cfg.seed + SEED_MULTIVIEW + views), views,
                                         cfg.level, calibrated=True)
            kp, focal, pp, size = (self._t(obs[k]) for k in ("keypoints", "focal_length", "principal_point",
                                                             "image_size"))          # (B,V,...)
            R, t = obs["cam_R"], obs["cam_t"]
            gt = obs["gt_joints"].double().numpy()                                   # (B,V,24,3)
            vm = lambda x: x.transpose(0, 1)                                         # (B,V,...) -> (V,B,...)
            flat_vm = lambda x: vm(x).reshape(views * n, *x.shape[2:])
            reg = e.initial(flat_vm(kp), flat_vm(focal), flat_vm(pp))                # view-major (V*B)
            start_all = dict(rotmats=reg["rotmats"], betas=reg["betas"], transl=reg["transl"])
            start0 = {k: v[:n] for k, v in start_all.items()}                        # view 0
            ctx = e.context(flat_vm(kp), flat_vm(focal), flat_vm(pp))
            gt_vm = np.swapaxes(gt, 0, 1).reshape(views * n, 24, 3)
            opts, loop, w = self.options("multiview")
            opts_paper, loop_paper, w_paper = self.options("multiview", "paper")
            opts_cal, loop_cal, w_cal = self.options("calibrated")
            ours = replace(opts.for_mode("multiview"), loop=loop, weights=w)
            paper = replace(opts_paper.for_mode("multiview"), loop=loop_paper, weights=w_paper)
            cal = replace(opts_cal.for_mode("calibrated"), loop=loop_cal, weights=w_cal)

            def tri_fit():
                pts, wts = triangulate(kp, focal, pp, R.float().to(self.dev), t.float().to(self.dev))
                R0, t0 = R[:, 0].float().to(self.dev), t[:, 0].float().to(self.dev)
                pts0 = torch.einsum("bij,bkj->bki", R0, pts) + t0[:, None]           # into view 0's camera
                return bl.fit_to_3d(e.body, self.prior, pts0, wts, start0, self.fit3d_opts)

            def per_instant(refine, cameras: bool) -> list[dict]:
                """The engine on one instant at a time (V,1,...): the instants are different people."""
                out = []
                for b in range(n):
                    s = {k: v.reshape(views, n, *v.shape[1:])[:, b] for k, v in start_all.items()}
                    c = ctx.reshape(views, n, -1)[:, b]
                    one = problems.Observations(kp[b][:, None], focal[b][:, None], pp[b][:, None], size[b][:, None],
                                             *((self._t(R[b]), self._t(t[b])) if cameras else ()))
                    out.append(refine(one, dict(s, context=c)))
                return out

            def joined(out: list[dict], every_view: bool) -> dict:
                """Per-instant results (V*1,...) -> view 0's (B,...) or every view's, view-major (V*B,...)."""
                pick = lambda x: x.reshape(views, -1, *x.shape[1:])[:, 0]                        # (V,...)
                cat = lambda k: (torch.stack([pick(o[k]) for o in out], 1).flatten(0, 1) if every_view
                                 else torch.stack([pick(o[k])[0] for o in out]))
                return dict(rotmats=cat("rotmats"), betas=cat("betas"), transl=cat("transl"),
                            evaluations=sum(o["evaluations"] for o in out))

            def calibrated():
                return joined(per_instant(lambda o, s: calibrated_mode.refine(e, o, s, cal), True), False)

            def uncalibrated():
                return joined(per_instant(lambda o, s: multiview.refine(e, o, s, ours), False), True)

            def uncalibrated_paper():
                return joined(per_instant(lambda o, s: multiview.refine(e, o, s, paper), False), True)

            evals = lambda r: r["evaluations"]
            cal_fit, s_fit = self.measure(f"multiview {views} views (calibrated)", "triangulate + fit", n, tri_fit,
                                          views)
            cal, s_cal = self.measure(f"multiview {views} views (calibrated)", "ScoreHMR calibrated", n, calibrated,
                                      views, evals)
            unc_paper, s_unc_paper = self.measure(f"multiview {views} views (uncalibrated)", "ScoreHMR Eq. 13 (paper)",
                                                  n, uncalibrated_paper, views, evals)
            unc, s_unc = self.measure(f"multiview {views} views (uncalibrated)", "Eq. 13 without prior (ours)", n,
                                      uncalibrated, views, evals)
            row = lambda setting, method, pred, truth, sec: dict(
                views=views, setting=setting, method=method, instants=n, **errors(pred, truth),
                s_per_instant=round(sec / n, 4))
            rows += [row("calibrated", "start (view 0)", joints_of(e, start0), gt[:, 0], 0.0),
                     row("calibrated", "triangulate + fit", joints_of(e, cal_fit), gt[:, 0], s_fit),
                     row("calibrated", "ScoreHMR calibrated", joints_of(e, cal), gt[:, 0], s_cal),
                     row("uncalibrated", "start (per view)", joints_of(e, start_all), gt_vm, 0.0),
                     row("uncalibrated", "ScoreHMR Eq. 13 (paper)", joints_of(e, unc_paper), gt_vm, s_unc_paper),
                     row("uncalibrated", "Eq. 13 without prior (ours)", joints_of(e, unc), gt_vm, s_unc)]
        return rows

    # -- off-centre people ----------------------------------------------------------------------
    def off_centre(self) -> list[dict]:
        """The same validation frames and bodies centred and placed anywhere in the frame (PLACEMENTS), from
        our regressor naive / with its virtual camera: the start and ScoreHMR frame mode (the start and the
        prior's context both from that regressor).  Rows with errors, global-orientation error (deg),
        the share of frames with keypoints outside the image and the mean off-axis angle of the box."""
        from backend.models.regressor import keypoint_box

        cfg, e = self.cfg, self.engine
        opts, loop, w = self.options("frame")
        paper = replace(opts.for_mode("frame"), loop=loop, weights=w, frame_fit=None)
        rows = []
        for placement, camera_kwargs in PLACEMENTS.items():
            obs = frame_observations(self.sim_body, self.data, cfg.frames, cfg.seed + SEED_OFF_CENTRE, cfg.level,
                                     camera_kwargs)
            kp, focal, pp, size = (self._t(obs[k]) for k in ("keypoints", "focal_length", "principal_point",
                                                             "image_size"))
            gt, n = obs["gt_joints"].double().numpy(), kp.shape[0]
            gt_orient = ground_truth(obs, self.dev)["rotmats"][:, 0]
            uv, wh = obs["gt_keypoints2d"], obs["image_size"][:, None]
            in_view = ~((uv < 0) | (uv > wh)).any(-1).any(-1).to(self.dev)     # (N,) every keypoint inside
            centre, _ = keypoint_box(kp)
            off_axis = torch.rad2deg(torch.atan(((centre - pp) / focal[:, None]).norm(dim=-1))).mean()
            for camera in ("naive", "virtual"):
                with virtual_camera(e, camera == "virtual"):
                    reg = e.initial(kp, focal, pp)
                    start = dict(rotmats=reg["rotmats"], betas=reg["betas"], transl=reg["transl"])
                    ctx = e.context(kp, focal, pp)
                refined, sec = self.measure("frame", "ScoreHMR", n, lambda: frame.refine(
                    e, problems.Observations(kp, focal, pp, size), dict(start, context=ctx), paper), record=False)
                for method, res in (("start", start), ("+ScoreHMR", refined)):
                    orient = orientation_error_deg(res["rotmats"][:, 0], gt_orient)
                    rows.append(dict(placement=placement, regressor=camera, method=method, frames=n,
                                     orient_deg=round(float(orient.mean()), 2),
                                     orient_in_view_deg=round(float(orient[in_view].mean()), 2),
                                     **errors(joints_of(e, res), gt),
                                     outside=round(1 - float(in_view.double().mean()), 3),
                                     off_axis_deg=round(float(off_axis), 1),
                                     s_per_frame=round(sec / n, 4) if method != "start" else 0.0))
        return rows

    # -- memory on a long clip ----------------------------------------------------------------
    def long_clip(self) -> list[dict]:
        """Peak memory of video mode on a cfg.long_minutes clip at 30 fps (windows bound it).

        The clip repeats one simulated validation clip; one outer iteration (memory does not grow
        with iterations: each reuses the same buffers), so the time column is not a speed figure."""
        from backend.engine.api import EngineOptions
        from backend.engine.scorehmr import LoopOptions

        rng = np.random.default_rng(self.cfg.seed + SEED_VIDEO)
        base = self.cfg.video_length
        idx = (rng.integers(0, len(self.data["global_orient"]) - base) + np.arange(base))[None]
        obs = video_observations(self.sim_body, self._params(idx, rng.standard_normal((1, 10)), True),
                                 torch.Generator().manual_seed(self.cfg.seed + SEED_VIDEO), self.cfg.level,
                                 fps=LONG_CLIP_FPS)
        frames = int(self.cfg.long_minutes * 60 * LONG_CLIP_FPS)
        reps = -(-frames // base)
        kp = np.concatenate([obs["keypoints"][0].numpy()] * reps)[:frames]
        clip = dict(keypoints=kp[None], image_size=obs["image_size"][:1].numpy(),
                    focal_length=obs["focal_length"][:1].numpy(), principal_point=obs["principal_point"][:1].numpy(),
                    fps=float(LONG_CLIP_FPS))
        opts = EngineOptions(loop=LoopOptions(iterations=1))
        with Meter(self.dev) as m:
            out = self.engine.run(clip, None, "video", opts)
        return [dict(frames=frames, minutes=round(frames / LONG_CLIP_FPS / 60, 2), fps=LONG_CLIP_FPS,
                     window=opts.window, overlap=opts.overlap, windows_per_batch=opts.windows_per_batch,
                     iterations=1, seconds=round(m.seconds, 1), peak_mb=round(m.peak_mb, 1), memory=m.memory,
                     rss_before_mb=round(m.rss0, 1), finite=bool(np.isfinite(out["joints"]).all()))]

    def detector(self) -> dict:
        """The built-in detector: speed on the example shot (one process; frames per CPU second is the
        one-core figure), its 2D error there and on the validation detections (calibrate.detections_folder),
        and the engine on those detections (calibrate.bench_rows)."""
        from backend.detect.footage import detect_footage
        from lab.detect.evaluate import EXAMPLE, error_statistics

        data, rep = detect_footage(EXAMPLE / "shot.mp4")
        with np.load(EXAMPLE / "ground_truth.npz") as z:
            truth = z["keypoints2d"][rep.first_frame:rep.first_frame + rep.frames]
        shot = dict(frames=rep.frames, size=f"{rep.footage.width}x{rep.footage.height}",
                    frames_per_second=round(rep.frames_per_second, 1),
                    frames_per_cpu_second=round(rep.frames / rep.cpu_seconds, 1),
                    mean_px=round(float(error_statistics(data["keypoints"], truth)["mean_error_px"]), 2))
        folder = calibrate.detections_folder()
        rendered = calibrate.detector_accuracy(folder) if any(folder.glob("chunk_*.npz")) else {}
        return dict(example=shot,
                    rendered=dict(rendered, folder=str(folder.relative_to(calibrate.ROOT))) if rendered else {},
                    engine=calibrate.bench_rows(self.engine, folder, limit=2 if self.cfg.quick else 20))

    def run(self, progress=print) -> dict:
        t0 = time.perf_counter()
        report = dict(config=asdict(self.cfg), environment=environment(self.dev), models=self.engine.meta)
        for name, fn in (("single_frame", self.single_frame), ("video", self.video), ("focal", self.focal),
                         ("multiview", self.multiview),
                         ("long_clip", self.long_clip), ("animator", lambda: bench_video.animator(self)),
                         ("detector", self.detector), ("off_centre", self.off_centre)):
            if name not in self.cfg.sections:
                report[name] = []
                continue
            t = time.perf_counter()
            report[name] = fn()
            progress(f"  {name}: {time.perf_counter() - t:.0f} s")
        report["speed"] = self.speed
        report["video_breakdown"] = self.breakdown
        report["seconds"] = round(time.perf_counter() - t0, 1)
        return report


def environment(dev: torch.device) -> dict:
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return dict(device=str(dev), device_name=name, torch=torch.__version__, threads=torch.get_num_threads(),
                cpus=os.cpu_count(), python=platform.python_version())


# -- report ------------------------------------------------------------------------------------------
ERR_COLS = (("pa_mpjpe14", "PA-MPJPE 14"), ("mpjpe14", "MPJPE 14"), ("pa_mpjpe24", "PA-MPJPE 24"),
            ("mpjpe24", "MPJPE 24"))


def _is_start(method: str) -> bool:
    return method == "start" or method.startswith("start (")


def _with_change(rows: list[dict], group) -> list[dict]:
    """Adds 'change': the relative PA-MPJPE-14 change (%) against the start row of the row's group(row)."""
    base, out = {}, []
    for r in rows:
        if _is_start(r["method"]):
            base[group(r)] = r["pa_mpjpe14"]
            out.append(dict(r, change=""))
        else:
            b = base.get(group(r))
            out.append(dict(r, change=f"{100 * (r['pa_mpjpe14'] / b - 1):+.1f}%" if b else ""))
    return out


DEPTH_COLS = (("depth_pct", "root depth err %"), ("depth_bias_pct", "root depth bias %"))


def focal_markdown(section: dict, cfg: dict) -> list[str]:
    """The unknown-focal section's markdown lines: single-frame and video tables, known vs unknown focal."""
    fov = section["fov_deg"]
    parts = [
        "## Unknown focal length",
        f"The same validation motion seen by cameras whose field of view (across the long side) is drawn uniformly "
        f"in {FOV_DEG_RANGE[0]:g}-{FOV_DEG_RANGE[1]:g} deg per frame / clip (seed {cfg['seed']} + {SEED_FOCAL}; "
        f"drawn: {fov['min']}-{fov['max']}, mean {fov['mean']}), other camera draws as above. "
        f"known: the engine is told the true focal length; unknown: it is told the CLI's default when the user gives "
        f"none ({fov['told']:g} deg across the long side), on the same keypoints. Errors in the true camera frame; "
        "root depth err: mean |pelvis depth error| relative to the true depth, bias: its signed mean (+ = too far).",
        "",
    ]
    if section["single_frame"]:
        rows = section["single_frame"]
        parts += [f"### Single frame: {rows[0]['frames']} validation frames, regressor start", "",
                  table(_with_change(rows, lambda r: r["focal"]),
                        [("focal", "focal"), ("method", "method"), *ERR_COLS[:2], *DEPTH_COLS, ("change", "change")]),
                  ""]
    if section["video"]:
        rows = section["video"]
        parts += [f"### Video: {rows[0]['videos']} clips x {rows[0]['frames']} frames at {FPS} fps", "",
                  table(_with_change(rows, lambda r: r["focal"]),
                        [("focal", "focal"), ("method", "method"), *ERR_COLS[:2], ("accel", "accel"),
                         ("accel_abs", "accel abs"), *DEPTH_COLS, ("change", "change")]),
                  ""]
    return parts


def markdown(report: dict) -> str:
    cfg, env = report["config"], report["environment"]
    trained = "trained" if report.get("models") else "UNTRAINED (smoke run: numbers mean nothing)"
    parts = [
        "# Benchmark: ScoreHMR and baselines on held-out CMU motion",
        "",
        f"`python -m lab bench` (seed {cfg['seed']}, detector noise `{cfg['level']}`, "
        f"validation subjects: {cfg.get('subjects', 'all')}"
        f"{', --quick' if cfg['quick'] else ''}); models: {trained}; device {env['device']} ({env['device_name']}), "
        f"torch {env['torch']}, {env['threads']} threads; {report['seconds']:.0f} s in all.",
        *(["Sections re-run since (merged into this report; `reruns` in benchmark.json): " + "; ".join(
            f"{', '.join(r['sections'])} (`{r['command']}`" + (f", on {r['machine']}" if r.get("machine") else "") + ")"
            for r in report["reruns"]) + "."]
          if report.get("reruns") else []),
        f"Validation subjects {SUBJECT_PARTS}: loop settings and weights were chosen on 'tuning', this report "
        "is measured on the subjects named above.",
        "Errors in mm (MPJPE pelvis-aligned, PA-MPJPE after similarity Procrustes) on 14 LSP / 24 SMPL joints; "
        "'change' is the relative PA-MPJPE-14 change against the start.",
        "",
    ]
    if report["single_frame"]:
        parts += [
            f"## Single frame (paper Table 2): {cfg['frames']} validation frames",
            "ScoreHMR (paper): the loop for every frame. "
            "ScoreHMR (ours, the default; backend/engine/frame_fit.py): the "
            "built-in regressor's estimate, and a given start that explains the keypoints clearly worse than that "
            "estimate, are fitted with the prior as regulariser (DPoser-style, decaying rate) instead of the loop; "
            "the loop stops a frame once its keypoint residual is down to that estimate's (discrepancy principle).",
            "",
            table(_with_change(report["single_frame"], lambda r: r["start"]),
                   [("start", "start"), ("method", "method"), *ERR_COLS, ("change", "change"),
                    ("s_per_frame", "s/frame")]),
            "",
        ]
    if report["video"]:
        parts += [
            f"## Video (paper Table 4): {report['video'][0]['videos']} clips x {report['video'][0]['frames']} frames "
            f"at {FPS} fps, regressor start",
            "Accel: acceleration error (mm/frame^2) of pelvis-relative joints (the paper's protocol); "
            "accel abs: of camera-frame joints (translation jitter included).",
            "",
            table(_with_change(report["video"], lambda r: None),
                   [("method", "method"), *ERR_COLS, ("accel", "accel"), ("accel_abs", "accel abs"),
                    ("change", "change"), ("s_per_frame", "s/frame")]),
            "",
        ]
    if report.get("focal"):
        parts += focal_markdown(report["focal"], cfg)
    if report["multiview"]:
        parts += [
            f"## Multi-view (paper Table 3): {cfg['instants']} instants per view count, regressor start per view",
            "Calibrated: errors of view 0's body; uncalibrated: mean over every view's body.",
            "",
            table(_with_change(report["multiview"], lambda r: (r["views"], r["setting"])),
                   [("views", "views"), ("setting", "setting"), ("method", "method"), *ERR_COLS,
                    ("change", "change"), ("s_per_instant", "s/instant")]),
            "",
        ]
    if report.get("off_centre"):
        r0 = report["off_centre"]
        off = next(r for r in r0 if r["placement"] == "off-centre")
        parts += [
            f"## Off-centre people: {r0[0]['frames']} validation frames, centred and anywhere in the frame",
            "The same frames and bodies, centred (as in the tables above) and placed anywhere in the frame, "
            f"1.5-10 m away, partly outside (`sample_cameras(off_centre=True)`: {100 * off['outside']:.0f}% of "
            f"the frames have keypoints outside the image, box centres {off['off_axis_deg']} deg off axis on "
            "average). Regressor naive (box-normalised keypoints) or through its virtual camera (the camera "
            "turned onto the person; start and prior context); orient: global-orientation error (deg), over all "
            "frames and over those with every keypoint inside the image.",
            "",
            table(r0, [("placement", "placement"), ("regressor", "regressor"), ("method", "method"),
                        ("orient_deg", "orient (deg)"), ("orient_in_view_deg", "orient, in view"), *ERR_COLS,
                        ("s_per_frame", "s/frame")]),
            "",
        ]
    parts += [
        "## Speed",
        "Peak memory: " + report["speed"][0]["memory"] +
        " during the method (on CPU the whole process: models and data included).",
        "",
        table(report["speed"], [("mode", "mode"), ("method", "method"), ("device", "device"), ("frames", "frames"),
                                 ("views", "views"), ("seconds", "s"), ("frames_per_s", "frames/s"),
                                 ("denoiser_evals_per_frame", "denoiser evals/frame"), ("peak_mb", "peak MB")]),
        "",
    ] if report["speed"] else []
    if report.get("long_clip"):
        r = report["long_clip"][0]
        parts += [f"### Memory on a long clip: {r['minutes']} minutes at {r['fps']} fps ({r['frames']} frames)",
                  f"Video mode, windows of {r['window']} frames ({r['overlap']} shared), {r['windows_per_batch']} at "
                  f"a time, one outer iteration (memory does not grow with iterations): {r['memory']} "
                  f"{r['peak_mb']:.0f} MB (the process held {r['rss_before_mb']:.0f} MB before the run: models, "
                  f"data, earlier tables); {r['seconds']:.0f} s; every output finite: {r['finite']}.", ""]
    if report.get("detector"):
        d = report["detector"]
        ex, rd = d["example"], d["rendered"]
        parts += ["### The built-in detector (MediaPipe BlazePose) and the engine on its detections",
                  f"Speed on the example shot ({ex['size']}, {ex['frames']} frames, decoding included, one process): "
                  f"{ex['frames_per_second']} frames/s wall, {ex['frames_per_cpu_second']} frames per CPU second; "
                  f"mean 2D error {ex['mean_px']} px against its true keypoints.", ""]
        if rd:
            parts += [f"Validation-subject motion rendered with the free body model (`{rd['folder']}`, "
                      f"`python -m lab calibrate-detector render`): {rd['frames']} frames, person found in "
                      f"{100 * rd['found']:.1f}%, COCO-17 error {rd['mean_px']} px mean, {rd['median_px']} median, "
                      f"{rd['p95_px']} p95 ({rd['points']} points). The engine (default options) on those detections:",
                      "", table(d["engine"], [("method", "method"), ("excerpts", "excerpts"), ("frames", "frames"),
                                               ("pa_mpjpe24", "PA-MPJPE-24"), ("mpjpe24", "MPJPE-24")]), ""]
    if report.get("animator"):
        parts += [bench_video.markdown(report["animator"], cfg["video_length"], cfg["level"]), ""]
    if report["video_breakdown"]:
        parts += [f"### Where the time goes: ScoreHMR (ours), one {report['video_breakdown'][0]['frames']}-frame clip",
                  "", table(report["video_breakdown"], [("part", "part"), ("seconds", "s"), ("share", "share"),
                                                         ("calls", "calls")]), ""]
    return "\n".join(parts)


def merge_rerun(committed: dict, report: dict, command: str) -> dict:
    """The committed report with the sections run in ``report`` put in (replacing theirs, and the speed
    rows of the modes it measured), the re-run recorded under 'reruns'."""
    merged = dict(committed)
    sections = [name for name in report["config"]["sections"] if name in SECTIONS]
    for name in sections:
        merged[name] = report[name]
    measured = {r["mode"] for r in report["speed"]}
    merged["speed"] = [r for r in committed.get("speed", []) if r["mode"] not in measured] + report["speed"]
    if report["video_breakdown"]:
        merged["video_breakdown"] = report["video_breakdown"]
    merged["reruns"] = [*committed.get("reruns", []), dict(sections=sections, command=command,
                                                            seconds=report["seconds"])]
    return merged


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "benchmark.md", out / "benchmark.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=1))
    return md, js


def animator_main(argv: list[str] | None = None) -> int:
    """``python -m lab bench-video``: the animator section alone (lab.bench_video), written to --out."""
    import argparse

    from backend.engine.api import Engine
    from lab.data.dataset import load_split

    p = argparse.ArgumentParser(prog="python -m lab bench-video", description=bench_video.__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--video-length", type=int, default=96)
    p.add_argument("--level", default="medium", choices=["clean", "low", "medium", "high", "blazepose"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default=None, help="folder with cmu_smpl_val.npz (default cache/dataset)")
    p.add_argument("--subjects", default="report", choices=["tuning", "report", "all"],
                   help="validation subjects (lab.bench.SUBJECT_PARTS): choose settings on 'tuning'")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="docs/benchmark")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(videos=args.videos, video_length=args.video_length, level=args.level, seed=args.seed)
    data = load_split("val", args.dataset)
    if args.subjects != "all":
        data = select_subjects(data, SUBJECT_PARTS[args.subjects])
    bench = Bench(Engine.load(), data, MaxMixturePrior(GMM.load(GMM_PATH)), cfg)
    section = bench_video.animator(bench)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"animator_{args.level}.json").write_text(json.dumps(dict(config=vars(args), **section), indent=1))
    text = bench_video.markdown(section, cfg.video_length, cfg.level)
    (out / f"animator_{args.level}.md").write_text(text)
    print(text)
    return 0



def main(argv: list[str] | None = None, *, engine=None, data: dict | None = None, gmm: GMM | None = None) -> int:
    """``python -m lab bench``.  engine / data (a load_split-like dict) / gmm can be injected (tests)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m lab bench", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, help=f"single-frame table (default {BenchConfig.frames})")
    p.add_argument("--videos", type=int, help=f"video clips (default {BenchConfig.videos})")
    p.add_argument("--video-length", type=int, help=f"frames per clip (default {BenchConfig.video_length})")
    p.add_argument("--instants", type=int, help=f"multi-view instants per view count (default {BenchConfig.instants})")
    p.add_argument("--views", type=int, nargs="+", help="view counts (default 2 4 8)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, help="run only these tables (development)")
    p.add_argument("--level", default="medium", choices=["clean", "low", "medium", "high", "blazepose"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--landmarks", default="regressor", choices=LANDMARK_CHOICES,
                   help="simulated keypoints: the body model's own (regressor) or BlazePose's (lab.sim.landmarks)")
    p.add_argument("--quick", action="store_true",
                   help="1-2 minute smoke run: tiny sizes, 2 ScoreHMR iterations, 15 fitting steps")
    p.add_argument("--subjects", default="report", choices=[*SUBJECT_PARTS, "all"],
                   help="validation subjects: 'tuning' (choose settings on these), 'report' (default: the "
                        "committed numbers) or 'all'")
    p.add_argument("--dataset", default=None, help="folder with cmu_smpl_val.npz (default cache/dataset)")
    p.add_argument("--gmm", default=str(GMM_PATH), help="pose GMM (python -m lab fit-gmm)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a busy 2-core machine 2 threads ran the multi-view loop 6x "
                        "slower than 1; 0 = torch's default)")
    p.add_argument("--motion-prior", metavar="PATH",
                   default=str(MOTION_PRIOR_PATH) if MOTION_PRIOR_PATH.is_file() else None,
                   help="video: also run the learned motion prior (default backend/assets/motion_prior.pt when "
                        "present; 'none' leaves the row out)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--no-virtual-camera", action="store_true",
                   help="the regressor without its virtual camera (Engine.virtual_camera off) in every section but "
                        "off_centre (which runs both): for comparing with the default")
    p.add_argument("--merge", action="store_true",
                   help="put the sections run (--sections) into the report already in --out, recorded under "
                        "'reruns', instead of writing a new report")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    cfg = BenchConfig(level=args.level, seed=args.seed, quick=args.quick, subjects=args.subjects,
                      motion_prior=None if args.motion_prior in (None, "none") else args.motion_prior,
                      **(QUICK if args.quick else {}))
    for key in ("frames", "videos", "video_length", "instants", "views", "sections"):
        if getattr(args, key) is not None:
            value = getattr(args, key)
            setattr(cfg, key, tuple(value) if isinstance(value, list) else value)
    try:
        if data is None:
            data = load_validation(cfg.subjects, args.dataset)
        if gmm is None:
            if not Path(args.gmm).is_file():
                raise FileNotFoundError(f"{args.gmm} not found; run `python -m lab fit-gmm` first")
            gmm = GMM.load(args.gmm)
        if engine is None:
            from backend.engine.api import Engine

            engine = Engine.load(device=args.device)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine.virtual_camera = not args.no_virtual_camera
    torch.manual_seed(cfg.seed)
    print(f"bench: {cfg.frames} frames, {cfg.videos} x {cfg.video_length}-frame clips, {cfg.instants} instants x "
          f"{list(cfg.views)} views on {engine.device}", flush=True)
    bench = Bench(engine, data, MaxMixturePrior(gmm), cfg)
    bench.sim_body = landmark_body(bench.sim_body, args.landmarks)
    report = bench.run(progress=lambda s: print(s, flush=True))
    report["config"]["landmarks"] = args.landmarks
    if args.merge:
        committed = json.loads((Path(args.out) / "benchmark.json").read_text())
        args_text = " ".join(sys.argv[1:] if argv is None else argv)
        report = merge_rerun(committed, report, f"python -m lab bench {args_text}")
    md, js = write_report(report, Path(args.out))
    print(markdown(report))
    print(f"wrote {md} and {js}")
    return 0
