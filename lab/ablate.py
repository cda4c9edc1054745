"""What does the learned prior contribute?  The engine's methods with other denoisers in its place.

    python -m lab ablate [--frames N] [--seeds 0 1 2] [--conditions ...] [--variants ...] [--methods ...]
                             [--grid small|full] [--threads 1] [--workers N] [--device cpu] [--quick] [--out docs]

Methods (METHODS): the paper's single-frame loop, the single-frame default (the fit of the built-in
regressor's start with the prior as a regulariser, backend.engine.frame_fit) and Eq. 13 over uncalibrated
views.  Variants (the same method, guidance and start; only what it is given as eps(x, t, c) changes):

* ``trained``: the committed prior with the regressor's context;
* ``untrained``: the same architecture, seeded random initialisation;
* ``null``: eps = 0, which turns the loop into gradient descent on the guidance loss alone (and the fit's
  regulariser into zero-mean noise);
* ``unconditional``: the trained prior with the context zeroed.  The prior was trained with context
  dropout (train.CONTEXT_DROPOUT: the dropped context is zeros), so zeros are its null context;
* ``shuffled``: the trained prior given another sample's context (a derangement of the batch).

Each method and variant's constants (the loops' guidance scale, tau with its DDIM stride and outer
iterations; the fit's prior weight) are chosen by a grid search on the tuning subjects
(bench.SUBJECT_PARTS['tuning'], the method's TUNE_CONDITIONS, lowest mean PA-MPJPE-14) and reported on the
report subjects at the conditions below.  The paired difference (variant minus trained, same method,
sample and seed) gets a 95% Student-t interval over all samples pooled across seeds.
Writes ablation.md and ablation.json into --out.
"""
from __future__ import annotations

import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from backend.engine.frame_fit import REGRESSOR_SOURCE
from backend.engine.scorehmr import null_denoiser
from backend.metrics import sample_joint_errors
from lab import bench
from lab.sim.landmarks import LANDMARK_CHOICES, landmark_body

DEFAULT_OUT = Path("docs")
VARIANTS = ("trained", "untrained", "null", "unconditional", "shuffled")


@dataclass(frozen=True)
class Condition:
    """What a case simulates: the detector noise preset, how far the principal point moves from the person
    (fraction of the frame), whether one whole limb per frame is hidden, and the views per instant (> 1:
    uncalibrated multi-view, the Eq. 13 loop; errors averaged over an instant's views)."""
    level: str
    jitter: float = 0.0
    occluded: bool = False
    views: int = 1

    @property
    def methods(self) -> tuple[str, ...]:
        return ("multiview",) if self.views > 1 else ("loop", "fit")


CONDITIONS = dict(clean=Condition("clean"), medium=Condition("medium"), heavy=Condition("high"),
                  occluded=Condition("medium", occluded=True), off_centre=Condition("medium", jitter=0.25),
                  multiview=Condition("medium", views=4))
# The methods the prior is ablated in: 'loop' the paper's single-frame loop (guided DDIM), 'fit' the
# single-frame default (variant 'ours' on the built-in regressor's start: backend.engine.frame_fit, the
# prior as a score-distillation regulariser), 'multiview' Eq. 13.  Each is tuned on one condition.
METHODS = ("loop", "fit", "multiview")
TUNE_CONDITIONS = dict(loop="medium", fit="medium", multiview="multiview")
# COCO-17 keypoints of each limb (shoulder-elbow-wrist, hip-knee-ankle): one limb per occluded frame.
LIMBS = ((5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16))
# Grids per method: for the loops (guidance scale, (tau, DDIM stride), outer iterations), for the fit its
# prior weight (FrameFitOptions: 20).  Single-frame loop: the stride grows with tau so that one pass costs
# ~25 denoiser evaluations each way.  Multi-view: around the mode's default (tau 100, stride 10, 2 iterations).
GRIDS = dict(
    quick=dict(loop=dict(scale=(1.0,), tau_step=((10, 5),), iterations=(1, 2)),
               fit=dict(prior_weight=(20.0,)),
               multiview=dict(scale=(1.0,), tau_step=((10, 5),), iterations=(1,))),
    small=dict(loop=dict(scale=(0.5, 1.0, 2.0), tau_step=((50, 2), (100, 4)), iterations=(5, 10)),
               fit=dict(prior_weight=(0.0, 5.0, 10.0, 20.0, 40.0)),
               multiview=dict(scale=(0.25, 0.5, 1.0), tau_step=((50, 5), (100, 10)), iterations=(2, 4))),
    full=dict(loop=dict(scale=(0.25, 0.5, 1.0, 2.0, 4.0), tau_step=((20, 2), (50, 2), (100, 4), (200, 8)),
                        iterations=(3, 5, 10, 20)),
              fit=dict(prior_weight=(0.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 80.0)),
              multiview=dict(scale=(0.125, 0.25, 0.5, 1.0, 2.0), tau_step=((50, 5), (100, 10), (200, 20)),
                             iterations=(1, 2, 4))),
)
# Seed offsets: the tuning and report draws never share frames, cameras or noise.
SEED_TUNE, SEED_REPORT, SEED_UNTRAINED = 1000, 2000, 3000
METRICS = ("pa_mpjpe14", "mpjpe14")


