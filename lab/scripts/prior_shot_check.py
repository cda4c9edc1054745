"""Refine examples/shot (frame mode) with given prior checkpoints; prints PA-MPJPE-14 / MPJPE-14 (mm) vs ground truth.

    python lab/scripts/prior_shot_check.py backend/assets/prior.pt out/tiny/prior.pt
        (options: [--frames 32] [--variant paper|ours])

End-to-end check that the engine loads a prior (any width, any context layout) and refines with it."""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from backend.contract.observations import load_observations
from backend.engine.api import Engine, EngineOptions
from backend.metrics import joint_errors

SHOT = Path(__file__).resolve().parents[2] / "examples" / "shot"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("priors", nargs="+")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--device", default="cpu")
    # docs/prior_variants.md was measured with the loop for every frame, since then variant 'paper' (the default
    # 'ours' fits the regressor's own start, backend/engine/frame_fit.py)
    p.add_argument("--variant", default="paper", choices=["paper", "ours"])
    args = p.parse_args()
    obs = load_observations(SHOT / "keypoints.npz", "frame")
    obs = {k: (v[:, :args.frames] if k == "keypoints" else v) for k, v in obs.items()}
    gt = np.load(SHOT / "ground_truth.npz")["joints"][:args.frames]
    for prior in args.priors:
        torch.manual_seed(0)
        engine = Engine.load(device=args.device, prior_path=Path(prior))
        out = engine.run(obs, mode="frame", options=EngineOptions(variant=args.variant))
        refined, start = joint_errors(out["joints"], gt), joint_errors(out["init_joints"], gt)
        print(f"{prior}: layout {engine.context_layout}, hidden {engine.prior.config['hidden']}: "
              f"PA-MPJPE-14 {start['pa_mpjpe14']:.1f} -> {refined['pa_mpjpe14']:.1f} mm, "
              f"MPJPE-14 {start['mpjpe14']:.1f} -> {refined['mpjpe14']:.1f} mm", flush=True)


if __name__ == "__main__":
    main()
