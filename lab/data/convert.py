"""Convert every usable CMU clip to SMPL parameters of our body model.

    python -m lab.data.convert --out cache/dataset [--limit N] [--workers 2]

Per clip: skip unknown capture rate and glitch=1 clips; resample to 24 real frames/s (2x clips:
2F-1 frames); subtract floor_offset_cm; mocap FK; rotation transfer; batched fit (retarget.py)
with betas and target offsets calibrated once on a subset; toes bent to keep the soles above the
floor; grounding (per clip, the floor is the 5th percentile over frames of the lowest sole vertex,
moved to y = 0; see retarget.fit_toes); drop clips whose residual is poor.  Writes
cmu_smpl_train.npz and cmu_smpl_val.npz (layout in dataset.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend.body.body_model import BodyModel
from backend.rotations import matrix_to_axis_angle
from lab.data import cmu, dataset, retarget

BATCH_FRAMES = 8192               # frames per fit batch (whole clips; a longer clip goes alone)
CALIB_CLIPS_PER_SUBJECT = 2
CALIB_FRAMES_PER_CLIP = 12
CALIB_ITERS = 400
# A clip is dropped when its fit is poor: mean residual or 95th percentile (over frames x joints).
MAX_CLIP_MEAN_MM = 15.0
MAX_CLIP_P95_MM = 40.0


# -- clip selection and mocap inputs ------------------------------------------------------------
def select_clips(clips: list[cmu.ClipInfo]) -> tuple[list[cmu.ClipInfo], dict[str, list[str]]]:
    """Usable clips, and skipped clip ids by reason."""
    usable, skipped = [], {"unknown capture rate": [], "glitch=1": []}
    for c in clips:
        if c.real_time_scale is None:
            skipped["unknown capture rate"].append(c.clip_id)
        elif c.glitch:
            skipped["glitch=1"].append(c.clip_id)
        else:
            usable.append(c)
    return usable, skipped


def resampled_length(c: cmu.ClipInfo) -> int:
    return int(np.floor((c.frames - 1) * c.real_time_scale + 1e-9)) + 1


def clip_mocap(sk: cmu.Skeleton, root_cm: np.ndarray, euler_deg: np.ndarray, c: cmu.ClipInfo):
    """Stored arrays -> mocap FK (F',43,3) m and (F',43,3,3) at 24 real fps, floor offset removed."""
    root_cm, local_R = cmu.resample(root_cm, cmu.local_rotations(sk, euler_deg), c.real_time_scale)
    root_cm = root_cm - np.array([0.0, 0.0, c.floor_offset_cm])   # file axes are Z up
    return cmu.fk(sk, root_cm, local_R)


def make_jobs(clips: list[cmu.ClipInfo], batch_frames: int = BATCH_FRAMES) -> list[list[cmu.ClipInfo]]:
    """Consecutive clips packed into batches of at most batch_frames (resampled) frames."""
    jobs, cur, n = [], [], 0
    for c in clips:
        m = resampled_length(c)
        if cur and n + m > batch_frames:
            jobs.append(cur)
            cur, n = [], 0
        cur.append(c)
        n += m
    return jobs + ([cur] if cur else [])


# -- calibration --------------------------------------------------------------------------------
def calibration_subset(clips: list[cmu.ClipInfo]) -> list[cmu.ClipInfo]:
    """The first CALIB_CLIPS_PER_SUBJECT clips of every training subject (clips.tsv order)."""
    per: dict[int, list] = {}
    for c in clips:
        if dataset.split_of(c.subject) == "train" and len(per.setdefault(c.subject, [])) < CALIB_CLIPS_PER_SUBJECT:
            per[c.subject].append(c)
    return [c for cs in per.values() for c in cs]


def run_calibration(bm: BodyModel, sk: cmu.Skeleton, clips: list[cmu.ClipInfo], root: Path,
                    iters: int = CALIB_ITERS, frames_per_clip: int = CALIB_FRAMES_PER_CLIP) -> retarget.Calibration:
    """Shared betas and target offsets from evenly spaced frames of a subset of clips."""
    Ps, Gs = [], []
    loader = _SubjectCache(root)
    for c in calibration_subset(clips) or clips[:CALIB_CLIPS_PER_SUBJECT]:   # (a --limit run without train clips)
        P, G = clip_mocap(sk, *loader.get(c), c)
        idx = np.linspace(0, len(P) - 1, frames_per_clip).round().astype(int)
        Ps.append(P[idx])
        Gs.append(G[idx])
    P, G = np.concatenate(Ps), np.concatenate(Gs)
    return retarget.calibrate(bm, sk, P, G, np.zeros(len(P) - 1, bool), iters=iters)


# -- fitting (runs in the workers) --------------------------------------------------------------
class _SubjectCache:
    """Loads one subject file at a time (jobs are ordered by subject)."""

    def __init__(self, root: Path):
        self.root, self.subject, self.clips = root, None, {}

    def get(self, c: cmu.ClipInfo):
        if c.subject != self.subject:
            self.subject, self.clips = c.subject, cmu.load_subject(c.subject, self.root)
        return self.clips[c.clip_id]


class ClipFitter:
    """Everything a worker needs to fit jobs: skeleton, body model, frozen calibration."""

    def __init__(self, root: Path, calib: retarget.Calibration, cfg: retarget.FitConfig):
        self.sk, self.bm = cmu.load_skeleton(root), BodyModel.load(None)
        self.calib, self.cfg = calib, cfg
        self.seg, self.A = retarget.transfer_constants(self.sk, retarget.rest_joints(self.bm, calib.betas))
        self.soles = retarget.Soles.build(self.bm, calib.betas)
        self.loader = _SubjectCache(root)

    def fit_job(self, job: list[cmu.ClipInfo], windows: list[tuple[int, int]] | None = None) -> list[dict]:
        """Fits whole clips, or only the resampled frames [start, stop) of ``windows`` (one per clip)."""
        targets, init, lengths = [], [], []
        for i, c in enumerate(job):
            P, G = clip_mocap(self.sk, *self.loader.get(c), c)
            if windows is not None:
                P, G = P[slice(*windows[i])], G[slice(*windows[i])]
            targets.append(retarget.mocap_targets(self.sk, P, G, self.calib.offsets))
            init.append(retarget.transfer_rotations(G, self.seg, self.A))
            lengths.append(len(P))
        same_clip = np.concatenate([np.r_[np.ones(n - 1, bool), False] for n in lengths])[:-1]
        R, transl, dist = retarget.fit_clip_batch(self.bm, np.concatenate(init), np.concatenate(targets),
                                                  same_clip, self.calib.betas, self.cfg)
        R, floor = retarget.fit_toes(self.bm, R, transl, same_clip, self.soles, self.cfg)
        lowest = self.soles.lowest(self.bm, R, transl) - floor      # lowest sole vertex above the floor
        out, s = [], 0
        for c, n in zip(job, lengths):
            shift = float(floor[s])
            t = transl[s:s + n].copy()
            t[:, 1] -= shift
            aa = matrix_to_axis_angle(torch.from_numpy(R[s:s + n])).numpy().reshape(n, -1)
            out.append({"clip_id": c.clip_id, "pose": aa.astype(np.float32), "transl": t.astype(np.float32),
                        "residual": dist[s:s + n].astype(np.float32), "ground_shift": shift,
                        "lowest_sole": lowest[s:s + n].astype(np.float32)})
            s += n
        return out


_FITTER: ClipFitter | None = None


def _init_worker(root, calib, cfg):
    global _FITTER
    torch.set_num_threads(1)
    _FITTER = ClipFitter(Path(root), calib, cfg)


def _fit_job(job):
    return _FITTER.fit_job(job)


def fit_all(jobs, root: Path, calib, cfg, workers: int, progress: bool = True) -> dict[str, dict]:
    """Fit every job (in ``workers`` processes when > 1); clip_id -> result."""
    total = sum(resampled_length(c) for job in jobs for c in job)
    results = {}
    with tqdm(total=total, unit="frame", disable=not progress, desc="fit") as bar:
        if workers <= 1:
            fitter = ClipFitter(root, calib, cfg)
            for job in jobs:
                for r in fitter.fit_job(job):
                    results[r["clip_id"]] = r
                    bar.update(len(r["transl"]))
            return results
        # spawn: the parent already ran torch (calibration), which fork does not survive reliably.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(str(root), calib, cfg)) as pool:
            for fut in as_completed([pool.submit(_fit_job, job) for job in jobs]):
                for r in fut.result():
                    results[r["clip_id"]] = r
                    bar.update(len(r["transl"]))
    return results


# -- assembling the splits ----------------------------------------------------------------------
def residual_stats(res_mm: np.ndarray) -> dict:
    """Mean and percentiles (mm) of residuals (any shape)."""
    r = res_mm.ravel()
    if r.size == 0:
        return {}
    return {"mean": round(float(r.mean()), 2), **{f"p{q}": round(float(np.percentile(r, q)), 2)
                                                  for q in (50, 90, 95, 99)}, "max": round(float(r.max()), 2)}


def assemble_split(clips: list[cmu.ClipInfo], results: dict[str, dict], betas: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame and per-clip arrays of one split (clips in clips.tsv order)."""
    lengths = np.array([len(results[c.clip_id]["transl"]) for c in clips], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    pose = np.concatenate([results[c.clip_id]["pose"] for c in clips]) if clips else np.zeros((0, 72), np.float32)
    transl = np.concatenate([results[c.clip_id]["transl"] for c in clips]) if clips else np.zeros((0, 3), np.float32)
    res = [results[c.clip_id]["residual"] * 1000 for c in clips]
    return {
        "global_orient": pose[:, :3], "body_pose": pose[:, 3:], "transl": transl,
        "betas": betas.astype(np.float32),
        "clip_index": np.repeat(np.arange(len(clips)), lengths).astype(np.int32),
        "frame_index": np.concatenate([np.arange(n) for n in lengths]).astype(np.int32) if clips
        else np.zeros(0, np.int32),
        "clip_ids": np.array([c.clip_id for c in clips], dtype="<U8"),
        "clip_start": starts.astype(np.int64), "clip_length": lengths,
        "subject": np.array([c.subject for c in clips], np.int32),
        "fps": np.int32(dataset.FPS),
        "residual_mm": np.array([r.mean() for r in res], np.float32),
        "residual_p95_mm": np.array([np.percentile(r, 95) for r in res], np.float32),
        "ground_shift_mm": np.array([results[c.clip_id]["ground_shift"] * 1000 for c in clips], np.float32),
    }


def contact_stats(clips: list[cmu.ClipInfo], results: dict[str, dict]) -> dict:
    """Lowest sole vertex above the floor (mm) over all frames: how deep feet go below it."""
    low = np.concatenate([results[c.clip_id]["lowest_sole"] for c in clips]) * 1000 if clips else np.zeros(1)
    return {f"p{q}": round(float(np.percentile(low, q)), 1) for q in (0.1, 1, 5, 25, 50)}


def split_counts(arrays: dict) -> dict:
    n = int(arrays["clip_length"].sum())
    return {"clips": len(arrays["clip_ids"]), "subjects": len(np.unique(arrays["subject"])),
            "frames": n, "hours": round(n / dataset.FPS / 3600, 3)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.data.convert", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=dataset.DEFAULT_DIR, help="output folder (default cache/dataset)")
    ap.add_argument("--limit", type=int, default=None, help="convert only the first N usable clips (smoke runs)")
    ap.add_argument("--workers", type=int, default=2, help="fitting processes (default 2)")
    ap.add_argument("--iters", type=int, default=retarget.FitConfig.iters, help="Adam iterations per batch")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    t0 = time.time()
    # One thread: the calibration is small, and two OpenMP threads on a busy 2-core machine stall.
    torch.set_num_threads(1)
    root = cmu.cmu_root()
    sk, bm = cmu.load_skeleton(root), BodyModel.load(None)
    usable, skipped = select_clips(cmu.read_clips(root))
    if args.limit is not None:
        usable = usable[:args.limit]
    cfg = retarget.FitConfig(iters=args.iters)

    calib = run_calibration(bm, sk, usable, root)
    t_calib = time.time() - t0
    results = fit_all(make_jobs(usable), root, calib, cfg, args.workers, progress=not args.quiet)
    t_fit = time.time() - t0 - t_calib

    poor = [c for c in usable if _is_poor(results[c.clip_id]["residual"] * 1000)]
    skipped[f"poor fit (mean > {MAX_CLIP_MEAN_MM} mm or p95 > {MAX_CLIP_P95_MM} mm)"] = [c.clip_id for c in poor]
    kept = [c for c in usable if c not in poor]
    all_res = np.concatenate([results[c.clip_id]["residual"] for c in kept]) * 1000 if kept else np.zeros((0, 20))

    meta = {
        "data_version": sha256(root / "clips.tsv"),
        "command": "python -m lab.data.convert " + " ".join(sys.argv[1:] if argv is None else argv),
        "source": "CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), cgspeed BVH, compact numpy release",
        "acknowledgement": "The data used in this project was obtained from mocap.cs.cmu.edu. "
                           "The database was created with funding from NSF EIA-0196217.",
        "body_model": "free default (backend/assets/free_body_model.npz), sha256 "
                      + sha256(Path(bm.source)),
        "fps": dataset.FPS, "frame": "body-model frame: Y up, metres, person faces +Z; floor at y = 0",
        "grounding": "after subtracting floor_offset_cm, per clip: floor = the "
                     f"{retarget.FLOOR_PERCENTILE:g}th percentile over frames of the lowest plantar-surface mesh "
                     "vertex (vertices within 1 cm of the feet's bottom in the zero pose), alternating "
                     f"{retarget.FLOOR_ROUNDS}x with bending the toes to keep the soles above it; floor moved to y = 0",
        "floor_contact_mm": contact_stats(kept, results),
        "val_subjects": list(dataset.VAL_SUBJECTS),
        "skipped": {k: {"count": len(v), "clips": v} for k, v in skipped.items()},
        "residual_mm": {"all": residual_stats(all_res),
                        "per_joint_mean": {n: round(float(all_res[:, j].mean()), 2) if len(all_res) else None
                                           for j, n in enumerate(retarget.FIT_JOINT_NAMES)},
                        "joints": list(retarget.FIT_JOINT_NAMES)},
        "calibration": calib.to_json(), "fit": asdict(cfg),
        "timing_s": {"calibration": round(t_calib, 1), "fit": round(t_fit, 1)},
        "workers": args.workers,
    }
    splits = {}
    for split in dataset.SPLITS:
        clips = [c for c in kept if dataset.split_of(c.subject) == split]
        splits[split] = assemble_split(clips, results, calib.betas)
        counts = split_counts(splits[split])
        counts["residual_mm"] = residual_stats(
            np.concatenate([results[c.clip_id]["residual"] for c in clips]) * 1000 if clips else np.zeros(0))
        meta.setdefault("counts", {})[split] = counts
    meta["counts"]["total"] = {k: sum(meta["counts"][s][k] for s in dataset.SPLITS)
                               for k in ("clips", "subjects", "frames", "hours")}
    meta["timing_s"]["total"] = round(time.time() - t0, 1)
    meta["timing_s"]["cpu_main"] = round(time.process_time(), 1)
    meta["timing_s"]["cpu_workers"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
                                            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime, 1)
    for split, arrays in splits.items():
        dataset.save_split(dataset.split_path(split, args.out), arrays, {**meta, "split": split})
    print(json.dumps({"counts": meta["counts"], "skipped": {k: v["count"] for k, v in meta["skipped"].items()},
                      "residual_mm": meta["residual_mm"]["all"], "timing_s": meta["timing_s"]}, indent=1))
    return 0


def _is_poor(res_mm: np.ndarray) -> bool:
    return bool(res_mm.mean() > MAX_CLIP_MEAN_MM or np.percentile(res_mm, 95) > MAX_CLIP_P95_MM)


if __name__ == "__main__":
    raise SystemExit(main())
