"""Does the learned prior earn its place in the product's default paths?  Video, gap bridging and calibrated
views, each with classical controls in the same loop.

    python -m lab ablate-paths [--methods video gaps calibrated] [--sources sim real] [--clips 6]
                               [--report-clips 8] [--length 64] [--gap 12] [--instants 16] [--views 4]
                               [--grid small|lean|confirm|quick] [--seed 0] [--threads 1] [--out docs]

Methods (each the product's default path end to end, only the denoiser of one loop changes):

* ``video``: the default video mode (backend.engine.modes.video: the per-frame prior in overlapping windows,
  frames without keypoints bridged by the motion prior, the final L-BFGS fit).  The variant replaces the
  per-frame prior; the start is the built-in regressor's with empty frames interpolated (as Engine.run).
* ``gaps``: the same clips with ``--gap`` frames without keypoints in the middle; the per-frame loop runs with
  the trained prior at its defaults, the variant replaces the motion prior's network in the bridging of the
  gap (its state space and decoding stay the prior's), then the final fit.  Errors on the gap's frames.
* ``calibrated``: calibrated multi-view (backend.engine.modes.calibrated: triangulation fit, then the loop
  per view); the variant replaces the per-frame prior.  One instant of one person per case.

Sources: ``sim`` simulated clips of the validation subjects (tuning part to choose, report part to report;
random bodies and static cameras, noise ``--level``), ``real`` BlazePose detections of renders
(docs/benchmark/detections_val64_tuning to choose, detections_val64_report to report; every excerpt, those
where the detector missed frames included and counted).  Calibrated views are simulated only.

Variants (VARIANTS), all in the same loop with the same guidance:

* ``trained``: the committed prior;
* ``null``: eps = 0 (the loop is then gradient descent on the guidance);
* ``l2``: eps = 0 plus w ||x6 - x6_start||^2 in the guidance (the 6D pose pulled to the loop's start);
* ``gmm``: eps = 0 plus w x the GMM pose prior's negative log-likelihood (SMPLify's, backend.engine.gmm)
  of the 23 body joints in the guidance.

The controls' terms reach the loop through the denoiser argument (a denoiser's ``guidance_term``,
backend.engine.scorehmr.GuidanceTerm).  Each variant is tuned with the same number of grid points
(GRIDS: trained/null guidance scale x outer iterations, l2/gmm weight x outer iterations at the default
scale) on the tuning part, lowest mean PA-MPJPE-14 (gaps: on the gap's frames).  Samples for the paired
differences (variant minus trained, 95% Student-t interval) are clips (video, gaps) or instants
(calibrated): frames of one clip are not independent.  Writes ablation_paths.md / .json into --out.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from backend.engine import gaps as G
from backend.engine import problems
from backend.engine.gmm import gmm_term
from backend.engine.options import ModeOptions
from backend.engine.scorehmr import ClassicalPrior, GuidanceTerm, LoopOptions, null_denoiser
from backend.metrics import accel_error, sample_joint_errors
from lab.ablate import SEED_REPORT, SEED_TUNE, paired_interval
from lab.bench_common import FPS, SUBJECT_PARTS

DEFAULT_OUT = Path("docs")
DETECTIONS = dict(tuning=Path("docs/benchmark/detections_val64_tuning"),
                  report=Path("docs/benchmark/detections_val64_report"))
VARIANTS = ("trained", "null", "l2", "gmm")
CONTROLS = ("null", "l2", "gmm")
METHODS = ("video", "gaps", "calibrated")
SOURCES = dict(video=("sim", "real"), gaps=("sim", "real"), calibrated=("sim",))
# The order the paths run in (each is written out when done): the product's default path first.
PATH_ORDER = ("video/sim", "video/real", "gaps/sim", "calibrated/sim", "gaps/real")
# The grid per method: the loop's guidance scale (trained, null) or the control's weight (l2, gmm; at the
# mode's default scale), times the outer iterations; every variant gets the same number of points.  The
# weights are in the loop's units (the keypoint term is 0.003 x Eq. 12, ~10 per frame at the medium noise).
GRIDS = dict(
    quick=dict(scale=(1.0,), l2=(10.0,), gmm=(0.1,), iterations=dict(video=(1,), gaps=(1,), calibrated=(1,))),
    # One point a variant: the product's defaults against the lean grid's choices for the controls, on more cases
    # (the check before a default changes).
    confirm=dict(scale=(1.0,), l2=(10.0,), gmm=(0.1,), iterations=dict(video=(10,), gaps=(5,), calibrated=(10,))),
    # Three points a variant at the mode's default iterations (what fits an hour of one core).
    lean=dict(scale=(0.5, 1.0, 2.0), l2=(1.0, 10.0, 100.0), gmm=(0.01, 0.1, 1.0),
              iterations=dict(video=(10,), gaps=(5,), calibrated=(10,))),
    small=dict(scale=(0.5, 1.0, 2.0), l2=(1.0, 10.0, 100.0), gmm=(0.01, 0.1, 1.0),
               iterations=dict(video=(5, 10), gaps=(3, 5), calibrated=(5, 10))),
)
METRICS = ("pa_mpjpe14", "mpjpe14", "accel")
# The share of PA-MPJPE-14 by which the trained prior must beat a control (issue 19, item 4).
MARGIN = 0.02


# -- variants ------------------------------------------------------------------------------------------
def l2_term(weight: float) -> GuidanceTerm:
    """w ||x6 - x6_start||^2 per group: rot6d, start6d (g,S,144) -> (g,)."""
    def term(rotmats: torch.Tensor, rot6d: torch.Tensor, start6d: torch.Tensor) -> torch.Tensor:
        return weight * (rot6d - start6d).pow(2).flatten(1).sum(1)
    return term


def variant_denoiser(name: str, prior, weight: float | None, pose_prior=None) -> Callable:
    """The denoiser a variant gives the loop in place of ``prior`` (the learned per-frame or motion prior)."""
    if name == "trained":
        return prior
    if name == "null":
        return null_denoiser
    if name == "l2":
        return ClassicalPrior(l2_term(weight))
    if name == "gmm":
        return ClassicalPrior(gmm_term(pose_prior, weight))
    raise ValueError(f"unknown variant {name!r}: one of {VARIANTS}")


@dataclass(frozen=True)
class Settings:
    """A variant's tuned constants: the loop's guidance scale and outer iterations, the control's weight."""
    scale: float = 1.0
    iterations: int = 10
    weight: float | None = None

    def loop(self, base: LoopOptions) -> LoopOptions:
        return replace(base, guidance_scale=self.scale, iterations=self.iterations)


