"""Throughput of many short clips: the batch runner on a local Ray cluster against the same clips one after
another in one process (``python -m backend batch --no-ray``), back to back in one run (docs/batch.md).

    python lab/scripts/bench_batch.py [--clips 100] [--frames 24] [--mode frame] [--num-cpus 2] [--device cpu]
                                  [--markdown OUT.md]

The clips are ``--frames``-frame excerpts of the example shot's keypoints (examples/shot/keypoints.npz,
keypoint files refined without footage), starting at successive frames.  Each runner writes into its own
fresh folder, so nothing is skipped.  Sequential: torch on 1 thread; Ray: one CPU (thread) per task.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend.batch.clip import ClipOptions  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from backend.batch.runner import BatchOptions, run  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)

SHOT_KEYPOINTS = ROOT / "examples" / "shot" / "keypoints.npz"


def write_clips(folder: Path, count: int, frames: int) -> list[str]:
    """``count`` keypoint files of ``frames`` frames each, cut from the example shot; their paths."""
    shot = dict(np.load(SHOT_KEYPOINTS))
    starts = shot["keypoints"].shape[0] - frames + 1
    paths = []
    for index in range(count):
        first = index % starts
        path = folder / f"clip{index:03d}.npz"
        np.savez(path, **{**shot, "keypoints": shot["keypoints"][first:first + frames]})
        paths.append(str(path))
    return paths


def timed_run(options: BatchOptions) -> tuple[float, dict]:
    """(wall seconds, summary) of one batch run; the summary gains the 1-minute load average before and
    after (the machine may be shared: the CPU seconds per clip do not depend on it)."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = run(options)
    summary["load_average"] = (before, os.getloadavg()[0])
    return time.perf_counter() - started, summary


def cpu_per_clip(summary: dict) -> float:
    """Mean CPU seconds of the clips' work (their worker's process time)."""
    cpu = [row["seconds"]["cpu"] for row in summary["clips"] if row["status"] == "done"]
    return sum(cpu) / max(1, len(cpu))


def table(rows: list[tuple[str, float, dict]], frames: int, device: str) -> str:
    """Markdown: one line per runner, the ratio against the first (sequential)."""
    lines = ["| runner | where | clips done | wall s | clips/s | frames/s | vs sequential | CPU s per clip | "
             "load average before -> after |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    base = rows[0][1]
    for name, seconds, summary in rows:
        done = summary["counts"].get("done", 0)
        cluster = summary["cluster"]
        where = (f"{cluster['nodes']} node, {cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs" if cluster["ray"]
                 else "1 process, 1 thread")
        lines.append(f"| {name} | {where} ({device}) | {done} | {seconds:.1f} | {done / seconds:.2f} | "
                     f"{done * frames / seconds:.1f} | {base / seconds:.2f}x | {cpu_per_clip(summary):.2f} | "
                     f"{summary['load_average'][0]:.1f} -> {summary['load_average'][1]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--mode", choices=("frame", "video"), default="frame")
    parser.add_argument("--iterations", type=int, help="engine outer iterations (default: its own)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--markdown", help="also write the table here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    clip = ClipOptions(mode=args.mode, device=args.device, iterations=args.iterations)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as work:
        work = Path(work)
        (work / "clips").mkdir()
        paths = write_clips(work / "clips", args.clips, args.frames)
        rows = []
        for name, use_ray in (("sequential", False), ("ray", True)):
            seconds, summary = timed_run(BatchOptions(clips=paths, out=str(work / name), clip=clip,
                                                      num_cpus=args.num_cpus, use_ray=use_ray, progress=True))
            rows.append((name, seconds, summary))
            print(f"{name}: {summary['counts']} in {seconds:.1f} s", flush=True)
    text = (f"{args.clips} clips x {args.frames} frames, mode {args.mode}, device {args.device}, "
            f"iterations {args.iterations or 'default'}, {os.cpu_count()} CPU cores\n\n"
            + table(rows, args.frames, args.device))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0 if all(s["counts"].get("done") == args.clips for _, _, s in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