@dataclass
class Settings:
    """A method's tuned constants: the loops' (scale, tau, step, iterations) or the fit's prior weight."""
    scale: float = 1.0
    tau: int = 50
    step: int = 2
    iterations: int = 10
    prior_weight: float | None = None

    def loop(self, base):
        return replace(base, guidance_scale=self.scale, tau=self.tau, step=self.step, iterations=self.iterations)

    def fit(self, base):
        return replace(base, fit=replace(base.fit, prior_weight=self.prior_weight))


def grid(name: str, method: str = "loop") -> list[Settings]:
    g = GRIDS[name][method]
    if method == "fit":
        return [Settings(prior_weight=w) for w in g["prior_weight"]]
    return [Settings(s, t, st, i) for s, (t, st), i in itertools.product(g["scale"], g["tau_step"], g["iterations"])]


# -- variants ------------------------------------------------------------------------------------------
def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of 0..n-1 with no fixed point (n >= 2; identity for n = 1). -> (n,) long."""
    if n < 2:
        return torch.arange(n)
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)         # each sample takes the context of the next one in a random cycle
    return perm


def untrained_like(prior, seed: int):
    """A denoiser of the prior's architecture with a seeded random initialisation (same device, eval)."""
    from backend.models.denoiser import Denoiser

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Denoiser(**prior.config)
    return model.to(next(prior.parameters()).device).eval()


def variant_inputs(name: str, engine, ctx: torch.Tensor, seed: int):
    """(eps model, context (N,C)) the loop is given for a variant."""
    if name == "trained":
        return engine.prior, ctx
    if name == "untrained":
        return untrained_like(engine.prior, SEED_UNTRAINED + seed), ctx
    if name == "null":
        return null_denoiser, ctx
    if name == "unconditional":
        return engine.prior, torch.zeros_like(ctx)
    if name == "shuffled":
        return engine.prior, ctx[derangement(len(ctx), torch.Generator().manual_seed(seed)).to(ctx.device)]
    raise ValueError(f"unknown variant {name!r}: one of {VARIANTS}")


# -- cases ---------------------------------------------------------------------------------------------
def occlude_limbs(keypoints: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A copy of keypoints (N,17,3) with one random whole limb per frame at confidence 0."""
    out = keypoints.clone()
    which = torch.randint(len(LIMBS), (len(out),), generator=generator)
    for i, limb in enumerate(which.tolist()):
        out[i, list(LIMBS[limb]), 2] = 0.0
    return out


@dataclass
class Case:
    """Simulated samples of one condition and seed, with the regressor's start and context.  Frame mode: N
    frames; multi-view: N instants x V views, the engine's view-major layout (V*N rows)."""
    obs: object            # problems.Observations (N,...) or (V,N,...)
    start: dict            # rotmats (V*N,24,3,3), betas (V*N,10), transl (V*N,3)
    context: torch.Tensor  # (V*N,C)
    gt: np.ndarray         # (V*N,24,3) camera-frame joints, metres
    views: int = 1


def _multiview_observations(sim_body, data: dict, instants: int, seed: int, level: str, views: int) -> dict:
    """Uncalibrated observations (N,V,...) of min(instants, len) random frames of ``data``, like
    bench.frame_observations (random shapes; every view its own camera around the person)."""
    from lab.sim.observations import multiview_observations

    rng = np.random.default_rng(seed)
    n = min(instants, len(data["global_orient"]))
    idx = np.sort(rng.choice(len(data["global_orient"]), n, replace=False))
    params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                  betas=rng.standard_normal((n, 10)), transl=np.zeros((n, 3), np.float32))
    return multiview_observations(sim_body, params, torch.Generator().manual_seed(seed), views, level,
                                  calibrated=False)