def grid(name: str, method: str, variant: str, default_scale: float = 1.0) -> list[Settings]:
    """The variant's grid points (the same number for every variant)."""
    g = GRIDS[name]
    its = g["iterations"][method]
    if variant in ("l2", "gmm"):
        return [Settings(default_scale, i, w) for w, i in itertools.product(g[variant], its)]
    return [Settings(s, i) for s, i in itertools.product(g["scale"], its)]


# -- cases ---------------------------------------------------------------------------------------------
@dataclass
class Clip:
    """One clip: observations (F,...), the video start as Engine.run makes it (the built-in regressor's, empty
    frames interpolated from their seen neighbours; with the prior's context), the truth (F,24,3) in the
    camera frame and which frames have no keypoints (F,) bool."""
    name: str
    obs: problems.Observations
    start: dict
    gt: np.ndarray
    empty: np.ndarray


def make_clip(engine, name: str, kp: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor,
              size: torch.Tensor, gt: np.ndarray, fps: float) -> Clip:
    """A Clip from keypoints (F,17,3), focal (F,), principal (F,2), image size (F,2) (engine tensors)."""
    obs = problems.Observations(kp, focal, principal, size, fps=fps)
    est = engine.initial(kp, focal, principal)
    start = dict(rotmats=est["rotmats"], betas=est["betas"], transl=est["transl"], source="built-in regressor")
    start, context = G.bridge(start, engine.context(kp, focal, principal), kp)
    return Clip(name, obs, dict(start, context=context), np.asarray(gt, np.float64),
                G.empty_frames(kp).cpu().numpy())


