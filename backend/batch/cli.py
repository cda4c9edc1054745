"""``python -m backend batch CLIPS_OR_FOLDERS... --out DIR [options]``: detect -> refine -> export every
clip as a Ray task (docs/batch.md)."""
from __future__ import annotations

import argparse
import sys

from backend.contract.batch_options import preset_error, shared_parser
from backend.contract.observations import DEFAULT_FOV_DEG

__all__ = ["parser", "main"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend batch", parents=[shared_parser()],
        description="Refine many clips at once, each as a Ray task: detect (unless --keypoints-dir has the "
                    "clip's keypoints) -> refine -> export into OUT/<clip>/; OUT/summary.json lists every clip. "
                    "A second run skips the clips already done with the same inputs and options.")
    p.add_argument("clips", nargs="+", metavar="CLIP_OR_FOLDER",
                   help="videos (keypoints detected unless --keypoints-dir has them), keypoint files (refined "
                        "without footage), or folders of either")
    p.add_argument("--out", required=True, help="output folder: OUT/<clip>/ per clip and OUT/summary.json")
    p.add_argument("--keypoints-dir", help="keypoints of the videos by name: <clip>.npz/.json/.npy, "
                                           "<clip>.keypoints.npz or an OpenPose folder <clip>/")
    p.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                   help="field of view (deg) when the keypoints have no focal length")
    p.add_argument("--fps", type=float, help="frame rate of keypoint files without footage nor fps")
    p.add_argument("--track", type=int, help="which detected person (0 = the largest, default)")
    p.add_argument("--blend", action="store_true", help="also write OUT/<clip>/<clip>.blend (needs Blender)")
    p.add_argument("--bvh", action="store_true", help="also export OUT/<clip>/<clip>.bvh (needs Blender)")
    p.add_argument("--fbx", action="store_true", help="also export OUT/<clip>/<clip>.fbx (needs Blender)")
    p.add_argument("--blender", metavar="PATH", help="a Python with the bpy module, or a Blender executable, for "
                                                     "the exports (default: this Python, else blender on PATH)")
    p.add_argument("--no-ray", action="store_true", help="one clip after another in this process, without Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from(args: argparse.Namespace):
    """The runner's BatchOptions of parsed arguments."""
    from backend.batch.clip import ClipOptions
    from backend.batch.runner import BatchOptions

    clip = ClipOptions(mode=args.mode, device=args.device, smpl=args.smpl, iterations=args.iterations, fov=args.fov,
                       fps=args.fps, track=args.track, blend=args.blend, bvh=args.bvh, fbx=args.fbx,
                       retarget=args.retarget, preset=args.preset, blender=args.blender)
    return BatchOptions(clips=args.clips, out=args.out, keypoints_dir=args.keypoints_dir, clip=clip,
                        ray_address=args.ray_address, num_cpus=args.num_cpus, cpus_per_clip=args.cpus_per_clip,
                        clips_per_gpu=args.clips_per_gpu, use_ray=not args.no_ray, progress=not args.no_progress)


def report(summary: dict) -> str:
    """The lines printed after a run: failed clips, counts, the cluster."""
    lines = [f"{row['clip']}: FAILED: {row['message']}" for row in summary["clips"] if row["status"] == "failed"]
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    cluster = summary["cluster"]
    where = (f"Ray cluster {cluster['address']} ({cluster['nodes']} node(s), {cluster['cpus']:g} CPUs, "
             f"{cluster['gpus']:g} GPUs)" if cluster["ray"] else "this process")
    lines.append(f"{len(summary['clips'])} clips: {counts} in {summary['wall_s']:.1f} s on {where}; "
                 f"{summary['out']}/summary.json")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when every clip is done or skipped, 1 when any failed, 2 for bad arguments, 130 when
    interrupted."""
    from backend.batch.runner import Interrupted, run
    from backend.contract.errors import InputError

    args = parser().parse_args(argv)
    if message := preset_error(args.preset, args.retarget):
        print(f"error: {message}", file=sys.stderr)
        return 2
    if args.retarget and not (args.blend or args.bvh or args.fbx):
        print("error: --retarget changes the exports: add --blend, --bvh or --fbx", file=sys.stderr)
        return 2
    try:
        summary = run(options_from(args))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        print(f"error: the batch runs its clips on Ray, which {sys.executable} lacks: pip install -c "
              "requirements/constraints.txt -r requirements/batch.txt (or --no-ray: one clip after another)",
              file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(report(exc.summary), file=sys.stderr)
        print("interrupted: unfinished clips left nothing behind; run again to go on", file=sys.stderr)
        return 130
    print(report(summary))
    return 1 if summary["counts"].get("failed") else 0
