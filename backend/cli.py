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


def cmd_demo(args) -> int:
    from backend.demo import run_demo

    return run_demo(Path(args.out), smpl_path=args.smpl)


def main(argv: list[str] | None = None) -> int:
    from backend.body import free_model, free_model_build

    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build-body-model", help="generate the free SMPL-format model from Anny (needs anny)")
    p.add_argument("--out", default=str(free_model.FREE_MODEL_PATH))
    p.add_argument("--samples", type=int, default=free_model_build.DEFAULT_SAMPLES)
    p.add_argument("--seed", type=int, default=free_model_build.DEFAULT_SEED)
    p.add_argument("--check", action="store_true", help="regenerate and compare with --out instead of writing")
    p.set_defaults(run=cmd_build_body_model)

    p = sub.add_parser("demo", help="the main job on the embedded default")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--smpl", default=None, help="your own SMPL model file instead of the free default")
    p.set_defaults(run=cmd_demo)

    args = parser.parse_args(argv)
    return args.run(args)
