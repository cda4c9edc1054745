"""Video methods on REAL detector keypoints: BlazePose on rendered held-out motion.

    python -m lab calibrate-detector render --split val --excerpts 10 --length 64 --chunk 5 --seed 5 \\
        --out cache/calibration/val64                     # ~8 min on 2 cores: the free body model in Workbench
    python -m lab bench-detections FOLDER [FOLDER ...] [--subjects report|tuning|all] [--focal known unknown] \\
        [--out DIR] [--name STEM]

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
the root (pelvis) depth error relative to the true depth (%), means over frames.

Focal length: each render's camera has its own focal length (35-85 mm full-frame equivalent across the
width: in the committed renders fields of view of 25-83 deg across the long side, mean 41-44).  'known'
tells the engine that focal length; 'unknown' tells it nothing, so it assumes the CLI's default field of
view (backend.contract.observations.DEFAULT_FOV_DEG) exactly as `python -m backend` does when the user
gives no focal length.  The renders are the same in both settings: unlike the simulator's
unknown-focal table (lab.bench, section 'focal'), the true field of view is the render's, not a fresh draw.

Missed frames: excerpts where BlazePose found no one in some frames are kept; the engine bridges those
frames (backend.engine.gaps), the baselines run on them as `python -m backend --method` does.  The
table counts those excerpts and frames; errors are over all frames and, separately, over the frames
with a detection (acceleration: over the frames whose neighbours on both sides have one too).
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


def excerpt_observations(chunk: dict, i: int, focal: str):
    """Excerpt i's validated video OBS with the render's focal length ('known') or without one ('unknown':
    validation then assumes the CLI's default field of view, as for a user who gives no focal length)."""
    from backend.contract.observations import validate_observations
    from lab.bench_common import FOCAL_SETTINGS
    from lab.sim.calibrate import excerpt_obs

    if focal not in FOCAL_SETTINGS:
        raise ValueError(f"focal setting {focal!r}; expected one of {FOCAL_SETTINGS}")
    obs = excerpt_obs(chunk, i, "video")
    if focal == "known":
        return obs
    arrays = obs.file_arrays("video")
    del arrays["focal_length"]
    return validate_observations(arrays, "video")


def detected_frames(chunk: dict) -> np.ndarray:
    """(E,L) bool: frames where BlazePose found the person (any COCO-17 point with confidence)."""
    return (chunk["detected"][:, :, :17, 2] > 0).any(-1)


def frame_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """One excerpt's per-frame errors: pred, gt (F,24,3) -> pa_mpjpe14, mpjpe14 (mm) and depth (relative pelvis
    depth error) (F,), accel, accel_abs (mm/frame^2) (F-2,) at the interior frames."""
    from backend.metrics import accel_error, sample_joint_errors

    rel = lambda j: j - j[:, :1]
    per = sample_joint_errors(pred, gt)
    return dict(pa_mpjpe14=per["pa_mpjpe14"], mpjpe14=per["mpjpe14"], depth=pred[:, 0, 2] / gt[:, 0, 2] - 1,
                accel=accel_error(rel(pred), rel(gt)), accel_abs=accel_error(pred, gt))


PER_FRAME = ("pa_mpjpe14", "mpjpe14", "depth")        # frame_errors' (F,) entries; accel, accel_abs are (F-2,)


def counted(key: str, seen: np.ndarray) -> np.ndarray:
    """The frames of one excerpt's frame_errors[key] that count as detected: (F,) seen, or for the accelerations
    (F-2,) the interior frames seen with both neighbours."""
    return seen if key in PER_FRAME else seen[:-2] & seen[1:-1] & seen[2:]


def pooled(per_excerpt: list[dict], seen: list[np.ndarray]) -> dict:
    """Means over the frames of all excerpts (frame_errors dicts) and, suffixed '_detected', over the frames
    with a detection (``seen`` (F,) bool per excerpt); the median and worst excerpt's mean root depth error."""
    out = {}
    for sfx in ("", "_detected"):
        cat = lambda k: np.concatenate([e[k][counted(k, s)] if sfx else e[k] for e, s in zip(per_excerpt, seen)])
        out.update({f"{k}{sfx}": round(float(cat(k).mean()), 2) for k in ("pa_mpjpe14", "mpjpe14", "accel",
                                                                         "accel_abs")})
        depth = cat("depth")
        out[f"depth_pct{sfx}"] = round(100 * float(np.abs(depth).mean()), 2)
        out[f"depth_bias_pct{sfx}"] = round(100 * float(depth.mean()), 2)
    per = [100 * float(np.abs(e["depth"]).mean()) for e in per_excerpt]
    out["depth_pct_median_excerpt"] = round(float(np.median(per)), 2)
    out["depth_pct_worst_excerpt"] = round(max(per), 2)
    return out


def evaluate(engine, folders: list[Path], subjects, focal_settings=("known", "unknown"), results=None) -> dict:
    """Scores per focal setting and method over every excerpt of ``subjects`` in the rendered ``folders``
    (those where BlazePose missed the person in some frames included, and counted).  ``results``: the
    function giving every method's joints of one OBS (default excerpt_results; tests pass their own)."""
    from backend.body.body_model import BodyModel
    from lab.sim.calibrate import load_chunks, truth_joints

    results = results or excerpt_results
    body = BodyModel.load(None, dtype=torch.float64)
    per: dict[str, dict[str, list]] = {s: {m: [] for m in METHODS} for s in focal_settings}
    names, frames, seen, missed = [], set(), [], {}
    t0 = time.time()
    for folder in folders:
        data = load_chunks(folder)
        truth = truth_joints(body, data)
        subject = [int(c.split("_")[0]) for c in data["clip_ids"]]
        detected = detected_frames(data)                                      # (E,L)
        for i in (i for i in range(len(truth)) if subject[i] in subjects):
            for setting in focal_settings:
                for method, joints in results(engine, excerpt_observations(data, i, setting)).items():
                    per[setting][method].append(frame_errors(joints, truth[i]))
            name = f"{Path(folder).name}/{data['clip_ids'][i]}"
            names.append(name)
            seen.append(detected[i])
            frames.add(int(truth.shape[1]))
            if not detected[i].all():
                missed[name] = int((~detected[i]).sum())
    scores = {s: {m: pooled(v, seen) for m, v in by_method.items() if v} for s, by_method in per.items()}
    # Per excerpt (in ``names`` order): one bad excerpt can move a mean over a few dozen.
    pa14 = {s: {m: [round(float(e["pa_mpjpe14"].mean()), 1) for e in v] for m, v in by_method.items() if v}
            for s, by_method in per.items()}
    return dict(focal=scores, excerpts=names, frames=sorted(frames), frames_total=int(sum(len(s) for s in seen)),
                missed=missed, pa_mpjpe14_per_excerpt=pa14, seconds=round(time.time() - t0, 1))


COLUMNS = (("pa_mpjpe14", "PA-MPJPE-14"), ("mpjpe14", "MPJPE-14"), ("accel", "accel"), ("accel_abs", "accel abs"),
           ("depth_pct", "root depth err %"), ("depth_bias_pct", "root depth bias %"))


def markdown(report: dict, command: str) -> str:
    """The report's tables: per focal setting, every method over all frames and over frames with a detection."""
    missed = report["missed"]
    lines = [
        "# Video on real BlazePose detections", "", f"`{command}`", "",
        f"{len(report['excerpts'])} excerpts x {'/'.join(map(str, report['frames']))} frames "
        f"({', '.join(report['excerpts'])}), {report['seconds']} s on one thread. "
        f"Excerpts with frames where BlazePose found no one: {len(missed)} "
        f"({', '.join(f'{k}: {v}' for k, v in missed.items()) or 'none'}); frames without a detection: "
        f"{sum(missed.values())} of {report['frames_total']} (bridged by the engine, kept in every table).",
        "mm and mm/frame^2 (accel: pelvis-relative joints; accel abs: camera-frame joints); root depth err: mean "
        "|pelvis depth error| relative to the true depth, bias: its signed mean (+ = too far); median / worst "
        "excerpt: of the per-excerpt mean root depth error.",
        "known focal: the engine is told the render's focal length; unknown: it is told none and assumes the "
        "CLI's default field of view (the renders are the same).", ""]
    for setting, methods in report["focal"].items():
        for subset, sfx in (("all frames", ""), ("frames with a detection", "_detected")):
            if subset != "all frames" and not missed:
                continue
            extra = [("depth_pct_median_excerpt", "depth median excerpt %"),
                     ("depth_pct_worst_excerpt", "depth worst excerpt %")] if not sfx else []
            cols = [(k + sfx, h) for k, h in COLUMNS] + extra
            lines += [f"## {setting} focal, {subset}" + (" (the same: no frame missed)" if not missed else ""), "",
                      "| method | " + " | ".join(h for _, h in cols) + " |", "|---|" + "---|" * len(cols),
                      *(f"| {m} | " + " | ".join(str(r[k]) for k, _ in cols) + " |" for m, r in methods.items()),
                      ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import sys

    from backend.engine.api import Engine
    from lab.bench_common import FOCAL_SETTINGS, SUBJECT_PARTS

    p = argparse.ArgumentParser(prog="python -m lab bench-detections", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+",
                   help="rendered detections (python -m lab calibrate-detector render), one or more folders")
    p.add_argument("--subjects", default="report", choices=[*SUBJECT_PARTS, "all"])
    p.add_argument("--focal", nargs="+", default=list(FOCAL_SETTINGS), choices=FOCAL_SETTINGS,
                   help="what the engine is told: the render's focal length (known) and/or none (unknown: the "
                        "CLI's default field of view); default both")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("docs/benchmark"))
    p.add_argument("--name", default="detections_video",
                   help="file stem: writes NAME_SUBJECTS.md and .json into --out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    subjects = sorted({s for v in SUBJECT_PARTS.values() for s in v}) if args.subjects == "all" \
        else SUBJECT_PARTS[args.subjects]
    report = evaluate(Engine.load(device="cpu"), args.folders, subjects, tuple(args.focal))
    command = "python -m lab bench-detections " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.name}_{args.subjects}"
    stem.with_suffix(".json").write_text(json.dumps(dict(report, command=command), indent=1))
    stem.with_suffix(".md").write_text(markdown(report, command))
    print(markdown(report, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
