"""The batch options both entry points share, defined once: ``python -m backend batch``
(:mod:`backend.batch.cli`) and build.py's batch inside Blender (``build.py -- --footage ... --ray``),
which hands its clips to the same runner by passing these options on (:func:`runner_arguments`).

Each entry point builds its parser with ``parents=[shared_parser()]``; the options only one of them has
(build.py's ``--fov`` overrides a keypoint file's focal length, the runner's only stands in for a
missing one) stay in that entry point.  Only argparse here, as everywhere in the contract: build.py
imports this before Blender has registered the add-on, and the add-on never imports torch or ray.
"""
from __future__ import annotations

import argparse

__all__ = ["MODES", "DEVICES", "RAY_ONLY", "shared_parser", "shared_dests", "runner_arguments", "preset_error",
           "ray_options_given"]

MODES = ("video", "frame")
DEVICES = ("cpu", "cuda")
# The options that only mean something on a Ray cluster (build.py accepts them with --ray only).
RAY_ONLY = ("ray_address", "num_cpus", "cpus_per_clip", "clips_per_gpu")


def shared_parser() -> argparse.ArgumentParser:
    """A parser of the shared options only, to be given as ``parents`` to each entry point's parser."""
    parser = argparse.ArgumentParser(add_help=False)
    engine = parser.add_argument_group("engine (the same in python -m backend batch and build.py's batch)")
    engine.add_argument("--mode", choices=MODES, default="video", help="engine mode")
    engine.add_argument("--iterations", type=int, help="engine outer iterations (default: its own)")
    engine.add_argument("--smpl", help="your SMPL model file (default: the free body model)")
    engine.add_argument("--device", choices=DEVICES,
                        help="default: CUDA when available (on a Ray cluster: when it has GPUs; each task then "
                             "takes a GPU)")
    engine.add_argument("--retarget", metavar="CHARACTER.blend",
                        help="retarget onto the character armature of this .blend (BVH/FBX then export it)")
    engine.add_argument("--preset", help="bone preset for --retarget: rigify, rigify_metarig, rigify_deform, mixamo "
                                         "or ue5 (default: detected, else by the skeleton's shape)")
    ray = parser.add_argument_group("Ray cluster (docs/batch.md)")
    ray.add_argument("--ray-address", metavar="ADDRESS",
                     help="join this running Ray cluster (ray start --head ...; see docs/batch.md) instead of "
                          "starting a local one for the run")
    ray.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all of this machine's)")
    ray.add_argument("--cpus-per-clip", type=float, default=1.0, help="CPUs (torch threads) of each clip's task")
    ray.add_argument("--clips-per-gpu", type=int, default=1, help="with --device cuda: tasks sharing one GPU")
    return parser


def _actions() -> list[argparse.Action]:
    """The shared options' argparse actions (argparse has no public accessor for them)."""
    return [action for action in shared_parser()._actions if action.option_strings]


def shared_dests() -> list[str]:
    """The attribute names of the shared options on a parsed namespace."""
    return [action.dest for action in _actions()]


def runner_arguments(values: object) -> list[str]:
    """The shared options of ``values`` (a parsed namespace, or anything with those attributes) that differ
    from their defaults, as ``python -m backend batch`` arguments: how build.py hands them on."""
    args = []
    for action in _actions():
        value = getattr(values, action.dest)
        if value is not None and value != action.default:
            args += [action.option_strings[0], str(value)]
    return args


def preset_error(preset: str | None, retarget: str | None) -> str | None:
    """The message for a --preset without --retarget (both entry points refuse it), else None."""
    return "--preset goes with --retarget" if preset and not retarget else None


def ray_options_given(values: object) -> list[str]:
    """The Ray cluster options of ``values`` set to something else than their defaults, as --names."""
    return [action.option_strings[0] for action in _actions()
            if action.dest in RAY_ONLY and getattr(values, action.dest) not in (None, action.default)]
