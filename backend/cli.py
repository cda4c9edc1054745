"""``python -m backend <command>``: the engine's command line."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _say(msg: str) -> None:
    print(f"  {msg}", flush=True)


def cmd_build_body_model(args) -> int:
    import numpy as np

    from backend.body import free_model, free_model_build

    t0 = time.time()
    arrays = free_model_build.build(n_samples=args.samples, seed=args.seed, progress=_say)
    seconds = time.time() - t0
    if args.check:
        committed = free_model.stored_arrays(free_model.load_free_model(args.out))
        fresh = free_model.stored_arrays(arrays)
        bad = [k for k in fresh if fresh[k].shape != committed[k].shape
               or not np.allclose(fresh[k], committed[k], rtol=0, atol=1e-6)]
        if bad:
            print(f"error: regenerated arrays differ from {args.out}: {', '.join(bad)}", file=sys.stderr)
            return 1
        print(f"regenerated model equals {args.out} ({len(fresh)} arrays, {seconds:.0f} s)")
        return 0
    free_model.save_free_model(arrays, args.out)
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out}: {arrays['v_template'].shape[0]} vertices, {arrays['f'].shape[0]} faces, "
          f"{size:.1f} MB, built in {seconds:.0f} s; shape PCA explains "
          f"{100 * float(arrays['shape_explained_variance']):.2f}% of variance; joint regressor held-out "
          f"residual mean {1000 * float(arrays['joint_regressor_heldout_mean_m']):.2f} mm, "
          f"max {1000 * float(arrays['joint_regressor_heldout_max_m']):.2f} mm")
    return 0


def cmd_refine(args) -> int:
    import numpy as np

    from backend.body.smpl_files import SMPLFileError
    from backend.engine.api import Engine, EngineOptions
    from backend.io.errors import InputError
    from backend.io.init_estimates import load_init
    from backend.io.observations import load_observations
    from backend.io.results import check_writable, write_results

    try:
        if Path(args.out).exists() and not args.force:
            raise InputError("exists; pass --force to overwrite it or choose another --out", path=args.out)
        check_writable(Path(args.out).parent)
        obs = load_observations(args.observations, args.mode, fov_deg=args.fov)
        init = None
        if args.init:
            views, frames = obs["keypoints"].shape[:2]
            size, focal = obs["image_size"][0], float(obs["focal_length"][0])
            init = load_init(args.init, image_size=size, focal_length=focal)
            expected = views * frames if args.mode == "multiview" else frames
            if init["global_orient"].reshape(-1, 3).shape[0] != expected:
                raise InputError(f"has {init['global_orient'].reshape(-1, 3).shape[0]} frames but the observations "
                                 f"have {expected}; give one initial estimate per observed frame", path=args.init)
        from backend.body.body_model import BodyModel
        from backend.models.train import PRIOR_PATH, REGRESSOR_PATH

        BodyModel.load(args.smpl)  # a wrong model file is reported before anything heavy runs
        missing = [p.name for p in (REGRESSOR_PATH, PRIOR_PATH) if not p.is_file()]
        if missing:
            raise InputError(f"trained weights missing ({', '.join(missing)}); train them with "
                             "`python -m backend convert-cmu` then `python -m backend train all`")
        engine = Engine.load(args.smpl, device=args.device)
    except (InputError, SMPLFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = EngineOptions(variant=args.variant, smoothing=args.smoothing, keypoint_trust=args.keypoint_trust)
    if args.iterations is not None:
        from dataclasses import replace

        loop, _ = options.resolved(args.mode)
        options.loop = replace(loop, iterations=args.iterations)
    if args.progress_lines:
        # One "PROGRESS done/total" line per outer iteration, for the Blender add-on's worker reader.
        bar = None

        def progress(done, total):
            print(f"PROGRESS {done}/{total}", flush=True)
    else:
        from tqdm import tqdm

        bar = tqdm(desc=f"refine ({args.mode})", unit="iter", file=sys.stdout, mininterval=1.0)

        def progress(done, total):
            bar.total = total
            bar.update(1)

    if args.method == "scorehmr":
        result = engine.run(obs, init, args.mode, options, progress=progress)
    else:
        from backend.engine.baselines import run_baseline

        try:
            result = run_baseline(engine, obs, init, args.mode, args.method)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if bar is not None:
        bar.close()
    if args.mode == "multiview":
        from backend.io.results import flatten_multiview

        result = flatten_multiview(result)
    try:
        write_results(args.out, result, force=args.force)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    err, err0 = np.nanmean(result["reprojection_error_px"]), np.nanmean(result["init_reprojection_error_px"])
    print(f"wrote {args.out}: reprojection error {err0:.1f} px -> {err:.1f} px")
    return 0


# Commands that live in their own modules and parse their own arguments.
PASSTHROUGH = {
    "convert-cmu": ("backend.data.convert", "main", "convert the CMU clips to SMPL (cache/dataset)"),
    "train": ("backend.models.train", "main", "train the regressor / prior"),
    "fit-gmm": ("backend.engine.gmm", "fit_gmm_main", "fit the SMPLify GMM pose prior on the training poses"),
    "bench": ("backend.bench", "main", "benchmark tables (docs/benchmark)"),
    "models-report": ("backend.models.report", "main", "validation numbers and plausibility of the trained models"),
    "sim-figure": ("backend.sim.figures", "main", "draw docs/observations.png"),
    "body-figure": ("backend.body.figure", "main", "draw docs/free_body_model.png"),
    "demo": ("backend.demo", "main", "the main job on the embedded example (README)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        module, function, _ = PASSTHROUGH[argv[0]]
        return getattr(importlib.import_module(module), function)(argv[1:])
    from backend.body import free_model, free_model_build

    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build-body-model", help="generate the free SMPL-format model from Anny (needs anny)")
    p.add_argument("--out", default=str(free_model.FREE_MODEL_PATH))
    p.add_argument("--samples", type=int, default=free_model_build.DEFAULT_SAMPLES)
    p.add_argument("--seed", type=int, default=free_model_build.DEFAULT_SEED)
    p.add_argument("--check", action="store_true", help="regenerate and compare with --out instead of writing")
    p.set_defaults(run=cmd_build_body_model)

    p = sub.add_parser("refine", help="refine SMPL motion from keypoints (ScoreHMR)")
    p.add_argument("--observations", required=True, help="OBS.npz: keypoints, image_size, [focal_length, ...]")
    p.add_argument("--init", help="INIT.npz (or an HMR 2.0 style file); default: the built-in regressor")
    p.add_argument("--mode", choices=["frame", "video", "multiview"], default="video")
    p.add_argument("--smpl", help="your SMPL model file (default: the free body model)")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--method", choices=["scorehmr", "smplify", "dposer", "per-frame-filter"], default="scorehmr",
                   help="ScoreHMR, or a baseline from backend/engine/baselines.py")
    p.add_argument("--variant", choices=["paper", "ours"], default="ours")
    p.add_argument("--iterations", type=int, help="outer iterations (default: the paper's)")
    p.add_argument("--smoothing", type=float, default=1.0, help="scales the temporal terms")
    p.add_argument("--keypoint-trust", type=float, default=1.0, help="scales the keypoint term")
    p.add_argument("--fov", type=float, default=55.0, help="field of view (deg) when OBS has no focal_length")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--progress-lines", action="store_true",
                   help="print machine-readable 'PROGRESS done/total' lines instead of a progress bar")
    p.set_defaults(run=cmd_refine)

    for name, (_, _, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text + " (--help after the name)")  # listed here, dispatched above

    args = parser.parse_args(argv)
    return args.run(args)