def with_gap(kp: torch.Tensor, length: int) -> torch.Tensor:
    """Keypoints (F,17,3) with ``length`` frames in the middle at zero (no detection)."""
    out = kp.clone()
    a = (kp.shape[0] - length) // 2
    out[a:a + length] = 0.0
    return out


def sim_clips(engine, sim_body, data: dict, n: int, length: int, seed: int, level: str,
              gap: int = 0) -> list[Clip]:
    """n simulated clips of ``length`` frames of ``data`` (random bodies, one static camera each, as the
    benchmark's video table), optionally with a gap of ``gap`` frames without keypoints."""
    from lab.data.dataset import window_starts
    from lab.sim.observations import video_observations

    rng = np.random.default_rng(seed)
    starts = window_starts(data, length, length)
    chosen = np.sort(rng.choice(starts, min(n, len(starts)), replace=False))
    idx = chosen[:, None] + np.arange(length)[None]
    params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                  betas=rng.standard_normal((len(chosen), 10)), transl=data["transl"][idx])
    obs = video_observations(sim_body, params, torch.Generator().manual_seed(seed), level, fps=FPS)
    t = lambda x: x.to(engine.device, torch.float32)
    clips = []
    ids = data.get("clip_ids")
    for i, s in enumerate(chosen):
        kp = t(obs["keypoints"][i])
        kp = with_gap(kp, gap) if gap else kp
        name = f"{ids[data['clip_index'][s]]}@{data['frame_index'][s]}" if ids is not None else f"clip{i}"
        clips.append(make_clip(engine, name, kp, t(obs["focal_length"][i]).expand(length),
                               t(obs["principal_point"][i]).expand(length, 2),
                               t(obs["image_size"][i]).expand(length, 2), obs["gt_joints"][i].double().numpy(),
                               float(FPS)))
    return clips


def real_clips(engine, folder: Path, subjects, gap: int = 0, limit: int | None = None) -> list[Clip]:
    """Every excerpt of ``subjects`` in a rendered detections folder (lab.sim.calibrate), the ones where
    BlazePose missed frames included (their frames bridged as in the product), optionally with a gap."""
    from backend.body.body_model import BodyModel
    from lab.sim.calibrate import excerpt_obs, load_chunks, truth_joints

    data = load_chunks(Path(folder))
    truth = truth_joints(BodyModel.load(None, dtype=torch.float64), data)
    clips = []
    for i, clip_id in enumerate(data["clip_ids"]):
        if int(str(clip_id).split("_")[0]) not in subjects:
            continue
        o = engine.observations(excerpt_obs(data, i, "video"))[0]
        kp = with_gap(o.keypoints, gap) if gap else o.keypoints
        clips.append(make_clip(engine, f"{Path(folder).name}/{clip_id}", kp, o.focal, o.principal, o.image_size,
                               truth[i], o.fps))
        if limit and len(clips) >= limit:
            break
    return clips


@dataclass
class Instant:
    """One instant of one person seen by V calibrated views: observations (V,1,...) with cam_R/cam_t, the
    per-view start (V,...) view-major with its context, the truth (V,24,3) in each view's camera frame."""
    obs: problems.Observations
    start: dict
    gt: np.ndarray


