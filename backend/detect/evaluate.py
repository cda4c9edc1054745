"""Detector error against true 2D keypoints, and its speed: ``python -m backend.detect.evaluate``.

``error_statistics(detected (F,17,3), truth (F,17,2)) -> dict`` per COCO-17 joint (arrays (17,...))
and overall, in the simulator's terms (``backend.sim.detector_noise``):
  ``error_px``        (17,) mean distance detected-truth over the frames where the point is found;
  ``p90_px``          (17,) its 90th percentile;
  ``offset_px``       (17, 2) mean detected - truth (a systematic shift, e.g. a joint centre
                      defined differently from the body model's);
  ``spread_px``       (17, 2) per-axis standard deviation around that offset;
  ``spread_rel``      (17,) mean per-axis std as a fraction of the person's size (the larger side
                      of the true keypoints' box), comparable with ``jitter x JOINT_SIGMA_SCALE``;
  ``missed``          (17,) share of frames where the point has confidence < ``FOUND_CONF``;
  ``swapped``         (17,) share of frames where a left/right pair is closer to the crossed truth
                      (less than half the straight assignment's error) and its true points lie
                      at least ``SWAP_MIN_APART`` x size apart: a left/right swap;
  ``confidence``      (17,) mean confidence where found (``conf_logit0``);
  ``lag1_correlation`` the error's lag-1 autocorrelation over frames (``temporal_rho``);
  ``mean_error_px``, ``frames_missed`` (frames without any point).

The command detects the example shot (or ``--footage`` with ``--truth``'s ``keypoints2d``), prints
the table as markdown and the speed; run it on one core for the speed:
``OMP_NUM_THREADS=1 taskset -c 0 python -m backend.detect.evaluate``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from backend.contract.layout import COCO17_NAMES

__all__ = ["FOUND_CONF", "error_statistics", "format_table", "main"]

FOUND_CONF = 0.1          # a point below this confidence counts as missed
SWAP_MIN_APART = 0.05     # a left/right pair is checked for a swap when its true points are this far apart (x size)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shot"
_MIRROR = np.array([COCO17_NAMES.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
                    for n in COCO17_NAMES])


def _lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation over axis 0 of (F, ...) residuals, NaN-aware, pooled over the other axes."""
    x = x - np.nanmean(x, axis=0)
    a, b = x[1:], x[:-1]
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sum(a[ok] * b[ok]) / np.sqrt(np.sum(a[ok] ** 2) * np.sum(b[ok] ** 2)))


def error_statistics(detected: np.ndarray, truth: np.ndarray) -> dict:
    """See the module docstring.  detected (F,17,3) [x, y, conf], truth (F,17,2) pixels."""
    found = detected[..., 2] >= FOUND_CONF                                   # (F,17)
    diff = np.where(found[..., None], detected[..., :2] - truth, np.nan)     # (F,17,2)
    dist = np.linalg.norm(diff, axis=-1)                                     # (F,17), NaN where missed
    size = (truth.max(1) - truth.min(1)).max(-1)                             # (F,)
    straight = dist + dist[:, _MIRROR]
    crossed = np.linalg.norm(detected[..., :2] - truth[:, _MIRROR], axis=-1)
    crossed = crossed + crossed[:, _MIRROR]
    # Only pairs whose true points lie apart can be told swapped (feet together, head in profile).
    apart = np.linalg.norm(truth - truth[:, _MIRROR], axis=-1) > SWAP_MIN_APART * size[:, None]
    swapped = (crossed < 0.5 * straight) & apart & found & found[:, _MIRROR]
    offset = np.nanmean(diff, axis=0)
    spread = np.nanstd(diff, axis=0)
    return dict(
        joints=COCO17_NAMES, error_px=np.nanmean(dist, 0), p90_px=np.nanpercentile(dist, 90, axis=0),
        offset_px=offset, spread_px=spread, spread_rel=np.nanmean(spread, -1) / float(np.mean(size)),
        missed=1.0 - found.mean(0), confidence=np.nanmean(np.where(found, detected[..., 2], np.nan), 0),
        swapped=swapped.mean(0), lag1_correlation=_lag1(diff - offset),
        mean_error_px=float(np.nanmean(dist)), frames_missed=int((~found.any(-1)).sum()), frames=len(detected),
        person_size_px=float(np.mean(size)),
    )


def format_table(stats: dict) -> str:
    """The per-joint statistics as a markdown table, then the overall numbers."""
    rows = ["| joint | mean error px | p90 px | offset x, y px | spread x, y px | spread / size | confidence | missed "
            "| swapped |", "|---|---|---|---|---|---|---|---|---|"]
    for j, name in enumerate(stats["joints"]):
        rows.append(f"| {name} | {stats['error_px'][j]:.1f} | {stats['p90_px'][j]:.1f} | "
                    f"{stats['offset_px'][j][0]:+.1f}, {stats['offset_px'][j][1]:+.1f} | "
                    f"{stats['spread_px'][j][0]:.1f}, {stats['spread_px'][j][1]:.1f} | "
                    f"{stats['spread_rel'][j]:.4f} | {stats['confidence'][j]:.2f} | {100 * stats['missed'][j]:.0f}% | "
                    f"{100 * stats['swapped'][j]:.0f}% |")
    rows.append("")
    rows.append(f"Mean error {stats['mean_error_px']:.2f} px over {stats['frames']} frames "
                f"({stats['frames_missed']} without the person); person size {stats['person_size_px']:.0f} px; "
                f"error lag-1 autocorrelation {stats['lag1_correlation']:.2f}.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from backend.detect.footage import detect_footage

    parser = argparse.ArgumentParser(prog="python -m backend.detect.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--footage", default=str(EXAMPLE / "shot.mp4"))
    parser.add_argument("--truth", default=str(EXAMPLE / "ground_truth.npz"), help=".npz with keypoints2d (F,17,2)")
    args = parser.parse_args(argv)
    data, report = detect_footage(args.footage)
    with np.load(args.truth) as z:
        truth = z["keypoints2d"][report.first_frame:report.first_frame + report.frames]
    print(format_table(error_statistics(data["keypoints"], truth)))
    print(f"Speed ({report.footage.width}x{report.footage.height}, decoding included): {report.frames} frames in "
          f"{report.seconds:.2f} s wall = {report.frames_per_second:.1f} frames/s; {report.cpu_seconds:.2f} CPU s = "
          f"{report.frames / report.cpu_seconds:.1f} frames per CPU second.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
