"""The README's main job: the whole product on the embedded example, with before/after numbers.

    python -m backend demo [--out out/demo] [--keypoints detect|simulated] [--smpl PATH] [--multiview]
                           [--no-blend] [--device cpu|cuda]

Video (default), on ``examples/shot`` (made by ``lab/scripts/make_example_shot.py``: 4 s of held-out CMU
motion rendered with the free body model, simulated detector-like keypoints, ground truth):

1. load the body model (the free default, or ``--smpl``) and the trained engine weights;
2. detect the person in the footage with MediaPipe BlazePose (``backend.detect``) -> ``detections.npz``,
   and print its error against the example's true 2D keypoints (``--keypoints simulated`` skips this
   and takes the example's simulated ``keypoints.npz`` instead);
3. read the footage and the keypoints and pair them (``backend.io.shot``);
4. the initial estimate from the built-in regressor -> ``init.npz`` (INIT layout);
5. ScoreHMR refinement in video mode (``backend.engine.api.Engine``) -> ``refined.npz`` (OUT.npz);
6. the preview video and one frame as PNG (``backend.io.preview``) -> ``preview.mp4``, ``preview.png``;
7. a .blend with the animated SMPL armature over the footage: ``refined.npz`` imported as it is by
   ``build.py``'s batch mode with the bpy module (``python build.py -- --result refined.npz --footage
   shot.mp4 --out shot.blend``), so the .blend, ``refined.npz`` and the preview show one motion;

then prints the keypoints' error against the true 2D keypoints and before/after numbers (reprojection error, jitter,
acceleration error and, since the example has ground truth, MPJPE / PA-MPJPE) and writes them to ``summary.json``.

``--multiview`` runs ``examples/multiview`` instead (4 calibrated views, keypoints only): calibrated
multi-view refinement, ``refined.npz`` (view 0 in the OUT.npz layout plus the per-view arrays),
a preview of all views, and the same numbers.

The demo writes only its own files into ``--out``; a folder holding other files is refused unless
``--force``.  Without trained weights it stops at once and names the command that trains them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TRAIN_COMMAND = ("python -m lab.data.convert --out cache/dataset && "
                 "python -m lab train all --seed 0")
PREVIEW_FRAME = 30          # the PNG shows this frame (the knee bend of the default example)
KEYPOINT_SOURCES = ("detect", "simulated")
DEMO_FILES = ("detections.npz", "init.npz", "refined.npz", "preview.mp4", "preview.png", "shot.blend", "build_py.log",
              "summary.json")


class DemoError(Exception):
    """A one-line reason the demo cannot run, with the fix."""


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _step(i: int, n: int, text: str) -> None:
    print(f"[{i}/{n}] {text}", flush=True)


def check_weights() -> None:
    """DemoError naming the training command when the engine's trained weights are absent."""
    from backend.models.checkpoints import PRIOR_PATH, REGRESSOR_PATH

    missing = [p for p in (REGRESSOR_PATH, PRIOR_PATH) if not p.is_file()]
    if missing:
        names = ", ".join(_rel(p) for p in missing)
        raise DemoError(f"the trained engine weights are missing ({names}); train them with `{TRAIN_COMMAND}` "
                        f"(converts the CMU data, then trains the regressor and the prior)")


