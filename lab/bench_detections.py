"""Video methods on REAL detector keypoints: BlazePose on rendered held-out motion.

    python -m lab calibrate-detector render --split val --excerpts 10 --length 64 --chunk 5 --seed 5 \\
        --out cache/calibration/val64                     # ~8 min on 2 cores: the free body model in Workbench
    python -m lab bench-detections FOLDER [FOLDER ...] [--subjects report|tuning|all] [--out DIR]

The detections and truths of three renders are committed (the chunk files the render wrote, no images),
so the tables are reproducible without Blender: docs/benchmark/detections_val64 (seed 5: 10 excerpts x
64 frames of all validation subjects, 464 KB), detections_val64_tuning (`--subjects tuning --excerpts 12
--chunk 4 --seed 7`: for choosing settings) and detections_val64_report (`--subjects report --excerpts 12
--chunk 4 --seed 8`: for reporting).

The simulator's noise (even its "blazepose" preset) is a model of the detector; this measures the
engine on the detector itself.  Each excerpt: BlazePose's COCO-17 detections of a rendered
validation-subject clip (lab.sim.calibrate), the true joints in that camera's frame.  Methods:
the regressor's start, per-frame ScoreHMR + filter, temporal SMPLify, ScoreHMR (paper), ScoreHMR
(ours, the default), ScoreHMR with the learned motion prior (then the same final fit).  Measures:
PA-MPJPE-14 / MPJPE-14 (mm), acceleration error pelvis-relative and of camera-frame joints (mm/frame^2),
means over excerpts.  Excerpts where BlazePose missed the person in some frame are left out
(their start means nothing there).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

METHODS = ("start", "per-frame ScoreHMR + filter", "temporal SMPLify", "ScoreHMR (paper)", "ScoreHMR (ours)",
           "ScoreHMR (motion prior)")


def excerpt_results(engine, obs: dict) -> dict[str, np.ndarray]:
    """Every method's camera-frame joints (F,24,3) on one excerpt's OBS."""
    from backend.engine.api import EngineOptions
    from backend.engine.baselines import run_baseline
    from backend.models.motion import MOTION_PRIOR_PATH

    paper = engine.run(obs, None, "video", EngineOptions(variant="paper"))
    return {"start": paper["init_joints"],
            "per-frame ScoreHMR + filter": run_baseline(engine, obs, None, "video", "per-frame-filter")["joints"],
            "temporal SMPLify": run_baseline(engine, obs, None, "video", "smplify")["joints"],
            "ScoreHMR (paper)": paper["joints"],
            "ScoreHMR (ours)": engine.run(obs, None, "video", EngineOptions())["joints"],
            "ScoreHMR (motion prior)": engine.run(obs, None, "video",
                                                  EngineOptions(motion_prior=str(MOTION_PRIOR_PATH)))["joints"]}


def evaluate(engine, folders: list[Path], subjects) -> dict:
    """Mean scores per method over the usable excerpts of ``subjects`` in the rendered ``folders``."""
    from backend.body.body_model import BodyModel
    from lab.bench_common import video_errors
    from lab.sim.calibrate import excerpt_obs, load_chunks, truth_joints

    body = BodyModel.load(None, dtype=torch.float64)
    rows = {m: [] for m in METHODS}
    names, frames = [], set()
    t0 = time.time()
    for folder in folders:
        data = load_chunks(folder)
        truth = truth_joints(body, data)
        subject = [int(c.split("_")[0]) for c in data["clip_ids"]]
        seen = (data["detected"][:, :, :17, 2] > 0).any(-1).all(-1)             # (E,) person in every frame
        for i in (i for i in range(len(truth)) if subject[i] in subjects and seen[i]):
            for method, joints in excerpt_results(engine, excerpt_obs(data, i, "video")).items():
                rows[method].append(video_errors(joints[None], truth[i][None]))
            names.append(f"{Path(folder).name}/{data['clip_ids'][i]}")
            frames.add(int(truth.shape[1]))
    keys = ("pa_mpjpe14", "mpjpe14", "accel", "accel_abs")
    mean = {m: {k: round(float(np.mean([r[k] for r in v])), 2) for k in keys} for m, v in rows.items() if v}
    return dict(methods=mean, excerpts=names, frames=sorted(frames), seconds=round(time.time() - t0, 1))


def markdown(report: dict, command: str) -> str:
    head = ("| method | PA-MPJPE-14 | MPJPE-14 | accel | accel abs |\n|---|---|---|---|---|\n")
    body = "".join(f"| {m} | {r['pa_mpjpe14']} | {r['mpjpe14']} | {r['accel']} | {r['accel_abs']} |\n"
                   for m, r in report["methods"].items())
    return (f"# Video on real BlazePose detections\n\n`{command}`\n\n{len(report['excerpts'])} excerpts x "
            f"{'/'.join(map(str, report['frames']))} frames ({', '.join(report['excerpts'])}), "
            f"{report['seconds']} s on one thread. "
            f"mm and mm/frame^2 (accel: pelvis-relative joints; accel abs: camera-frame joints).\n\n{head}{body}")


def main(argv: list[str] | None = None) -> int:
    import sys

    from backend.engine.api import Engine
    from lab.bench_common import SUBJECT_PARTS

    p = argparse.ArgumentParser(prog="python -m lab bench-detections", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+",
                   help="rendered detections (python -m lab calibrate-detector render), one or more folders")
    p.add_argument("--subjects", default="report", choices=[*SUBJECT_PARTS, "all"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("docs/benchmark"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    subjects = sorted({s for v in SUBJECT_PARTS.values() for s in v}) if args.subjects == "all" \
        else SUBJECT_PARTS[args.subjects]
    report = evaluate(Engine.load(device="cpu"), args.folders, subjects)
    command = "python -m lab bench-detections " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"detections_video_{args.subjects}"
    stem.with_suffix(".json").write_text(json.dumps(dict(report, command=command), indent=1))
    stem.with_suffix(".md").write_text(markdown(report, command))
    print(markdown(report, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
