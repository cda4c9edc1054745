"""``python -m backend <command>``: the engine's command line (refine, detect, demo; research: ``python -m lab``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _say(msg: str) -> None:
    print(f"  {msg}", flush=True)


def _refine_inputs(args):
    """(OBS dict, Shot or None) from --observations, from --keypoints [--footage] (one camera), from
    --footage alone (keypoints detected first), or for --mode multiview from one --footage per view."""
    from backend.contract.errors import InputError
    from backend.contract.observations import load_observations

    footage, keypoints = args.footage or [], args.keypoints or []
    if args.observations and keypoints:
        raise InputError("give either --observations OBS.npz or --keypoints (with --footage), not both")
    if args.observations:
        shot_only = [f"--{n.replace('_', '-')}" for n in ("footage", "keypoint_format", "track", "frames", "fps")
                     if getattr(args, n) is not None]
        if shot_only:
            raise InputError(f"{', '.join(shot_only)} go with --keypoints; OBS.npz already holds what they set")
        return load_observations(args.observations, args.mode, fov_deg=args.fov, **_intrinsics(args)), None
    if args.mode == "multiview":
        return _multiview_inputs(args, footage, keypoints), None
    if len(footage) > 1 or len(keypoints) > 1:
        raise InputError("several --footage / --keypoints are the views of one shot: add --mode multiview "
                         "(or give one of each)")
    if not keypoints and not footage:
        raise InputError("nothing to refine: give --observations OBS.npz, --footage VIDEO (keypoints are then "
                         "detected), or --keypoints KEYPOINTS (with --footage VIDEO for its size and rate)")
    video = footage[0] if footage else None
    if keypoints:
        return _view_shot(args, video, keypoints[0], args.track)
    path = _detections_path(args.out)
    _claim_output(str(path), args.force, "the detections file")
    return _view_shot(args, video, _detect_keypoints(args, video, path), None)


def _intrinsics(args) -> dict:
    return dict(focal_length=args.focal_length, principal_point=args.principal_point)


def _view_shot(args, footage, keypoints, track, mode=None, label=""):
    """(OBS dict, Shot) of one camera: ``keypoints`` paired with ``footage`` (or None), --frames applied;
    its summary printed (each line after ``label``)."""
    from backend.contract.frames import parse_frames
    from backend.io.shot import load_shot

    shot = load_shot(footage, keypoints, parse_frames(args.frames), mode=mode or args.mode, fps=args.fps,
                     fov_deg=args.fov, keypoint_format=args.keypoint_format, track=track, **_intrinsics(args))
    if shot.footage is not None:
        _say(label + shot.footage.summary())
    _say(label + shot.keypoints.report.summary())
    for note in shot.notes:
        _say(f"{label}note: {note}")
    return shot.obs, shot


def _multiview_inputs(args, footage: list, keypoints: list) -> dict:
    """The uncalibrated multi-view OBS of one --footage per view (view 0 first), each with its --keypoints
    or, with none given, its detections (written as OUT.view<i>.keypoints.npz, all claimed first)."""
    from backend.contract.errors import InputError
    from backend.contract.observations import combine_views

    if len(footage) < 2:
        raise InputError("--mode multiview takes --observations OBS.npz with every view's keypoints ((V,F,17,3), "
                         "see README), or one --footage per camera (two or more; keypoints detected, or one "
                         "--keypoints per --footage)")
    if keypoints and len(keypoints) != len(footage):
        raise InputError(f"give one --keypoints per --footage ({len(footage)}) or none (then each view is detected)")
    if not keypoints:
        paths = [_detections_path(args.out, view) for view in range(len(footage))]
        for path in paths:
            _claim_output(str(path), args.force, "the detections file")
        keypoints = [_detect_keypoints(args, video, path) for video, path in zip(footage, paths)]
        track = None
    else:
        track = args.track
    views = [_view_shot(args, video, kp, track, mode="video", label=f"view {view}: ")[0]
             for view, (video, kp) in enumerate(zip(footage, keypoints))]
    return combine_views(views, path="the --footage views")


def _detections_path(out, view: int | None = None) -> Path:
    """Where refine keeps the detections: OUT.keypoints.npz, or OUT.view<i>.keypoints.npz per view."""
    return Path(out).with_suffix(".keypoints.npz" if view is None else f".view{view}.keypoints.npz")


def _detect_keypoints(args, footage, path: Path) -> Path:
    """--footage without --keypoints: BlazePose (backend.detect) over the whole ``footage`` (the person of
    --track), written to ``path`` (reusable with --keypoints; kept unless --force), --frames applied after."""
    from backend.detect import cli as detect_cli
    from backend.detect import footage as detect

    _say(f"no --keypoints: detecting the person in {Path(footage).name} (BlazePose)")
    progress, bar = detect_cli.progress_reporter(args)
    try:
        data, report = detect.detect_footage(footage, track=args.track, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    detect.write_keypoint_file(path, data, force=args.force)
    _say(f"{report.summary()}; wrote {path}")
    return path


def _initial_estimate(args, obs: dict, shot):
    """INIT dict from --init (checked against the observed frames), or None for the built-in regressor."""
    from backend.contract.errors import InputError
    from backend.contract.frames import FrameRange
    from backend.contract.init_estimates import load_init, slice_init

    if not args.init:
        return None
    views, frames = obs["keypoints"].shape[:2]
    init = load_init(args.init, image_size=obs["image_size"][0], focal_length=float(obs["focal_length"][0]))
    if shot is not None:  # one estimate per refined frame, or per keypoint frame (then the --frames part)
        first = shot.keypoints.report.first_frame
        return slice_init(init, FrameRange(shot.start - first, shot.stop - first), shot.keypoints.report.frames,
                          args.init)
    expected = views * frames if args.mode == "multiview" else frames
    have = init["global_orient"].shape[0]
    if have != expected:
        raise InputError(f"has {have} frames but the observations have {expected}; give one initial estimate "
                         "per observed frame", path=args.init)
    return init


def _claim_output(path, force: bool, flag: str) -> None:
    from backend.contract.errors import InputError
    from backend.contract.results import check_writable

    if Path(path).exists() and not force:
        raise InputError(f"exists; pass --force to overwrite it or choose another {flag}", path=path)
    check_writable(Path(path).parent)


def _progress(args):
    """(progress callback, finish) for the refinement: PROGRESS lines or a progress bar."""
    if args.progress_lines:
        # One "PROGRESS done/total" line per outer iteration, for the Blender add-on's worker reader.
        return (lambda done, total: print(f"PROGRESS {done}/{total}", flush=True)), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(desc=f"refine ({args.mode})", unit="iter", file=sys.stdout, mininterval=1.0)

    def progress(done, total):
        bar.total = total
        bar.update(1)
    return progress, bar.close


def cmd_refine(args) -> int:
    import numpy as np

    from backend import service
    from backend.body.smpl_files import SMPLFileError
    from backend.contract.errors import InputError
    from backend.detect import DetectorUnavailable

    try:
        _claim_output(args.out, args.force, "--out")
        if args.preview:
            _claim_output(args.preview, args.force, "--preview")
        obs, shot = _refine_inputs(args)
        init = _initial_estimate(args, obs, shot)
        engine = service.load_engine(args.smpl, args.device)
        options = service.engine_options(args.mode, variant=args.variant, smoothing=args.smoothing,
                                         keypoint_trust=args.keypoint_trust, iterations=args.iterations,
                                         motion_prior=args.motion_prior, height=args.height)
        progress, finish = _progress(args)
        result = service.refine(engine, obs, init, args.mode, options, args.out, method=args.method,
                                progress=progress, force=args.force)
        finish()
        err, err0 = np.nanmean(result["reprojection_error_px"]), np.nanmean(result["init_reprojection_error_px"])
        print(f"wrote {args.out}: reprojection error {err0:.1f} px -> {err:.1f} px")
        if args.preview:
            from backend.io.preview import posed_vertices, write_preview

            footage = shot.footage.path if shot is not None and shot.footage is not None else None
            look = dict(silhouette=posed_vertices(result, engine.body)) if args.mode != "multiview" else {}
            write_preview(args.preview, result, obs, footage, first_frame=shot.start if shot is not None else 0,
                          crop=args.preview_crop, force=args.force, **look)
            print(f"wrote {args.preview}: initial (left) and refined (right) over the "
                  + ("footage" if footage else "keypoints"))
    except (InputError, SMPLFileError, DetectorUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


# Commands that live in their own modules and parse their own arguments: name -> (module, function, help).
# (The research commands are ``python -m lab``'s.)
PASSTHROUGH = {
    "demo": ("backend.demo", "main", "the main job on the embedded example (README)"),
    "batch": ("backend.batch.cli", "main", "detect -> refine -> export many clips as Ray tasks (docs/batch.md)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        module, function, _ = PASSTHROUGH[argv[0]]
        return getattr(importlib.import_module(module), function)(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("refine", help="refine SMPL motion from keypoints (ScoreHMR)")
    p.add_argument("--observations", help="OBS.npz: keypoints, image_size, [focal_length, ...] (see README)")
    p.add_argument("--keypoints", action="append",
                   help="instead of OBS.npz: 2D keypoints (COCO-17 npz/npy/JSON, COCO results JSON, or an OpenPose "
                   "*_keypoints.json folder); default with --footage: detected (BlazePose), kept as "
                   "OUT.keypoints.npz. --mode multiview: one per --footage")
    p.add_argument("--footage", action="append",
                   help="the video the keypoints were detected on (gives size, frame count, fps). --mode multiview: "
                   "one per camera, view 0 first (uncalibrated; each view detected as OUT.view<i>.keypoints.npz "
                   "when no --keypoints are given)")
    p.add_argument("--keypoint-format", choices=["array", "coco", "json", "openpose"], default=None,
                   help="array (npz/npy), coco (COCO results JSON), json (per-frame lists), openpose (folder of "
                   "*_keypoints.json); default: detected from the path")
    p.add_argument("--track", type=int, help="which person when several are detected: track index, "
                   "0 = the largest, most confident (default)")
    p.add_argument("--frames", help="footage frames START:STOP to refine (counted from 0, STOP excluded), or 'overlap'")
    p.add_argument("--fps", type=float, help="frame rate when there is no footage")
    p.add_argument("--focal-length", type=float, help="focal length in pixels (default: the file's, else from --fov)")
    p.add_argument("--principal-point", type=float, nargs=2, metavar=("CX", "CY"),
                   help="principal point in pixels (default: the image centre)")
    p.add_argument("--preview", help="also write a preview video (.mp4/.avi): initial and refined over the footage")
    p.add_argument("--preview-crop", action="store_true", help="zoom the preview on the person")
    p.add_argument("--init", help="INIT.npz (or an HMR 2.0 style file); default: the built-in regressor")
    p.add_argument("--mode", choices=["frame", "video", "multiview"], default="video")
    p.add_argument("--smpl", help="your SMPL model file (default: the free body model)")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--method", choices=["scorehmr", "smplify", "dposer", "per-frame-filter"], default="scorehmr",
                   help="ScoreHMR, or a baseline from backend/engine/baselines.py")
    p.add_argument("--variant", choices=["paper", "ours"], default="ours",
                   help="paper: the paper's loop and constants with this project's learned prior and start "
                        "(docs/engine.md says what differs from the paper); ours: video with the GMM pose prior "
                        "in the loop and a final smoothing fit, single frames with a fit stage")
    p.add_argument("--iterations", type=int, help="outer iterations of the loop (default: the paper's; in single "
                                                  "frames variant 'ours' fits the regressor's own start instead)")
    p.add_argument("--motion-prior", metavar="PATH",
                   help="--mode video: refine with this learned motion prior checkpoint (python -m lab train "
                        "motion-prior; shipped: backend/assets/motion_prior.pt, docs/motion_prior.md) instead of the "
                        "per-frame prior")
    p.add_argument("--smoothing", type=float, default=1.0,
                   help="scales the temporal terms (Eq. 14, the final fit's joint acceleration)")
    p.add_argument("--keypoint-trust", type=float, default=1.0, help="scales the keypoint term")
    p.add_argument("--height", type=float, metavar="METRES",
                   help="the person's known height (e.g. 1.78): fixes the body's size and so its distance")
    p.add_argument("--fov", type=float, default=55.0, help="field of view (deg) when OBS has no focal_length")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--progress-lines", action="store_true",
                   help="print machine-readable 'PROGRESS done/total' lines instead of a progress bar")
    p.set_defaults(run=cmd_refine)

    from backend.detect import cli as detect_cli

    detect_cli.add_parser(sub)

    for name, (_, _, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text + " (--help after the name)")  # listed here, dispatched above

    args = parser.parse_args(argv)
    return args.run(args)
