"""Settings of the default video path on the tuning subjects: the loop's tau / stride / outer iterations and the
final fit's translation anchor (backend.engine.polish.PolishOptions.transl_anchor), for either per-frame prior.
Per setting: PA-MPJPE-14 of the whole default video path on simulated clips and real BlazePose excerpts, CPU
time per frame, and how far a sub-pixel change of the input moves the output (the example shot's first 32
frames).

    python -m lab.scripts.video_grid [--priors gmm learned] [--anchors 0 100 1000 10000] [--loops 50:2:10 ...]
                                     [--clips 12] [--dataset cache/dataset]

Tuning subjects only; prints a markdown table.  Every combination of --priors x --loops x --anchors runs."""
from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from backend.engine.api import Engine, EngineOptions
from backend.engine.modes import video
from backend.engine.options import VIDEO_LOOP
from backend.engine.polish import PolishOptions
from backend.engine.scorehmr import LoopOptions
from backend.io.shot import load_shot
from lab import bench
from lab.ablate import SEED_TUNE
from lab.ablate_paths import DETECTIONS, clip_errors, joints, real_clips, sim_clips
from lab.bench_common import SUBJECT_PARTS

KEYPOINTS = Path(__file__).resolve().parents[2] / "examples" / "shot" / "keypoints.npz"


def sub_pixel_change_mm(engine, options: EngineOptions) -> float:
    """The largest joint change (mm) between two refinements of the example shot's first 32 frames whose inputs
    differ by float32 rounding (5e-7 m in the start's translation, 1.4e-5 px in the focal length)."""
    obs = load_shot(None, KEYPOINTS, (0, 32)).obs
    start = engine.run(obs, None, "video", EngineOptions(loop=LoopOptions(iterations=0)))
    init = dict(global_orient=start["global_orient"], body_pose=start["body_pose"], betas=start["betas"].mean(0),
                transl=start["transl"])
    nudged = dict(obs, focal_length=np.asarray(obs["focal_length"], np.float64) + 1.4e-5)
    a = engine.run(obs, init, "video", options)
    b = engine.run(nudged, dict(init, transl=init["transl"] + 5e-7), "video", options)
    return float(1000 * np.linalg.norm(a["joints"] - b["joints"], axis=-1).max())


def loop_of(text: str) -> LoopOptions:
    """'tau:stride:iterations' -> VIDEO_LOOP with those."""
    tau, step, iterations = (int(v) for v in text.split(":"))
    return replace(VIDEO_LOOP, tau=tau, step=step, iterations=iterations)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--priors", nargs="+", default=["gmm"], choices=["gmm", "learned"])
    p.add_argument("--anchors", type=float, nargs="+", default=[PolishOptions().transl_anchor])
    default_loop = f"{VIDEO_LOOP.tau}:{VIDEO_LOOP.step}:{VIDEO_LOOP.iterations}"
    p.add_argument("--loops", nargs="+", default=[default_loop],
                   help="tau:stride:iterations of the loop (the rest VIDEO_LOOP's)")
    p.add_argument("--clips", type=int, default=12, help="simulated tuning clips")
    p.add_argument("--no-sub-pixel", action="store_true")
    p.add_argument("--dataset", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    engine = Engine.load(None)
    data = bench.load_validation("tuning", args.dataset)
    cases = dict(sim=sim_clips(engine, engine.body, data, args.clips, 64, SEED_TUNE, "medium"),
                 real=real_clips(engine, DETECTIONS["tuning"], SUBJECT_PARTS["tuning"]))
    frames = sum(len(c.gt) for clips in cases.values() for c in clips)
    print("| video prior | loop tau:stride:iterations | transl anchor | sim PA-MPJPE-14 | real PA-MPJPE-14 | "
          "CPU ms/frame | sub-pixel change mm |")
    print("|---|---|---|---|---|---|---|")
    for prior, loop, anchor in itertools.product(args.priors, args.loops, args.anchors):
        options = EngineOptions(video_prior=prior, loop=loop_of(loop), polish=PolishOptions(transl_anchor=anchor))
        mode = options.for_mode("video")
        cpu = time.process_time()
        errs = {k: np.mean([clip_errors(joints(engine, video.refine(engine, c.obs, c.start, mode)), c)["pa_mpjpe14"]
                            for c in clips]) for k, clips in cases.items()}
        ms = 1000 * (time.process_time() - cpu) / frames
        change = "" if args.no_sub_pixel else f"{sub_pixel_change_mm(engine, options):.3f}"
        print(f"| {prior} | {loop} | {anchor:g} | {errs['sim']:.3f} | {errs['real']:.3f} | {ms:.1f} | {change} |",
              flush=True)
    print(f"({len(cases['sim'])} simulated clips x 64 frames, medium noise, seed {SEED_TUNE}; {len(cases['real'])} "
          f"real excerpts; {time.perf_counter() - t0:.0f} s, 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
