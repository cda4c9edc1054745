"""``python -m backend detect --footage SHOT.mp4 --out KP.npz [--frames A:B] [--preview P.mp4] [--force]
[--track N]``: detect the person's 2D keypoints in footage (``add_parser`` registers it, ``run`` runs it)."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds the ``detect`` command to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("detect", help="detect 2D keypoints in footage (MediaPipe BlazePose) -> KP.npz")
    p.add_argument("--footage", required=True, help="the video to detect the person in")
    p.add_argument("--out", required=True, help="keypoint file to write (.npz; --keypoints/--observations read it)")
    p.add_argument("--frames", help="footage frames START:STOP to detect (STOP excluded; default: all)")
    p.add_argument("--preview", help="also write a video (.mp4/.avi) of the footage with the detections drawn")
    p.add_argument("--force", action="store_true", help="overwrite --out / --preview if they exist")
    p.add_argument("--track", type=int, help="which person: 0 = the largest (default), 1 = the next largest, "
                   "... among the people of the first frame that shows that many")
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2),
                   help="BlazePose model; only 1 (full, shipped in the wheel) runs: 0 and 2 would be downloaded")
    p.add_argument("--progress-lines", action="store_true",
                   help="print machine-readable 'PROGRESS done/total' lines instead of a progress bar")
    p.set_defaults(run=run)
    return p


def progress_reporter(args):
    """(progress callback, bar or None): a tqdm bar on stderr, or PROGRESS lines on stdout."""
    if args.progress_lines:
        return (lambda done, total: print(f"PROGRESS {done}/{total}", flush=True)), None
    from tqdm import tqdm

    bar = tqdm(desc="detect", unit="frame", file=sys.stderr, mininterval=1.0)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    return progress, bar


def _claim_out(path, force: bool) -> None:
    from backend.contract.errors import InputError
    from backend.contract.results import check_writable

    p = Path(path)
    if p.suffix.lower() != ".npz":
        raise InputError("the keypoint file is written as .npz (what --keypoints and --observations read); "
                         "name it .npz", p)
    if p.is_dir():
        raise InputError("is a folder; give a file name for the keypoints, e.g. out/keypoints.npz", p)
    if p.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it, or choose another --out", p)
    check_writable(p.parent)


def run(args) -> int:
    from backend.detect.blazepose import DetectorUnavailable, check_complexity
    from backend.detect.footage import check_footage, detect_footage, write_keypoint_file
    from backend.detect.preview import DetectionPreview
    from backend.contract.errors import InputError
    from backend.contract.frames import parse_frames

    bar = None
    try:
        check_complexity(args.model_complexity)
        _claim_out(args.out, args.force)
        frames = parse_frames(args.frames)
        if frames == "overlap":
            raise InputError("--frames overlap is for refine; give detect START:STOP footage frames")
        info = check_footage(args.footage)
        print(f"  {info.summary()}", flush=True)
        preview = DetectionPreview(args.preview, info.fps, (info.width, info.height), args.force) \
            if args.preview else None
        progress, bar = progress_reporter(args)
        with preview if preview is not None else contextlib.nullcontext():
            data, report = detect_footage(info, frames, args.track, progress=progress, on_frame=preview)
        if bar is not None:
            bar.close()
        write_keypoint_file(args.out, data, force=args.force)
    except (InputError, DetectorUnavailable) as exc:
        if bar is not None:
            bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("error: detection interrupted; nothing was written", file=sys.stderr)
        return 130
    for note in report.notes:
        print(f"  note: {note}")
    print(f"wrote {args.out}: {report.summary()}")
    if args.preview:
        print(f"wrote {args.preview}: the footage with the detections")
    return 0