def make_case(engine, sim_body, data: dict, condition: str, frames: int, seed: int) -> Case:
    from backend.engine import problems

    cond = CONDITIONS[condition]
    if cond.views > 1:
        obs = _multiview_observations(sim_body, data, frames, seed, cond.level, cond.views)
        view_major = lambda x: x.transpose(0, 1).reshape(-1, *x.shape[2:])       # (N,V,...) -> (V*N,...)
    else:
        obs = bench.frame_observations(sim_body, data, frames, seed, cond.level,
                                       dict(principal_point_jitter=cond.jitter) if cond.jitter else None)
        view_major = lambda x: x
    kp = obs["keypoints"]
    if cond.occluded:
        kp = occlude_limbs(kp, torch.Generator().manual_seed(seed))
    t = lambda x: view_major(x).to(engine.device, torch.float32)
    flat = problems.Observations(t(kp), t(obs["focal_length"]), t(obs["principal_point"]), t(obs["image_size"]))
    est = engine.initial(flat.keypoints, flat.focal, flat.principal)
    # The built-in regressor's estimate, marked as such: the fit method fits it (frame_fit.REGRESSOR_SOURCE).
    start = dict(rotmats=est["rotmats"], betas=est["betas"], transl=est["transl"], source=REGRESSOR_SOURCE)
    o = flat.reshape(cond.views, -1) if cond.views > 1 else flat
    ctx = engine.context(flat.keypoints, flat.focal, flat.principal)
    return Case(o, start, ctx, view_major(obs["gt_joints"]).double().numpy(), cond.views)


def case_errors(engine, case: Case, res: dict) -> dict:
    """Per-sample errors {metric: (N,)} of a result (view-major rows) against the case's truth; multi-view:
    the mean over an instant's views, so that samples (and the intervals over them) are instants."""
    err = sample_joint_errors(bench.joints_of(engine, res), case.gt)
    return {m: e.reshape(case.views, -1).mean(0) for m, e in err.items()}


def refine_errors(engine, case: Case, variant: str, settings: Settings, seed: int, method: str = "loop") -> dict:
    """Per-sample errors {metric: (N,)} of a method (the single-frame loop, the single-frame fit or Eq. 13)
    run on the case with a variant's denoiser and context."""
    from backend.engine.modes import frame, multiview
    from backend.engine.options import EngineOptions

    options = EngineOptions()
    eps_model, ctx = variant_inputs(variant, engine, case.context, seed)
    start = dict(case.start, context=ctx)
    if method == "multiview":
        mode = options.for_mode("multiview")
        res = multiview.refine(engine, case.obs, start, replace(mode, loop=settings.loop(mode.loop)),
                               denoiser=eps_model)
    elif method == "fit":
        mode = options.for_mode("frame")
        res = frame.refine(engine, case.obs, start, replace(mode, frame_fit=settings.fit(mode.frame_fit)),
                           denoiser=eps_model)
    else:
        mode = options.for_mode("frame")
        res = frame.refine(engine, case.obs, start, replace(mode, loop=settings.loop(mode.loop), frame_fit=None),
                           denoiser=eps_model)
    return case_errors(engine, case, res)


