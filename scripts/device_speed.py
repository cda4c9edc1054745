"""Speed of every engine mode and of the batch on one device, the CPU (1 thread) of the same run beside it:
the table of scripts/device_speed.sh (issue 21, item 2).

    python scripts/device_speed.py [--device cuda] [--frames 96] [--views-frames 48] [--batch-clips 8]
                                   [--batch-frames 24] [--baselines] [--markdown OUT.md]

Modes (the embedded examples): frame and video on examples/shot/keypoints.npz (its first ``--frames``),
multi-view calibrated and uncalibrated (cameras dropped) on examples/multiview/obs.npz (``--views-frames``
instants x 4 views); ``--baselines`` adds SMPLify and DPoser-style (frame) and the per-frame filter (video).  Each
row: one untimed warm-up on a short slice (CUDA context, kernels, the engine's caches), then the timed
run.  The batch: ``--batch-clips`` keypoint excerpts through the batch runner (Ray local cluster when ray
imports, each task one GPU share / one CPU; else one after another in this process, and the row says so).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHOT = ROOT / "examples" / "shot" / "keypoints.npz"
MULTIVIEW = ROOT / "examples" / "multiview" / "obs.npz"
WARMUP_FRAMES = 8
BASELINES = (("smplify", "frame"), ("dposer", "frame"), ("per-frame-filter", "video"))  # (method, its mode)


def shot_obs(mode: str, frames: int) -> dict:
    from backend.io.shot import load_shot

    return load_shot(None, str(SHOT), (0, frames), mode=mode).obs


def multiview_obs(frames: int, calibrated: bool) -> dict:
    from backend.contract.observations import validate_observations

    data = dict(np.load(MULTIVIEW))
    data["keypoints"] = data["keypoints"][:, :frames]
    if not calibrated:
        data.pop("cam_R"), data.pop("cam_t")
    return validate_observations(data, "multiview", path=MULTIVIEW)


def cases(args: argparse.Namespace) -> list[tuple[str, str, str, Callable[[int], dict]]]:
    """(row name, engine mode, method, obs(frames)) of every measured row."""
    rows = [("frame", "frame", "scorehmr", lambda n: shot_obs("frame", n)),
            ("video", "video", "scorehmr", lambda n: shot_obs("video", n)),
            ("multi-view calibrated (4 views)", "multiview", "scorehmr", lambda n: multiview_obs(n, True)),
            ("multi-view uncalibrated (4 views)", "multiview", "scorehmr", lambda n: multiview_obs(n, False))]
    if args.baselines:
        rows += [(f"baseline {method} ({mode})", mode, method, lambda n, mode=mode: shot_obs(mode, n))
                 for method, mode in BASELINES]
    return rows


def timed_refine(engine, obs: dict, mode: str, method: str) -> float:
    """Seconds of one refinement, the device synchronised before and after."""
    import torch

    from backend.engine.baselines import run_baseline

    def sync():
        if engine.device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    started = time.perf_counter()
    if method == "scorehmr":
        engine.run(obs, None, mode)
    else:
        run_baseline(engine, obs, None, mode, method)
    sync()
    return time.perf_counter() - started


def measure_modes(device: str, args: argparse.Namespace) -> dict:
    """{row name: (units, seconds)} on ``device``."""
    from backend import service

    engine = service.load_engine(None, device)
    figures = {}
    for name, mode, method, obs_of in cases(args):
        frames = args.views_frames if mode == "multiview" else args.frames
        timed_refine(engine, obs_of(min(WARMUP_FRAMES, frames)), mode, method)
        figures[name] = (frames, timed_refine(engine, obs_of(frames), mode, method))
        print(f"  {device}: {name}: {frames} in {figures[name][1]:.2f} s", flush=True)
    return figures


def measure_batch(device: str, args: argparse.Namespace, work: Path) -> tuple[int, float, str]:
    """(frames refined, seconds, how) of the batch runner on ``args.batch_clips`` excerpts."""
    from backend.batch.clip import ClipOptions
    from backend.batch.runner import BatchOptions, run

    shot = dict(np.load(SHOT))
    clips = work / f"clips-{device}"
    clips.mkdir()
    starts = shot["keypoints"].shape[0] - args.batch_frames + 1
    paths = []
    for index in range(args.batch_clips):
        first = (index * 5) % starts
        paths.append(str(clips / f"clip{index:03d}.npz"))
        np.savez(paths[-1], **{**shot, "keypoints": shot["keypoints"][first:first + args.batch_frames]})
    try:
        import ray  # noqa: F401 -- only checks that ray is installed

        use_ray = True
    except ImportError:
        use_ray = False
    cpus = 1 if device == "cpu" else args.batch_cpus
    options = BatchOptions(clips=paths, out=str(work / f"batch-{device}"), clip=ClipOptions(mode=args.batch_mode,
                           device=device), num_cpus=cpus, clips_per_gpu=args.clips_per_gpu, use_ray=use_ray,
                           progress=False)
    started = time.perf_counter()
    summary = run(options)
    seconds = time.perf_counter() - started
    cluster = summary["cluster"]
    sharing = f", {args.clips_per_gpu} clips per GPU" if cluster["gpus"] else ""
    how = (f"Ray, {cluster['cpus']:g} CPUs / {cluster['gpus']:g} GPUs{sharing}" if cluster["ray"]
           else "one after another in one process (no ray)")
    done = summary["counts"].get("done", 0)
    print(f"  {device}: batch: {done}/{args.batch_clips} clips in {seconds:.1f} s ({how})", flush=True)
    return done * args.batch_frames, seconds, how


def card_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({torch.get_num_threads()} threads)"


def table(device: str, card: str, on_device: dict, on_cpu: dict, batch: dict, args: argparse.Namespace) -> str:
    lines = [f"Device: **{card}** (`--device {device}`); CPU column: the same run, torch on 1 thread. "
             f"Frames: {args.frames} (shot), {args.views_frames} instants x 4 views (multi-view), "
             f"batch {args.batch_clips} clips x {args.batch_frames} frames ({args.batch_mode}).", "",
             f"| mode | units | {device} s | {device} units/s | CPU 1 thread s | CPU units/s | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = {**on_device}
    for name, (units, seconds) in rows.items():
        cpu_units, cpu_seconds = on_cpu[name]
        lines.append(f"| {name} | {units} {'instants' if 'multi' in name else 'frames'} | "
                     f"{seconds:.2f} | {units / seconds:.1f} | {cpu_seconds:.2f} | {cpu_units / cpu_seconds:.1f} | "
                     f"{cpu_seconds / seconds * units / cpu_units:.1f}x |")
    if batch:
        (frames, seconds, how), (cpu_frames, cpu_seconds, cpu_how) = batch[device], batch["cpu"]
        lines.append(f"| batch ({how}; CPU: {cpu_how}) | {frames} frames | {seconds:.2f} | {frames / seconds:.1f} | "
                     f"{cpu_seconds:.2f} | {cpu_frames / cpu_seconds:.1f} | "
                     f"{(frames / seconds) / (cpu_frames / cpu_seconds):.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--frames", type=int, default=96, help="shot frames for frame / video")
    parser.add_argument("--views-frames", type=int, default=48, help="multi-view instants (4 views each)")
    parser.add_argument("--baselines", action="store_true", help="also the baselines")
    parser.add_argument("--batch-clips", type=int, default=8, help="0: no batch row")
    parser.add_argument("--batch-frames", type=int, default=24)
    parser.add_argument("--batch-mode", choices=("frame", "video"), default="video")
    parser.add_argument("--batch-cpus", type=int, default=4, help="CPUs of the device's local Ray cluster")
    parser.add_argument("--clips-per-gpu", type=int, default=4, help="batch tasks sharing the GPU")
    parser.add_argument("--markdown", help="write the table here (and a .json beside it)")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (try --device cpu)", file=sys.stderr)
        return 2
    card = card_name(args.device)
    print(f"device: {card}", flush=True)
    on_device = measure_modes(args.device, args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    on_cpu = measure_modes("cpu", args)
    torch.set_num_threads(threads)
    batch = {}
    if args.batch_clips:
        with tempfile.TemporaryDirectory(prefix="device-speed-") as work:
            batch[args.device] = measure_batch(args.device, args, Path(work))
            if args.device != "cpu":
                torch.set_num_threads(1)
                batch["cpu"] = measure_batch("cpu", args, Path(work))
    text = table(args.device, card, on_device, on_cpu, batch, args)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
        Path(args.markdown).with_suffix(".json").write_text(json.dumps(
            dict(card=card, device=args.device, modes=on_device, cpu=on_cpu, batch=batch, args=vars(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