def claim_folder(out_dir: Path, force: bool) -> None:
    """Refuses an --out folder holding files that are not the demo's own (unless ``force``)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DemoError(f"{out_dir} is a file; choose an output folder with --out")
    foreign = [p.name for p in out_dir.iterdir() if p.name not in DEMO_FILES and not p.name.startswith(".")]
    if foreign and not force:
        raise DemoError(f"{out_dir} holds files that are not the demo's ({', '.join(sorted(foreign)[:3])}"
                        f"{' ...' if len(foreign) > 3 else ''}); choose an empty --out folder or pass --force")


# -- numbers -----------------------------------------------------------------------------------------
def jitter_mm(joints: np.ndarray) -> float:
    """Mean joint acceleration |x[t-1] - 2 x[t] + x[t+1]| in mm/frame^2; joints (..., F, J, 3) metres."""
    j = np.asarray(joints, np.float64)
    return float(np.linalg.norm(j[..., :-2, :, :] - 2 * j[..., 1:-1, :, :] + j[..., 2:, :, :], axis=-1).mean()
                 * 1000)


def motion_numbers(joints: np.ndarray, reproj_px: np.ndarray, gt: np.ndarray | None) -> dict:
    """Numbers of one estimate: joints (..., F, 24, 3) camera frame, reprojection errors (..., F),
    ground-truth joints like ``joints`` or None."""
    from backend.metrics import accel_error, mpjpe
    from backend.metrics import joint_errors

    out = dict(reprojection_px=float(np.nanmean(reproj_px)), jitter_mm_f2=jitter_mm(joints))
    if gt is not None:
        rel = lambda j: j - j[..., :1, :]
        out["accel_error_mm_f2"] = float(accel_error(rel(joints), rel(gt)).mean())
        out.update(joint_errors(joints.reshape(-1, 24, 3), gt.reshape(-1, 24, 3)))
        out["position_mm"] = float(mpjpe(joints, gt, root=None).mean())  # no alignment: depth errors count
    return {k: round(v, 2) for k, v in out.items()}


ROWS = (("reprojection_px", "reprojection error (px)"), ("jitter_mm_f2", "jitter (mm/frame^2)"),
        ("accel_error_mm_f2", "acceleration error (mm/frame^2)"), ("mpjpe14", "MPJPE, 14 joints (mm)"),
        ("pa_mpjpe14", "PA-MPJPE, 14 joints (mm)"), ("mpjpe24", "MPJPE, 24 joints (mm)"),
        ("pa_mpjpe24", "PA-MPJPE, 24 joints (mm)"), ("position_mm", "joint positions, not aligned (mm)"))


def numbers_table(before: dict, after: dict, truth: dict | None = None) -> str:
    lines = [f"  {'':34s}{'initial':>10s}{'refined':>10s}" + (f"{'truth':>10s}" if truth else "")]
    for key, label in ROWS:
        if key in after:
            extra = f"{truth[key]:10.1f}" if truth and key in truth else ""
            lines.append(f"  {label:34s}{before[key]:10.1f}{after[key]:10.1f}{extra}")
    return "\n".join(lines)


# -- pieces ------------------------------------------------------------------------------------------
def _progress_bar(desc: str, unit: str = "iter"):
    """(tqdm bar, progress callback(done, total) called once per iteration or frame)."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stdout, mininterval=0.5)

    def progress(done, total):
        bar.total = total
        bar.update(1)

    return bar, progress


def detect_example(footage: Path, out: Path) -> dict:
    """BlazePose over ``footage`` -> the keypoint file ``out`` (what ``refine --keypoints`` reads); returns
    what it found: frames, missed frames, speed."""
    from backend.detect import detect_footage, write_keypoint_file

    bar, progress = _progress_bar("detect", unit="frame")
    data, report = detect_footage(footage, progress=progress)
    bar.close()
    write_keypoint_file(out, data, force=True)
    print(f"      {report.summary()}")
    return dict(frames=report.frames, missed=report.missed, frames_per_second=round(report.frames_per_second, 1))


def keypoint_error(keypoints: np.ndarray, truth2d: np.ndarray) -> dict:
    """The keypoints' (F, 17, 3) error against the true 2D keypoints (F, 17, 2): mean and worst joint, px."""
    from backend.detect.accuracy import error_statistics

    stats = error_statistics(keypoints, truth2d)
    worst = int(np.nanargmax(stats["error_px"]))
    return dict(mean_error_px=round(stats["mean_error_px"], 2), worst_joint=stats["joints"][worst],
                worst_joint_error_px=round(float(stats["error_px"][worst]), 2))


def keypoints_line(keypoints: dict) -> str:
    """One line on the keypoints the refinement was given (``run_video``'s summary["keypoints"])."""
    what = ("detected by MediaPipe BlazePose" if keypoints["source"] == "detect" else "simulated (the example's "
            "keypoints.npz)")
    return (f"keypoints {what}: mean error {keypoints['mean_error_px']:.1f} px against the example's true 2D "
            f"keypoints (worst joint {keypoints['worst_joint']} {keypoints['worst_joint_error_px']:.1f} px)")