def calibrated_instants(engine, sim_body, data: dict, n: int, views: int, seed: int, level: str) -> list[Instant]:
    """n random frames of ``data``, each a random body seen by ``views`` calibrated cameras around it."""
    from lab.sim.observations import multiview_observations

    rng = np.random.default_rng(seed)
    n = min(n, len(data["global_orient"]))
    idx = np.sort(rng.choice(len(data["global_orient"]), n, replace=False))
    params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                  betas=rng.standard_normal((n, 10)), transl=np.zeros((n, 3), np.float32))
    obs = multiview_observations(sim_body, params, torch.Generator().manual_seed(seed), views, level, calibrated=True)
    t = lambda x: x.to(engine.device, torch.float32)
    out = []
    for b in range(n):
        kp, focal, pp, size = (t(obs[k][b]) for k in ("keypoints", "focal_length", "principal_point", "image_size"))
        o = problems.Observations(kp[:, None], focal[:, None], pp[:, None], size[:, None], t(obs["cam_R"][b]),
                                  t(obs["cam_t"][b]))
        est = engine.initial(kp, focal, pp)
        start = dict(rotmats=est["rotmats"], betas=est["betas"], transl=est["transl"],
                     context=engine.context(kp, focal, pp))
        out.append(Instant(o, start, obs["gt_joints"][b].double().numpy()))
    return out


# -- running a method on a case ------------------------------------------------------------------------
def mode_options(mode: str) -> ModeOptions:
    from backend.engine.options import EngineOptions

    return EngineOptions().for_mode(mode)


def joints(engine, res: dict) -> np.ndarray:
    from lab.bench_common import joints_of

    return joints_of(engine, res)


def run_video(engine, clip: Clip, denoiser, settings: Settings) -> dict:
    """The default video mode on a clip with ``denoiser`` in the per-frame prior's place."""
    from backend.engine.modes import video

    mode = mode_options("video")
    return video.refine(engine, clip.obs, clip.start, replace(mode, loop=settings.loop(mode.loop)),
                        denoiser=denoiser)


def gap_base(engine, clip: Clip) -> dict:
    """The default video mode's windows on a clip (its default prior), before the gaps are bridged
    and the final fit: rotmats (F,24,3,3), transl (F,3), betas (F,10)."""
    from backend.engine.modes import video

    mode = mode_options("video")
    return video.refine(engine, clip.obs, clip.start, replace(mode, gaps=None, polish=None))


def run_gaps(engine, clip: Clip, base: dict, denoiser, settings: Settings) -> dict:
    """The rest of the default video mode from ``base`` (gap_base): the gaps bridged by the motion prior's
    loop with ``denoiser`` in its network's place, then the final fit.  With the trained prior and the
    default settings this is video.refine's result."""
    from backend.engine.modes import video
    from backend.engine.polish import polish_clip

    mode = mode_options("video")
    gap_opts = replace(mode.gaps, loop=settings.loop(mode.gaps.loop))
    rotmats, transl, _ = video.bridge_gaps(engine, clip.obs, base["betas"], base["rotmats"], base["transl"], gap_opts,
                                           denoiser=denoiser)
    rotmats, transl = polish_clip(engine.body, clip.obs, base["betas"], rotmats, transl, mode.polish)
    return dict(rotmats=rotmats, transl=transl, betas=base["betas"])


def run_calibrated(engine, inst: Instant, denoiser, settings: Settings) -> dict:
    from backend.engine.modes import calibrated

    mode = mode_options("calibrated")
    return calibrated.refine(engine, inst.obs, inst.start, replace(mode, loop=settings.loop(mode.loop)),
                             denoiser=denoiser)


def clip_errors(pred: np.ndarray, clip: Clip, gap_only: bool = False) -> dict:
    """A clip's errors: PA-MPJPE-14 / MPJPE-14 (mm) over its frames (or its empty frames only) and the
    pelvis-relative acceleration error (mm/frame^2) over the whole clip."""
    err = sample_joint_errors(pred, clip.gt)
    keep = clip.empty if gap_only and clip.empty.any() else np.ones(len(pred), bool)
    rel = lambda j: j - j[:, :1]
    return dict(pa_mpjpe14=float(err["pa_mpjpe14"][keep].mean()), mpjpe14=float(err["mpjpe14"][keep].mean()),
                accel=float(accel_error(rel(pred), rel(clip.gt)).mean()))