# -- statistics ----------------------------------------------------------------------------------------
def paired_interval(diffs: np.ndarray, level: float = 0.95) -> dict:
    """Mean of paired differences (N,) with a two-sided Student-t interval: mean +- t_{N-1} s / sqrt(N)."""
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=np.float64)
    mean = float(d.mean())
    if len(d) < 2:
        return dict(mean=mean, lo=float("nan"), hi=float("nan"), n=len(d))
    half = float(student_t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return dict(mean=mean, lo=mean - half, hi=mean + half, n=len(d))


# -- the ablation --------------------------------------------------------------------------------------
@dataclass
class Setup:
    """What every job needs: the engine, the simulator's body model (CPU) and the two subject parts."""
    engine: object
    sim_body: object
    parts: dict            # 'tuning' / 'report' -> load_split-like dict


def tuning_score(setup: Setup, method: str, variant: str, settings: Settings, frames: int, seeds) -> float:
    """Mean PA-MPJPE-14 of a method and variant at some settings on the method's tuning condition, tuning
    subjects, pooled over seeds."""
    e = setup.engine
    err = [refine_errors(e, make_case(e, setup.sim_body, setup.parts["tuning"], TUNE_CONDITIONS[method], frames,
                                      SEED_TUNE + s), variant, settings, s, method)["pa_mpjpe14"] for s in seeds]
    return float(np.concatenate(err).mean())


def condition_errors(setup: Setup, condition: str, seed: int, variants, chosen: dict, frames: int) -> dict:
    """Per-sample errors of the start and of every method and variant at its chosen settings
    (chosen[method][variant]): one condition and seed, report subjects.
    -> {'start' | (method, variant): {metric: (N,)}}."""
    e = setup.engine
    case = make_case(e, setup.sim_body, setup.parts["report"], condition, frames, SEED_REPORT + seed)
    out = dict(start=case_errors(e, case, case.start))
    for method in (m for m in CONDITIONS[condition].methods if m in chosen):
        for v in variants:
            out[(method, v)] = refine_errors(e, case, v, Settings(**chosen[method][v]["settings"]), seed, method)
    return out


def tune(mapper, variants, grids: dict, frames: int, seeds, progress=print) -> dict:
    """Per method and variant, the settings with the lowest mean PA-MPJPE-14 on the method's tuning
    condition (TUNE_CONDITIONS, tuning subjects).  grids: {method: [Settings]} -> {method: {variant: ...}}.

    mapper(fn, jobs) -> [fn(setup, *job) for job in jobs] (in this process or a pool's)."""
    jobs = [(method, v, st, frames, list(seeds)) for method, settings in grids.items()
            for v in variants for st in settings]
    scores = mapper(tuning_score, jobs)
    chosen = {}
    for method in grids:
        for v in variants:
            grid_rows = [dict(settings=st.__dict__, pa_mpjpe14=round(sc, 3))
                         for (jm, jv, st, _, _), sc in zip(jobs, scores) if jm == method and jv == v]
            best = min(grid_rows, key=lambda r: r["pa_mpjpe14"])
            chosen.setdefault(method, {})[v] = dict(best, grid=grid_rows)
            progress(f"  tuned {method} {v}: {best['settings']} -> {best['pa_mpjpe14']:.2f} mm (tuning subjects)")
    return chosen


def evaluate(mapper, variants, conditions, chosen: dict, frames: int, seeds, progress=print) -> list[dict]:
    """One row per condition, method and variant (and one for the start): mean errors, and paired differences
    to 'trained' in the same method with 95% CIs over all samples of all seeds."""
    jobs = [(c, s, list(variants), chosen, frames) for c in conditions for s in seeds]
    results = mapper(condition_errors, jobs)
    rows = []
    for cond in conditions:
        per_seed = [r for (c, *_), r in zip(jobs, results) if c == cond]
        pooled = lambda who, m: np.concatenate([r[who][m] for r in per_seed])
        row = lambda method, v, who: dict(condition=cond, method=method, variant=v, n=len(pooled(who, "pa_mpjpe14")),
                                          **{m: round(float(pooled(who, m).mean()), 2) for m in METRICS})
        rows.append(row("", "start", "start"))
        for method in (m for m in CONDITIONS[cond].methods if m in chosen):
            for v in variants:
                r = row(method, v, (method, v))
                if v != "trained" and "trained" in variants:
                    for m in METRICS:
                        ci = paired_interval(pooled((method, v), m) - pooled((method, "trained"), m))
                        r[f"diff_{m}"] = {k: (round(x, 2) if isinstance(x, float) else x) for k, x in ci.items()}
                rows.append(r)
        progress(f"  {cond}: " + ", ".join(f"{r['method']} {r['variant']} {r['pa_mpjpe14']:.1f}" for r in rows
                                           if r["condition"] == cond))
    return rows


# -- running jobs: in this process, or in a pool of processes that each load the engine ---------------
_WORKER_SETUP: Setup | None = None


def make_setup(engine, parts: dict, landmarks: str = "regressor") -> Setup:
    """``landmarks``: the simulated detector's keypoints (lab.sim.landmarks.LANDMARK_CHOICES)."""
    import copy

    # The simulator draws on the CPU.
    sim_body = engine.body if engine.device.type == "cpu" else copy.deepcopy(engine.body).cpu()
    return Setup(engine, landmark_body(sim_body, landmarks), parts)


def load_setup(device: str | None, dataset=None, landmarks: str = "regressor") -> Setup:
    """The committed engine on ``device`` and the validation split cut into its tuning and report parts."""
    from backend.engine.api import Engine

    return make_setup(Engine.load(device=device), {k: bench.load_validation(k, dataset) for k in ("tuning", "report")},
                      landmarks)


def _init_worker(device, dataset, threads: int, landmarks: str = "regressor") -> None:
    global _WORKER_SETUP
    if threads > 0:
        torch.set_num_threads(threads)
    _WORKER_SETUP = load_setup(device, dataset, landmarks)


def _in_worker(fn, job):
    return fn(_WORKER_SETUP, *job)


def local_mapper(setup: Setup):
    # No torch.no_grad here: the loop differentiates the guidance loss.
    return lambda fn, jobs: [fn(setup, *job) for job in jobs]


def pool_mapper(pool):
    """Jobs spread over a ProcessPoolExecutor whose workers ran _init_worker; results in job order."""
    def mapper(fn, jobs):
        return list(pool.map(_in_worker, [fn] * len(jobs), jobs))
    return mapper


def _ci(d: dict | None) -> str:
    return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]" if d else ""


