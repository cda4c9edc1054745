"""Refine from validated inputs to OUT.npz: the one path shared by the command line
(``python -m backend refine``, :mod:`backend.cli`) and the Blender add-on's in-process runner.

    engine = load_engine(smpl, device)              # the body model and trained weights checked first
    options = engine_options(mode, smoothing=..., iterations=...)
    result = refine(engine, obs, init, mode, options, out, progress=..., cancelled=...)

``obs`` is validated ``Observations`` (``backend.contract.observations`` / ``backend.contract.shot``),
``init`` an INIT dict or None; the result is a ``Result`` (``backend.contract.results``), also written
to ``out``.  Every problem the user can fix raises InputError (one line);
``cancelled()`` returning True stops the engine at its next iteration with :class:`Cancelled`.
Nothing heavy is imported with this module: torch loads in :func:`load_engine`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from backend.contract.errors import InputError
from backend.contract.observations import Observations
from backend.contract.results import Result

__all__ = ["WEIGHT_FILES", "ASSETS", "Cancelled", "missing_weights", "load_engine", "engine_options", "refine"]

ASSETS = Path(__file__).resolve().parent / "assets"
WEIGHT_FILES = ("regressor.pt", "prior.pt")

_ENGINE = {}  # (smpl, device) -> the engine loaded last, reused by the next refinement in this process


class Cancelled(Exception):
    """The refinement was cancelled (``cancelled()`` returned True); nothing was written."""


def missing_weights(assets: Path = ASSETS) -> list[str]:
    """Trained weight files the engine needs that are not in ``assets``."""
    return [name for name in WEIGHT_FILES if not (Path(assets) / name).is_file()]


def load_engine(smpl=None, device=None):
    """The engine (``Engine.load``) for the body model file ``smpl`` (None: the free body model) on
    ``device``, kept for the next call with the same arguments.  A wrong model file or missing trained
    weights raise InputError / SMPLFileError before anything heavy loads."""
    key = (str(smpl or ""), str(device or ""))
    if key not in _ENGINE:
        from backend.body.body_model import BodyModel
        from backend.engine.api import Engine

        BodyModel.load(smpl)  # a wrong model file is reported before the networks load
        if missing := missing_weights():
            raise InputError(f"the engine's trained weights are missing ({', '.join(missing)} in {ASSETS}): "
                             "reinstall the extension, or in a source checkout run `python -m lab convert-cmu` "
                             "then `python -m lab train all`")
        _ENGINE.clear()  # one engine at a time: let the previous one's memory go
        _ENGINE[key] = Engine.load(smpl, device=device)
    return _ENGINE[key]


def engine_options(mode: str, *, variant: str = "ours", smoothing: float = 1.0, keypoint_trust: float = 1.0,
                   iterations: int | None = None, motion_prior: str | None = None, height: float | None = None):
    """EngineOptions for ``mode``; ``iterations`` (None: the engine's default) replaces the outer loop's count;
    ``motion_prior`` (video) a motion prior checkpoint to refine with instead of the per-frame prior;
    ``height`` the person's known height in metres (None: unknown)."""
    from backend.engine.api import EngineOptions

    options = EngineOptions(variant=variant, smoothing=smoothing, keypoint_trust=keypoint_trust,
                            motion_prior=motion_prior, height=height)
    if iterations:
        loop, _ = options.resolved(mode)
        options.loop = replace(loop, iterations=iterations)
    return options


def refine(engine, obs: Observations, init: dict | None, mode: str, options, out, *, method: str = "scorehmr",
           progress=None, cancelled=None, force: bool = False) -> Result:
    """Run ``engine`` (or a baseline ``method``) on ``obs`` and write OUT.npz to ``out``.

    progress(done, total) is called on each outer iteration; Cancelled is raised once cancelled()
    is True.  Returns the engine's result (multi-view: with its leading view axis)."""
    def on_iteration(done, total):
        if cancelled is not None and cancelled():
            raise Cancelled
        if progress is not None:
            progress(done, total)

    if method == "scorehmr":
        result = engine.run(obs, init, mode, options, progress=on_iteration)
    else:
        from backend.engine.baselines import run_baseline

        try:
            arrays = run_baseline(engine, obs, init, mode, method)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        result = Result.from_arrays(arrays, per_view=mode == "multiview")
    if cancelled is not None and cancelled():
        raise Cancelled
    result.write(out, force=force)
    return result
