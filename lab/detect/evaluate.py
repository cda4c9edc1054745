"""The detector's error against true 2D keypoints as a table, and its speed: ``python -m lab detector-accuracy``.

The statistics are ``backend.detect.accuracy.error_statistics`` (what each one means is said there).
The command detects the example shot (or ``--footage`` with ``--truth``'s ``keypoints2d``), prints
the table as markdown and the speed; run it on one core for the speed:
``OMP_NUM_THREADS=1 taskset -c 0 python -m lab detector-accuracy``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from backend.detect.accuracy import error_statistics

__all__ = ["format_table", "main"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shot"


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

    parser = argparse.ArgumentParser(prog="python -m lab detector-accuracy", description=__doc__.split("\n")[0])
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