def _describe(name: str, c: Condition) -> str:
    return (f"{name} = noise `{c.level}`"
            + (f", principal point moved up to +-{c.jitter:.0%} of the frame from the person" if c.jitter else "")
            + (", one whole limb (shoulder/hip, elbow/knee, wrist/ankle) at confidence 0" if c.occluded else "")
            + (f", {c.views} uncalibrated views per instant (Eq. 13; errors averaged over the views, "
               "samples are instants)" if c.views > 1 else ""))


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        "# Ablation: what the learned prior contributes (single-frame loop and fit, uncalibrated views)",
        "",
        f"Size: {cfg['frames']} frames (multi-view: instants) x {len(cfg['seeds'])} seeds per condition "
        f"({cfg['grid']} grid"
        f"{', --quick: numbers mean nothing' if cfg['quick'] else ''}); {report['seconds']:.0f} s on "
        f"{report['environment']['device']} ({report['environment']['threads']} threads).",
        f"Command: `{report['command']}`; seeds {cfg['seeds']} (tuning draws: seed + {SEED_TUNE}, report: "
        f"seed + {SEED_REPORT}).",
        f"Settings tuned on subjects {bench.SUBJECT_PARTS['tuning']} at condition "
        + " / ".join(f"`{c}` ({m})" for m, c in TUNE_CONDITIONS.items() if m in report["chosen"])
        + f"; reported on subjects {bench.SUBJECT_PARTS['report']}. Start: our regressor (in every view).",
        "Conditions: " + "; ".join(_describe(k, c) for k, c in CONDITIONS.items() if k in cfg["conditions"]) + ".",
        "Methods: loop = the paper's single-frame loop (guided DDIM); fit = the single-frame default (variant "
        "'ours' on the built-in regressor's start: Adam on keypoints with the prior as a score-distillation "
        "regulariser, backend/engine/frame_fit.py); multiview = Eq. 13.",
        "Variants: trained prior; untrained (same architecture, seeded init); null (eps = 0); unconditional "
        "(context zeroed: the prior was trained with context dropout to zeros); shuffled (another frame's context).",
        "Differences: variant minus trained on the same frame and seed, mean and 95% Student-t interval over "
        "all frames pooled across seeds (negative = the variant is better). Errors in mm.",
        "",
        "## Chosen settings",
        "",
        "| method | variant | guidance scale | tau | stride | iterations | prior weight | tuning PA-MPJPE-14 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, per_variant in report["chosen"].items():
        for v, c in per_variant.items():
            s = c["settings"]
            loop = [s["scale"], s["tau"], s["step"], s["iterations"], ""] if s.get("prior_weight") is None \
                else ["", "", "", "", s["prior_weight"]]
            lines.append(f"| {method} | {v} | " + " | ".join(map(str, loop)) + f" | {c['pa_mpjpe14']} |")
    lines += ["", "## Results (report subjects)", "",
              "| condition | method | variant | n | PA-MPJPE-14 | MPJPE-14 | diff PA-MPJPE-14 [95% CI] "
              "| diff MPJPE-14 [95% CI] |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['condition']} | {r['method']} | {r['variant']} | {r['n']} | {r['pa_mpjpe14']:.2f} | "
                     f"{r['mpjpe14']:.2f} | "
                     f"{_ci(r.get('diff_pa_mpjpe14'))} | {_ci(r.get('diff_mpjpe14'))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, *, engine=None, data: dict | None = None) -> int:
    """``python -m lab ablate``.  engine / data (one load_split-like dict used for both parts) can be
    injected (tests); otherwise the validation split is cut into bench.SUBJECT_PARTS."""
    import argparse
    import contextlib

    p = argparse.ArgumentParser(prog="python -m lab ablate", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=32, help="frames per condition and seed (default 32)")
    p.add_argument("--tune-frames", type=int, default=None, help="tuning frames per seed (default: --frames)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="methods the prior is ablated in (each where its conditions are asked for)")
    p.add_argument("--grid", choices=["small", "full"], default="small")
    p.add_argument("--quick", action="store_true", help="tiny sizes and a one-point loop (tests, smoke runs)")
    p.add_argument("--dataset", default=None, help="folder with cmu_smpl_val.npz (default cache/dataset)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (0 = torch's default)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes over (variant, setting) and (condition, seed) jobs, each loading the engine "
                        "(e.g. 16 x --threads 1 on a 16-core machine; with cuda they share the GPU)")
    p.add_argument("--landmarks", default="regressor", choices=LANDMARK_CHOICES,
                   help="simulated keypoints: the body model's own (regressor) or BlazePose's (lab.sim.landmarks)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.frames, args.grid = min(args.frames, 4), "quick"
    variants = list(dict.fromkeys(["trained", *args.variants]))   # differences are taken against 'trained'
    try:
        if data is not None:
            from backend.engine.api import Engine

            setup = make_setup(engine or Engine.load(device=args.device), dict(tuning=data, report=data),
                               args.landmarks)
        elif engine is not None:
            raise ValueError("an injected engine needs injected data")
        else:
            setup = load_setup(args.device, args.dataset, args.landmarks)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    say = lambda s: print(s, flush=True)
    methods = [m for m in dict.fromkeys(m for c in args.conditions for m in CONDITIONS[c].methods)
               if m in args.methods]
    grids = {m: grid(args.grid, m) for m in methods}
    say(f"ablate: {len(variants)} variants x {len(args.conditions)} conditions, {args.frames} frames x "
        f"{len(args.seeds)} seeds, {args.grid} grid ({', '.join(f'{m} {len(g)}' for m, g in grids.items())} "
        f"settings) on {setup.engine.device}, {args.workers} worker(s)")
    with contextlib.ExitStack() as stack:
        if args.workers > 1 and data is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = stack.enter_context(ProcessPoolExecutor(
                args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                initargs=(args.device, args.dataset, args.threads, args.landmarks)))
            mapper = pool_mapper(pool)
        else:
            mapper = local_mapper(setup)
        chosen = tune(mapper, variants, grids, args.tune_frames or args.frames, args.seeds, say)
        rows = evaluate(mapper, variants, args.conditions, chosen, args.frames, args.seeds, say)
    engine = setup.engine
    report = dict(command="python -m lab ablate " + " ".join(sys.argv[1:] if argv is None else argv),
                  config=dict(frames=args.frames, tune_frames=args.tune_frames or args.frames, seeds=args.seeds,
                              conditions=args.conditions, variants=variants, methods=methods, grid=args.grid,
                              quick=args.quick, landmarks=args.landmarks,
                              workers=args.workers),
                  environment=bench.environment(engine.device), models=engine.meta, chosen=chosen, rows=rows,
                  seconds=round(time.perf_counter() - t0, 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text(markdown(report))
    (out / "ablation.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))
    print(f"wrote {out / 'ablation.md'} and {out / 'ablation.json'}")
    return 0
