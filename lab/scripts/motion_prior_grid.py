"""Loop settings of the motion prior on the benchmark's video clips (docs/motion_prior.md).

    OMP_NUM_THREADS=1 python lab/scripts/motion_prior_grid.py --subjects tuning --videos 3 \\
        --baselines start "ScoreHMR (paper)" "ScoreHMR (ours)" \\
        --grid '[{"tau": 200, "step": 20, "iterations": 5}, {"overlap": 8}, {"no_temporal": true}]'

The clips, noise and starts are exactly the bench's video table's (lab.bench, seed 0, medium);
each grid entry sets LoopOptions fields (tau, step, iterations, guidance_scale, ...) over MOTION_LOOP,
EngineOptions fields (overlap, ...) and ``no_temporal`` (the temporal guidance term off).  Prints one
JSON row per method: the bench's video errors (mm, mm/frame^2) and frames/s."""
import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from backend.engine.api import Engine, EngineOptions
from backend.engine.gmm import GMM
from backend.engine.modes import motion_video
from backend.engine.scorehmr import LoopOptions
from backend.models.motion import MOTION_PRIOR_PATH
from lab import bench as B, bench_video as BV
from lab.data.dataset import load_split, window_starts
from lab.sim.observations import video_observations


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--subjects", default="tuning", choices=list(B.SUBJECT_PARTS))
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--video-length", type=int, default=96)
    p.add_argument("--prior", default=str(MOTION_PRIOR_PATH))
    p.add_argument("--baselines", nargs="*", default=[], help="methods of the bench's video table")
    p.add_argument("--grid", default="[{}]", help="JSON list of settings")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = B.select_subjects(load_split("val"), B.SUBJECT_PARTS[args.subjects])
    engine = Engine.load(device="cpu")
    cfg = B.BenchConfig(videos=args.videos, video_length=args.video_length, subjects=args.subjects)
    bench = B.Bench(engine, data, B.MaxMixturePrior(GMM.load(str(B.GMM_PATH))), cfg)
    # The bench's video clips (Bench.video): same seed, same draws in the same order.
    rng = np.random.default_rng(cfg.seed + B.SEED_VIDEO)
    starts = window_starts(data, cfg.video_length, cfg.video_length)
    chosen = np.sort(rng.choice(starts, min(cfg.videos, len(starts)), replace=False))
    idx = chosen[:, None] + np.arange(cfg.video_length)[None]
    obs = video_observations(bench.sim_body, bench._params(idx, rng.standard_normal((len(chosen), 10)), True),
                             torch.Generator().manual_seed(cfg.seed + B.SEED_VIDEO), cfg.level, fps=B.FPS)
    gt = obs["gt_joints"].double().numpy()
    clips = [BV.clip_methods(bench, obs, i) for i in range(len(chosen))]

    def row(name, run):
        t0 = time.perf_counter()
        preds = [B.joints_of(engine, run(clip, methods)) for clip, methods in clips]
        fps = len(chosen) * cfg.video_length / (time.perf_counter() - t0)
        print(json.dumps(dict(method=name, **B.video_errors(np.stack(preds), gt), frames_per_s=round(fps, 2))),
              flush=True)

    for name in args.baselines:
        row(name, lambda clip, methods, name=name: methods[name][0]())
    for setting in json.loads(args.grid):
        loop_keys = {k: v for k, v in setting.items() if k in LoopOptions.__dataclass_fields__}
        opts = EngineOptions(motion_prior=args.prior,
                             **{k: v for k, v in setting.items() if k not in loop_keys and k != "no_temporal"})
        loop, w = opts.resolved("video")
        loop = replace(loop, **loop_keys)
        if setting.get("no_temporal"):
            w = replace(w, temporal=0.0)
        settings = replace(opts.for_mode("video"), loop=loop, weights=w)
        row(f"motion prior {json.dumps(setting)}", lambda clip, methods, settings=settings: motion_video.refine(
            engine, clip, methods["start"][0](), settings))


if __name__ == "__main__":
    main()