def initial_estimate(engine, obs: dict) -> tuple[dict, np.ndarray]:
    """The built-in regressor's estimate of a single-view OBS: INIT arrays (F,...) and keypoints3d (F,17,3)."""
    import torch

    from backend.rotations import matrix_to_axis_angle

    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=engine.device)
    kp = t(obs["keypoints"][0])
    f = kp.shape[0]
    est = engine.initial(kp, t(obs["focal_length"][0]).expand(f), t(obs["principal_point"][0]).expand(f, 2))
    with torch.no_grad():
        kp3d = engine.body.joints_fast(est["rotmats"], est["betas"], est["transl"]).keypoints[:, :17]
    aa = matrix_to_axis_angle(est["rotmats"]).reshape(f, 72).cpu().numpy().astype(np.float32)
    init = dict(global_orient=aa[:, :3], body_pose=aa[:, 3:], betas=est["betas"].cpu().numpy().astype(np.float32),
                transl=est["transl"].cpu().numpy().astype(np.float32))
    return init, kp3d.cpu().numpy()


def _save_npz(path: Path, arrays: dict) -> None:
    """np.savez to a temp file beside ``path``, renamed into place (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def blend_with_build_py(blend: Path, result: Path, footage: Path, log: Path) -> float:
    """Imports the written ``result`` (OUT.npz) as it is into ``blend`` with ``python build.py -- --result ...
    --footage ... --out blend`` (bpy module): the .blend holds the very motion of refined.npz and the preview.
    Returns seconds; its output goes to ``log``; DemoError with the last lines when it fails."""
    cmd = [sys.executable, str(ROOT / "build.py"), "--", "--result", str(result), "--footage", str(footage),
           "--out", str(blend), "--force"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    log.write_text("$ " + " ".join(cmd) + "\n" + output)
    if proc.returncode != 0 or not blend.is_file():
        said = [x.strip() for x in output.splitlines() if x.strip()]
        tail = next((x for x in reversed(said) if "FAILED" in x or "error" in x), said[-1] if said else "no output")
        raise DemoError(f"build.py could not make {blend.name} (exit {proc.returncode}): {tail}; full log in {log}")
    return time.time() - t0


# -- the two demos -------------------------------------------------------------------------------------
def run_video(out_dir: Path, engine, *, examples: Path = EXAMPLES, blend: bool = True, steps: int = 7,
              keypoints: str = "detect") -> dict:
    from backend.engine.api import EngineOptions
    from backend.io.preview import posed_vertices, preview_frame_png, write_preview
    from backend.io.shot import load_shot

    shot_dir = examples / "shot"
    footage = shot_dir / "shot.mp4"
    step = iter(range(2, steps + 1))
    times, detection = {}, {}

    if keypoints == "detect":
        t0 = time.time()
        _step(next(step), steps, f"detecting the person in {_rel(footage)} (MediaPipe BlazePose)")
        detection = detect_example(footage, out_dir / "detections.npz")
        keypoint_file = out_dir / "detections.npz"
        times["detect"] = time.time() - t0
    else:
        keypoint_file = shot_dir / "keypoints.npz"

    t0 = time.time()
    _step(next(step), steps, f"reading the example shot {_rel(shot_dir)} with {_rel(keypoint_file)}")
    shot = load_shot(footage, keypoint_file)
    truth = dict(np.load(shot_dir / "ground_truth.npz"))
    meta = json.loads(str(truth["meta"]))
    print(f"      {shot.footage.summary()}")
    print(f"      {shot.keypoints.report.summary()}; focal length {float(shot.obs['focal_length'][0]):.1f} px")
    for note in shot.notes:
        print(f"      note: {note}")
    print(f"      motion: CMU {meta['clip']} \"{meta['description']}\" (subject {meta['subject']}, held out)")
    used = dict(source=keypoints, **keypoint_error(shot.keypoints.keypoints, truth["keypoints2d"]), **detection)
    print(f"      {keypoints_line(used)}")
    times["read"] = time.time() - t0

    t0 = time.time()
    _step(next(step), steps, "initial estimate (built-in regressor)")
    init, init_kp3d = initial_estimate(engine, shot.obs)
    _save_npz(out_dir / "init.npz", init)
    times["initial"] = time.time() - t0

    t0 = time.time()
    _step(next(step), steps, "refining (ScoreHMR, video mode)")
    bar, progress = _progress_bar("refine (video)")
    result = engine.run(shot.obs, init, "video", EngineOptions(), progress=progress)
    bar.close()
    result = replace(result, info={**result.info, "init": "built-in regressor (init.npz)"})
    result.write(out_dir / "refined.npz", force=True)
    times["refine"] = time.time() - t0

    t0 = time.time()
    _step(next(step), steps, "preview video")
    obs = dict(shot.obs, fps=shot.footage.fps)
    look = dict(init_keypoints3d=init_kp3d, silhouette=posed_vertices(result, engine.body), crop=True, force=True)
    write_preview(out_dir / "preview.mp4", result, obs, footage, **look)
    preview_frame_png(out_dir / "preview.png", result, obs, min(PREVIEW_FRAME, shot.frames - 1), footage, **look)
    times["preview"] = time.time() - t0

    if blend:
        _step(next(step), steps, "Blender scene with the animated SMPL armature: refined.npz imported (build.py, "
                                 "bpy module)")
        times["blend"] = blend_with_build_py(out_dir / "shot.blend", out_dir / "refined.npz", footage,
                                             out_dir / "build_py.log")

    gt = truth["joints"].astype(np.float64)
    numbers = dict(initial=motion_numbers(result["init_joints"], result["init_reprojection_error_px"], gt),
                   refined=motion_numbers(result["joints"], result["reprojection_error_px"], gt),
                   truth=dict(jitter_mm_f2=round(jitter_mm(gt), 2)))
    return dict(example=str(shot_dir), frames=shot.frames, fps=shot.footage.fps, keypoints=used, numbers=numbers,
                engine_seconds=result.info["seconds"], seconds={k: round(v, 1) for k, v in times.items()},
                outputs=[str(out_dir / n) for n in ("detections.npz",) * bool(detection)
                         + ("init.npz", "refined.npz", "preview.mp4", "preview.png")]
                + ([str(out_dir / "shot.blend")] if blend else []), motion=meta["clip"])


def run_multiview(out_dir: Path, engine, *, examples: Path = EXAMPLES, steps: int = 5) -> dict:
    from backend.engine.api import EngineOptions
    from backend.contract.observations import load_observations
    from backend.io.preview import preview_frame_png, write_preview
    from backend.contract.results import flatten_multiview, write_results

    mv_dir = examples / "multiview"
    times = {}
    t0 = time.time()
    _step(2, steps, f"reading the multi-view example {_rel(mv_dir)}")
    obs = load_observations(mv_dir / "obs.npz", "multiview")
    truth = dict(np.load(mv_dir / "ground_truth.npz"))
    meta = json.loads(str(truth["meta"]))
    v, f = obs["keypoints"].shape[:2]
    print(f"      {v} calibrated views x {f} frames; motion: CMU {meta['clip']} \"{meta['description']}\" "
          f"(subject {meta['subject']}, held out)")
    times["read"] = time.time() - t0

    t0 = time.time()
    _step(3, steps, "initial estimates (built-in regressor, per view) and multi-view refinement")
    bar, progress = _progress_bar("refine (multiview)")
    result = engine.run(obs, None, "multiview", EngineOptions(), progress=progress)
    bar.close()
    write_results(out_dir / "refined.npz", flatten_multiview(result), force=True)
    times["refine"] = time.time() - t0

    t0 = time.time()
    _step(4, steps, "preview video of all views")
    look = dict(max_width=1280, crop=True, force=True)
    write_preview(out_dir / "preview.mp4", result, obs, **look)
    preview_frame_png(out_dir / "preview.png", result, obs, min(PREVIEW_FRAME // 2, f - 1), **look)
    times["preview"] = time.time() - t0

    gt = truth["joints"].astype(np.float64)                      # (V,F,24,3), each view's camera frame
    numbers = dict(initial=motion_numbers(result["init_joints"], result["init_reprojection_error_px"], gt),
                   refined=motion_numbers(result["joints"], result["reprojection_error_px"], gt),
                   truth=dict(jitter_mm_f2=round(jitter_mm(gt), 2)))
    if "joints_world" in result:
        err = np.linalg.norm(result["joints_world"] - truth["joints_world"], axis=-1).mean() * 1000
        numbers["refined"]["world_position_error_mm"] = round(float(err), 2)
    return dict(example=str(mv_dir), views=v, frames=f, numbers=numbers,
                engine_seconds=json.loads(str(result["info"]))["seconds"],
                seconds={k: round(val, 1) for k, val in times.items()},
                outputs=[str(out_dir / n) for n in ("refined.npz", "preview.mp4", "preview.png")], motion=meta["clip"])


def run_demo(out_dir: Path, smpl_path: str | None = None, *, multiview: bool = False, blend: bool = True,
             device: str | None = None, force: bool = False, engine=None, examples: Path = EXAMPLES,
             keypoints: str = "detect") -> int:
    """Runs the demo (see module docstring); ``engine`` replaces the trained one (tests)."""
    import torch

    from backend.body.smpl_files import SMPLFileError
    from backend.engine.api import Engine
    from backend.contract.errors import InputError
    from backend.detect import DetectorUnavailable

    t_start = time.time()
    out_dir = Path(out_dir)
    steps = 4 if multiview else 5 + blend + (keypoints == "detect")
    try:
        claim_folder(out_dir, force)
        if engine is None:
            check_weights()
        _step(1, steps, "loading the body model and the engine")
        if engine is None:
            engine = Engine.load(smpl_path, device=device)
        if engine.device.type == "cpu":
            # The engine's ops are small (a few hundred samples x 144): a second thread gains little on an idle
            # machine and costs 10x on a busy one (measured: 9.5 s vs 100 s for the example on 2 busy cores).
            torch.set_num_threads(1)
        body = engine.body
        v_t = body.smpl.v_template.cpu().numpy()
        print(f"      {body.source}: {v_t.shape[0]} vertices, {len(body.faces)} faces, rest height "
              f"{float(np.ptp(v_t[:, 1])):.3f} m; engine on {engine.device}")
        out_dir.mkdir(parents=True, exist_ok=True)
        if multiview:
            summary = run_multiview(out_dir, engine, examples=examples, steps=steps)
        else:
            summary = run_video(out_dir, engine, examples=examples, blend=blend, steps=steps, keypoints=keypoints)
    except (DemoError, InputError, SMPLFileError, DetectorUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary.update(demo="multiview" if multiview else "video", total_seconds=round(time.time() - t_start, 1),
                   body_model=body.source)
    (out_dir / ".summary.json.tmp").write_text(json.dumps(summary, indent=2))
    (out_dir / ".summary.json.tmp").replace(out_dir / "summary.json")

    n = summary["numbers"]
    what = f"{summary['views']} views x {summary['frames']} frames" if multiview else \
        f"{summary['frames']} frames at {summary['fps']:g} fps"
    print(f"\ndone in {summary['total_seconds']:.0f} s ({what}; engine {summary['engine_seconds']:.1f} s).")
    if "keypoints" in summary:
        print(f"  {keypoints_line(summary['keypoints'])}")
    print("Before (built-in regressor) and after (ScoreHMR), against the example's ground truth:")
    print(numbers_table(n["initial"], n["refined"], n["truth"]))
    if "world_position_error_mm" in n["refined"]:
        print(f"  world position error of the calibrated fit: {n['refined']['world_position_error_mm']:.1f} mm")
    print("outputs:")
    for path in summary["outputs"] + [str(out_dir / "summary.json")]:
        print(f"  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--smpl", default=None, help="your own SMPL model file instead of the free default")
    p.add_argument("--keypoints", choices=KEYPOINT_SOURCES, default="detect",
                   help="detect (default): BlazePose on the example footage; simulated: the example's keypoints.npz")
    p.add_argument("--multiview", action="store_true", help="run the multi-view example instead")
    p.add_argument("--no-blend", action="store_true", help="skip the Blender scene (build.py)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    p.add_argument("--force", action="store_true", help="write into an --out folder holding other files")
    args = p.parse_args(argv)
    return run_demo(Path(args.out), args.smpl, multiview=args.multiview, blend=not args.no_blend,
                    device=args.device, force=args.force, keypoints=args.keypoints)


if __name__ == "__main__":
    raise SystemExit(main())
