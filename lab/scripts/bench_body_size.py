"""Size and depth errors of the default video result, without and with the true height (EngineOptions.height).

    python lab/scripts/bench_body_size.py detections --subjects tuning     # 15 excerpts, ~5 min on one thread
    python lab/scripts/bench_body_size.py detections --subjects report     # 12 excerpts
    python lab/scripts/bench_body_size.py example                          # the example shot's BlazePose detections

``detections``: the committed BlazePose detections of rendered validation motion (lab.bench_detections'
folders: the part's own render and the subjects' excerpts of detections_val64), excerpts with a missed frame
left out.  ``example``: examples/shot detected by BlazePose (written to --detections once, then reused).
Per excerpt and run: size error (rest height / the truth's - 1), depth error (median over frames of the
pelvis depth / the truth's - 1), PA-MPJPE-14 and MPJPE-14 (mm); then median and worst |error| and the means.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "docs" / "benchmark"
FOLDERS = dict(tuning=("detections_val64_tuning", "detections_val64"), report=("detections_val64_report",
                                                                                "detections_val64"))


def scores(engine, result: dict, truth_joints: np.ndarray, truth_height: float) -> dict:
    """Size and depth errors (fractions) and joint errors (mm) of one video result against its truth (F,24,3)."""
    from lab.bench_common import video_errors
    from backend.engine.body_size import rest_height

    height = float(rest_height(engine.body, torch.as_tensor(result["betas"].reshape(-1, 10)[:1]))[0])
    errors = video_errors(result["joints"][None], truth_joints[None])
    return dict(size=height / truth_height - 1,
                depth=float(np.median(result["joints"][:, 0, 2] / truth_joints[:, 0, 2] - 1)),
                start_depth=float(np.median(result["init_joints"][:, 0, 2] / truth_joints[:, 0, 2] - 1)),
                pa_mpjpe14=errors["pa_mpjpe14"], mpjpe14=errors["mpjpe14"])


def excerpts(engine, part: str):
    """(name, OBS, true joints (F,24,3), true height) of the usable excerpts of the part's subjects."""
    from lab.bench_common import SUBJECT_PARTS
    from backend.body.body_model import BodyModel
    from backend.engine.body_size import rest_height
    from lab.sim.calibrate import excerpt_obs, load_chunks, truth_joints

    body64 = BodyModel.load(None, dtype=torch.float64)
    for folder in FOLDERS[part]:
        data = load_chunks(BENCH / folder)
        truth = truth_joints(body64, data)
        for i, clip in enumerate(data["clip_ids"]):
            seen = (data["detected"][i, :, :17, 2] > 0).any(-1).all()
            if int(clip.split("_")[0]) in SUBJECT_PARTS[part] and seen:
                height = float(rest_height(engine.body, torch.as_tensor(data["betas"][i])[None])[0])
                yield f"{folder}/{clip}", excerpt_obs(data, i, "video"), truth[i], height


def example(engine, detections: Path):
    """The example shot on BlazePose detections: (name, OBS, init, true joints, true height)."""
    from backend import demo
    from backend.engine.body_size import rest_height
    from backend.io.shot import load_shot

    shot_dir = ROOT / "examples" / "shot"
    if not detections.is_file():
        detections.parent.mkdir(parents=True, exist_ok=True)
        demo.detect_example(shot_dir / "shot.mp4", detections)
    shot = load_shot(shot_dir / "shot.mp4", detections)
    truth = dict(np.load(shot_dir / "ground_truth.npz"))
    init, _ = demo.initial_estimate(engine, shot.obs)       # the demo's start: the built-in regressor's
    height = float(rest_height(engine.body, torch.as_tensor(truth["betas"])[None])[0])
    return "examples/shot", shot.obs, init, truth["joints"].astype(np.float64), height


def summary(rows: list[dict]) -> str:
    a = lambda k: np.array([r[k] for r in rows])
    return (f"n={len(rows)} |size| median {np.median(np.abs(a('size'))):.3f} worst {np.abs(a('size')).max():.3f}; "
            f"|depth| median {np.median(np.abs(a('depth'))):.3f} worst {np.abs(a('depth')).max():.3f} "
            f"(start {np.median(np.abs(a('start_depth'))):.3f} / {np.abs(a('start_depth')).max():.3f}); "
            f"PA-MPJPE-14 {a('pa_mpjpe14').mean():.2f} MPJPE-14 {a('mpjpe14').mean():.2f}")


def main(argv: list[str] | None = None) -> int:
    from backend.engine.api import Engine, EngineOptions

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", choices=("detections", "example"))
    p.add_argument("--subjects", choices=tuple(FOLDERS), default="tuning")
    p.add_argument("--detections", type=Path, default=Path("cache/bench_body_size/detections.npz"),
                   help="example: BlazePose's keypoint file of examples/shot (made when missing)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    engine = Engine.load(device="cpu")
    cases = ([(*example(engine, args.detections),)] if args.data == "example" else
             [(name, obs, None, joints, height) for name, obs, joints, height in excerpts(engine, args.subjects)])
    rows = dict(unknown=[], known=[])
    for name, obs, init, joints, height in cases:
        line = f"{name} truth {height:.3f} m"
        for run, given in (("unknown", None), ("known", height)):
            r = scores(engine, engine.run(obs, init, "video", EngineOptions(height=given)), joints, height)
            rows[run].append(r)
            line += (f" | {run}: size {r['size']:+.3f} depth {r['depth']:+.3f} (start {r['start_depth']:+.3f}) "
                     f"PA {r['pa_mpjpe14']:.1f} MPJPE {r['mpjpe14']:.1f}")
        print(line, flush=True)
    for run, r in rows.items():
        print(f"height {run}: {summary(r)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))     # run as a script from anywhere: the repository's backend
    raise SystemExit(main())