def instant_errors(pred: np.ndarray, inst: Instant) -> dict:
    """An instant's errors: PA-MPJPE-14 / MPJPE-14 (mm), means over its views (the same body in each)."""
    err = sample_joint_errors(pred, inst.gt)
    return dict(pa_mpjpe14=float(err["pa_mpjpe14"].mean()), mpjpe14=float(err["mpjpe14"].mean()))


@dataclass
class Task:
    """One method on one source: its tuning and report cases and what runs a variant on a case."""
    method: str
    source: str
    tune: list
    report: list

    @property
    def name(self) -> str:
        return f"{self.method}/{self.source}"


class Runner:
    """Runs a method's variants on its cases (the gaps' windows computed once per clip)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._bases: dict[int, dict] = {}

    def prior_of(self, method: str) -> torch.nn.Module:
        if method == "gaps":
            return self.engine.motion_prior(mode_options("video").gaps.motion_prior)[0]
        return self.engine.prior

    def errors(self, method: str, case, variant: str, settings: Settings) -> dict:
        e = self.engine
        den = variant_denoiser(variant, self.prior_of(method), settings.weight, e.pose_gmm())
        if method == "video":
            return clip_errors(joints(e, run_video(e, case, den, settings)), case)
        if method == "gaps":
            if id(case) not in self._bases:
                self._bases[id(case)] = gap_base(e, case)
            return clip_errors(joints(e, run_gaps(e, case, self._bases[id(case)], den, settings)), case, gap_only=True)
        if method == "calibrated":
            return instant_errors(joints(e, run_calibrated(e, case, den, settings)), case)
        raise ValueError(f"unknown method {method!r}: one of {METHODS}")

    def start_errors(self, method: str, case) -> dict:
        if method == "calibrated":
            return instant_errors(joints(self.engine, case.start), case)
        return clip_errors(joints(self.engine, case.start), case, gap_only=method == "gaps")


def default_scale(method: str) -> float:
    mode = mode_options("video")
    return {"video": mode.loop, "gaps": mode.gaps.loop,
            "calibrated": mode_options("calibrated").loop}[method].guidance_scale


def tune_task(runner: Runner, task: Task, variants, grid_name: str, say=print) -> dict:
    """Per variant, the grid point with the lowest mean PA-MPJPE-14 on the task's tuning cases:
    {variant: dict(settings, pa_mpjpe14, grid=[...])}."""
    chosen = {}
    for v in variants:
        rows = []
        for st in grid(grid_name, task.method, v, default_scale(task.method)):
            pa = [runner.errors(task.method, c, v, st)["pa_mpjpe14"] for c in task.tune]
            rows.append(dict(settings=st.__dict__, pa_mpjpe14=round(float(np.mean(pa)), 3)))
            say(f"    {task.name} {v} {st.__dict__}: {rows[-1]['pa_mpjpe14']:.2f}")
        best = min(rows, key=lambda r: r["pa_mpjpe14"])
        chosen[v] = dict(best, grid=rows)
        say(f"  tuned {task.name} {v}: {best['settings']} -> {best['pa_mpjpe14']:.2f} mm ({len(task.tune)} cases)")
    return chosen


def report_task(runner: Runner, task: Task, variants, chosen: dict, say=print) -> list[dict]:
    """Rows for the start and every variant at its chosen settings on the report cases, with paired
    differences to 'trained' (95% Student-t intervals over cases)."""
    per = {"start": [runner.start_errors(task.method, c) for c in task.report]}
    for v in variants:
        st = Settings(**chosen[v]["settings"])
        per[v] = [runner.errors(task.method, c, v, st) for c in task.report]
    metrics = [m for m in METRICS if m in per["start"][0]]
    col = lambda who, m: np.array([r[m] for r in per[who]])
    rows = []
    for who in ("start", *variants):
        r = dict(method=task.method, source=task.source, variant=who, n=len(task.report),
                 **{m: round(float(col(who, m).mean()), 2) for m in metrics},
                 per_case_pa_mpjpe14=[round(float(x), 2) for x in col(who, "pa_mpjpe14")])
        if who not in ("start", "trained") and "trained" in per:
            for m in metrics:
                ci = paired_interval(col(who, m) - col("trained", m))
                r[f"diff_{m}"] = {k: (round(x, 2) if isinstance(x, float) else x) for k, x in ci.items()}
        rows.append(r)
    say(f"  {task.name}: " + ", ".join(f"{r['variant']} {r['pa_mpjpe14']:.2f}" for r in rows))
    return rows


def verdict(rows: list[dict]) -> dict:
    """Per control: does the trained prior beat it by >= MARGIN of its PA-MPJPE-14 with the interval of
    (control - trained) above zero?  {control: bool}, and 'all'."""
    trained = next(r for r in rows if r["variant"] == "trained")
    out = {}
    for r in rows:
        d = r.get("diff_pa_mpjpe14")
        if d is not None:
            out[r["variant"]] = bool(d["lo"] > 0 and d["mean"] >= MARGIN * trained["pa_mpjpe14"])
    out["all"] = bool(out) and all(out.values())
    return out


# -- report --------------------------------------------------------------------------------------------
def _ci(d: dict | None) -> str:
    return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]" if d else ""


def _settings(s: dict) -> str:
    return f"scale {s['scale']}, {s['iterations']} it" + (f", w {s['weight']}" if s.get("weight") is not None else "")


def markdown(report: dict) -> str:
    cfg = report["config"]
    limit = "".join(f", at most {cfg[k]} {part}" for k, part in (("real_clips", "tuning"),
                                                                   ("real_report_clips", "report")) if cfg.get(k))
    lines = [
        "# Ablation of the default paths: video, gap bridging, calibrated views",
        "",
        f"Command: `{report['command']}` ({report['seconds']:.0f} s on {report['environment']['device']}, "
        f"{report['environment']['threads']} thread{'s' if report['environment']['threads'] != 1 else ''}"
        f"{'; --quick: numbers mean nothing' if cfg['grid'] == 'quick' else ''}).",
        f"Sizes: simulated clips {cfg['clips']} (tuning) / {cfg['report_clips']} (report) x {cfg['length']} frames, "
        f"noise `{cfg['level']}`; gaps: {cfg['gap']} frames without keypoints in the middle of each clip; real "
        f"detections: every excerpt of {DETECTIONS['tuning']} (tuning subjects) / {DETECTIONS['report']} (report "
        f"subjects){limit}; "
        f"calibrated: {cfg['instants']} (tuning) / {cfg['report_instants']} (report) instants x {cfg['views']} "
        f"views. Seed {cfg['seed']} (tuning draws seed + {SEED_TUNE}, report seed + {SEED_REPORT}).",
        f"Tuning subjects {SUBJECT_PARTS['tuning']}, report subjects {SUBJECT_PARTS['report']}.",
        "Methods: video = the default video mode end to end (per-frame prior in windows, gaps bridged by the "
        "motion prior, final L-BFGS fit), the variant in the per-frame prior's place; gaps = the same with a gap "
        "in the middle, the per-frame loop trained at its defaults, the variant in the motion prior's place "
        "(errors on the gap's frames); calibrated = triangulation fit + the loop per view, the variant in the "
        "per-frame prior's place.",
        "Variants: trained prior; null (eps = 0); l2 (eps = 0 + w ||x6 - x6_start||^2 in the guidance); gmm "
        "(eps = 0 + w x GMM pose NLL in the guidance).  Same loop, same guidance, same start.",
        f"Tuning: {len(grid(cfg['grid'], 'video', 'trained'))} grid points per variant (trained/null: guidance "
        "scale x outer iterations; l2/gmm: weight x outer iterations at the default scale), lowest mean "
        "PA-MPJPE-14 on the tuning cases.",
        "Differences: variant minus trained on the same case, mean and 95% Student-t interval over cases "
        "(clips or instants; negative = the variant is better). mm; accel = pelvis-relative acceleration error "
        "(mm/frame^2) over the clip.",
        f"Verdict rule (issue 19, item 4): the trained prior beats a control when the control's PA-MPJPE-14 is "
        f"higher by >= {MARGIN:.0%} of the trained one's and the interval excludes zero.",
        "",
        "## Verdicts (report subjects)",
        "",
    ]
    for name, t in report["tasks"].items():
        if "verdict" not in t:
            continue
        v = t["verdict"]
        beaten = [c for c in v if c != "all" and v[c]]
        lost = [c for c in v if c != "all" and not v[c]]
        lines.append(f"- **{name}**: " + ("the trained prior beats every control (>= 2%, interval above zero)."
                                          if v["all"] else
                                          f"the trained prior does NOT beat every control: not beaten by "
                                          f"{', '.join(lost)}" + (f"; beaten: {', '.join(beaten)}" if beaten else "")
                                          + "."))
    lines += ["", "## Chosen settings (tuning cases)", "",
              "| path | cases | variant | settings | tuning PA-MPJPE-14 |", "|---|---|---|---|---|"]
    for name, t in report["tasks"].items():
        for v, c in t.get("chosen", {}).items():
            lines.append(f"| {name} | {t['tune_cases']} | {v} | {_settings(c['settings'])} | {c['pa_mpjpe14']} |")
    lines += ["", "## Results (report cases)", "",
              "| path | variant | n | PA-MPJPE-14 | MPJPE-14 | accel | diff PA-MPJPE-14 [95% CI] "
              "| diff MPJPE-14 [95% CI] | diff accel [95% CI] |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, t in report["tasks"].items():
        for r in t.get("rows", []):
            lines.append(f"| {name} | {r['variant']} | {r['n']} | {r['pa_mpjpe14']:.2f} | {r['mpjpe14']:.2f} | "
                         f"{r.get('accel', '')} | {_ci(r.get('diff_pa_mpjpe14'))} | {_ci(r.get('diff_mpjpe14'))} | "
                         f"{_ci(r.get('diff_accel'))} |")
    lines += ["", "## Cases", ""]
    for name, t in report["tasks"].items():
        lines.append(f"- {name}: tuning {t['tune_cases']}, report {t['report_cases']}"
                     + (f"; report excerpts with missed frames: {t['missed']}" if "missed" in t else "")
                     + (f" ({', '.join(t['report_names'])})" if t.get("report_names") else ""))
    lines += ["", "## Tuning grids (mean PA-MPJPE-14 on the tuning cases)", ""]
    for name, t in report["tasks"].items():
        for v, c in t.get("chosen", {}).items():
            lines.append(f"- {name} {v}: " + "; ".join(f"{_settings(g['settings'])}: {g['pa_mpjpe14']}"
                                                      for g in c["grid"]))
    return "\n".join(lines) + "\n"


# -- the command ---------------------------------------------------------------------------------------
def build_tasks(engine, sim_body, parts: dict, methods, sources, args) -> list[Task]:
    """The (method, source) tasks asked for, with their tuning and report cases."""
    tasks = []
    for method in methods:
        for source in (s for s in SOURCES[method] if s in sources):
            gap = args.gap if method == "gaps" else 0
            if method == "calibrated":
                tune = calibrated_instants(engine, sim_body, parts["tuning"], args.instants, args.views,
                                           SEED_TUNE + args.seed, args.level)
                rep = calibrated_instants(engine, sim_body, parts["report"], args.report_instants, args.views,
                                          SEED_REPORT + args.seed, args.level)
            elif source == "sim":
                tune = sim_clips(engine, sim_body, parts["tuning"], args.clips, args.length, SEED_TUNE + args.seed,
                                 args.level, gap)
                rep = sim_clips(engine, sim_body, parts["report"], args.report_clips, args.length,
                                SEED_REPORT + args.seed, args.level, gap)
            else:
                tune = real_clips(engine, args.detections_tuning, SUBJECT_PARTS["tuning"], gap, args.real_clips)
                rep = real_clips(engine, args.detections_report, SUBJECT_PARTS["report"], gap, args.real_report_clips)
            tasks.append(Task(method, source, tune, rep))
    return sorted(tasks, key=lambda t: PATH_ORDER.index(t.name))


def main(argv: list[str] | None = None, *, engine=None, data: dict | None = None) -> int:
    """``python -m lab ablate-paths``.  engine / data (one load_split-like dict used for both parts) can be
    injected (tests)."""
    import argparse

    from lab import bench

    p = argparse.ArgumentParser(prog="python -m lab ablate-paths", description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--sources", nargs="+", choices=("sim", "real"), default=["sim", "real"])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--clips", type=int, default=6, help="simulated tuning clips (default 6)")
    p.add_argument("--report-clips", type=int, default=8, help="simulated report clips (default 8)")
    p.add_argument("--length", type=int, default=64, help="frames per simulated clip (default 64)")
    p.add_argument("--gap", type=int, default=12, help="frames without keypoints for the gaps method (default 12)")
    p.add_argument("--real-clips", type=int, default=None, help="at most this many real tuning excerpts (default all)")
    p.add_argument("--real-report-clips", type=int, default=None,
                   help="at most this many real report excerpts (default all)")
    p.add_argument("--instants", type=int, default=16, help="calibrated tuning instants (default 16)")
    p.add_argument("--report-instants", type=int, default=32, help="calibrated report instants (default 32)")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--level", default="medium", help="simulated noise level (default medium)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", choices=list(GRIDS), default="small")
    p.add_argument("--detections-tuning", type=Path, default=DETECTIONS["tuning"])
    p.add_argument("--detections-report", type=Path, default=DETECTIONS["report"])
    p.add_argument("--dataset", default=None, help="folder with cmu_smpl_val.npz (default cache/dataset)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    variants = list(dict.fromkeys(["trained", *args.variants]))
    say = lambda s: print(s, flush=True)
    t0 = time.perf_counter()
    if engine is None:
        from backend.engine.api import Engine

        engine = Engine.load(device=args.device)
    parts = dict(tuning=data, report=data) if data is not None else \
        {k: bench.load_validation(k, args.dataset) for k in ("tuning", "report")}
    tasks = build_tasks(engine, engine.body, parts, args.methods, args.sources, args)
    say(f"ablate-paths: {', '.join(f'{t.name} {len(t.tune)}/{len(t.report)}' for t in tasks)} cases "
        f"(tuning/report), variants {variants}, {args.grid} grid")
    command = "python -m lab ablate-paths " + " ".join(sys.argv[1:] if argv is None else argv)
    config = dict(vars(args), variants=variants, detections_tuning=str(args.detections_tuning),
                  detections_report=str(args.detections_report))
    report = dict(command=command, config=config,
                  environment=bench.environment(engine.device), models=engine.meta, tasks={}, seconds=0.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(engine)
    for task in tasks:
        t1 = time.perf_counter()
        entry = dict(tune_cases=len(task.tune), report_cases=len(task.report))
        if task.method != "calibrated":
            entry["report_names"] = [c.name for c in task.report]
            if task.source == "real" and task.method == "video":
                entry["missed"] = int(sum(c.empty.any() for c in task.report))
        report["tasks"][task.name] = entry
        entry["chosen"] = tune_task(runner, task, variants, args.grid, say)
        entry["rows"] = report_task(runner, task, variants, entry["chosen"], say)
        if "trained" in variants and len(variants) > 1:
            entry["verdict"] = verdict(entry["rows"])
        entry["seconds"] = round(time.perf_counter() - t1, 1)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        # Written after every task: a long run leaves what it finished.
        (out / "ablation_paths.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "ablation_paths.md").write_text(markdown(report))
        say(f"  {task.name} done in {entry['seconds']:.0f} s")
    print(markdown(report))
    return 0
