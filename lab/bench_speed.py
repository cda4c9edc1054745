"""Speed of the engine on one CPU thread against another version of the code, measured back to back.

    python -m lab bench-speed [--against GITREF] [--threads 1] [--repeats 2] [--memory-minutes 10]
                              [--dataset DIR] [--no-accuracy] [--profile] [--frames N]

Each version runs in its own worker process (this code, and GITREF's in a temporary ``git worktree``,
PYTHONPATH at it); the timed runs alternate old, new, old, new so that the load of a shared machine
falls on both.  Modes, through the Python API (``Engine.run``, default options):

* video: the example shot (examples/shot/keypoints.npz), frames/s;
* frame: the same keypoints as single frames, frames/s;
* calibrated: examples/multiview's first 3 views, instants/s;
* memory: the shot tiled to ``--memory-minutes`` at 30 fps in video mode, peak RSS of a fresh process (one
  outer iteration of the loop: memory does not grow with iterations, see lab.bench's long clip).

Accuracy (unless ``--no-accuracy``) on the tuning subjects only (lab.bench_common.SUBJECT_PARTS):
simulated video clips (medium noise) through Engine.run, the real-detection tuning excerpts
(docs/benchmark/detections_val64_tuning), simulated single frames (the regressor's start, frame mode)
and simulated calibrated instants (3 views).  PA-MPJPE-14 / MPJPE-14 (mm) and accel (mm/frame^2).
``--profile`` prints, instead, where the time goes in each mode for this code (:func:`profile_sections`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARK = "@@bench-speed "
SPEED_MODES = ("video", "frame", "calibrated")
CALIBRATED_VIEWS = 3
MEMORY_FPS = 30
SEED = 0


# -- the worker (runs inside either version's code) --------------------------------------------------
def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def shot_obs(frames: int | None, mode: str = "video", tile_to: int | None = None):
    """The example shot's keypoints as a validated OBS: its first ``frames`` frames, or tiled to ``tile_to``."""
    from backend.contract.observations import validate_observations

    with np.load(ROOT / "examples/shot/keypoints.npz") as z:
        d = {k: z[k] for k in z.files}
    kp = d["keypoints"][:frames] if frames else d["keypoints"]
    if tile_to:
        kp = np.concatenate([kp] * -(-tile_to // len(kp)))[:tile_to]
        d["fps"] = np.float64(MEMORY_FPS)
    return validate_observations(dict(d, keypoints=kp), mode)


def multiview_obs(instants: int | None, views: int = CALIBRATED_VIEWS):
    """examples/multiview's first ``views`` calibrated views, first ``instants`` instants, as a validated OBS."""
    from backend.contract.observations import validate_observations

    with np.load(ROOT / "examples/multiview/obs.npz") as z:
        d = {k: z[k] for k in z.files}
    d = {k: (v[:views] if k not in ("fps",) else v) for k, v in d.items()}
    if instants:
        d["keypoints"] = d["keypoints"][:, :instants]
    return validate_observations(d, "multiview")


class Worker:
    """The engine of one version of the code, loaded once, running the bench's tasks."""

    def __init__(self, threads: int, dataset: str | None):
        import torch

        torch.set_num_threads(threads)
        from backend.engine.api import Engine

        self.engine = Engine.load(device="cpu")
        self.dataset = dataset

    def speed(self, mode: str, frames: int | None) -> dict:
        obs = multiview_obs(frames) if mode == "calibrated" else shot_obs(frames, mode)
        run_mode = "multiview" if mode == "calibrated" else mode
        t0, c0 = time.perf_counter(), time.process_time()
        res = self.engine.run(obs, None, run_mode)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = obs["keypoints"].shape[1]
        info = json.loads(str(res["info"]))
        return dict(seconds=seconds, cpu_seconds=cpu, items=n, per_s=n / seconds, per_cpu_s=n / cpu,
                    evaluations_per_item=info["denoiser_evaluations"] / n)

    def memory(self, minutes: float) -> dict:
        from backend.engine.api import EngineOptions
        from backend.engine.scorehmr import LoopOptions

        frames = max(int(minutes * 60 * MEMORY_FPS), 8)
        obs = shot_obs(None, "video", tile_to=frames)
        reset = _peak_rss_reset()
        t0 = time.perf_counter()
        res = self.engine.run(obs, None, "video", EngineOptions(loop=LoopOptions(iterations=1)))
        return dict(frames=frames, seconds=time.perf_counter() - t0, peak_mb=_status_mb("VmHWM"), reset=reset,
                    finite=bool(np.isfinite(res["joints"]).all()))

    def accuracy(self, sizes: dict) -> dict:
        """Errors per accuracy task on the tuning subjects (sizes: videos, video_length, frames, instants,
        excerpts; 0 leaves a task out)."""
        out = {}
        if sizes["excerpts"]:
            out["video (detections)"] = self._detections(sizes["excerpts"])
        if sizes["videos"] or sizes["frames"] or sizes["instants"]:
            from lab.bench import load_validation

            data = load_validation("tuning", self.dataset)
            if sizes["videos"]:
                out["video (simulated)"] = self._sim_video(data, sizes["videos"], sizes["video_length"])
            if sizes["frames"]:
                out["frame (simulated)"] = self._sim_frames(data, sizes["frames"])
            if sizes["instants"]:
                out["calibrated (simulated)"] = self._sim_calibrated(data, sizes["instants"])
        return out

    def _detections(self, limit: int) -> dict:
        from backend.body.body_model import BodyModel
        from lab.bench_common import SUBJECT_PARTS, video_errors
        from lab.sim.calibrate import excerpt_obs, load_chunks, truth_joints
        import torch

        data = load_chunks(ROOT / "docs/benchmark/detections_val64_tuning")
        truth = truth_joints(BodyModel.load(None, dtype=torch.float64), data)
        subject = [int(c.split("_")[0]) for c in data["clip_ids"]]
        seen = (data["detected"][:, :, :17, 2] > 0).any(-1).all(-1)
        keep = [i for i in range(len(truth)) if subject[i] in SUBJECT_PARTS["tuning"] and seen[i]][:limit]
        rows = [video_errors(self.engine.run(excerpt_obs(data, i, "video"), None, "video")["joints"][None],
                             truth[i][None]) for i in keep]
        return dict(_mean(rows), n=len(rows))

    def _sim_video(self, data: dict, videos: int, length: int) -> dict:
        import torch

        from backend.contract.observations import validate_observations
        from lab.bench_common import FPS, video_errors
        from lab.data.dataset import window_starts
        from lab.sim.observations import video_observations

        rng = np.random.default_rng(SEED + 202)
        starts = window_starts(data, length, length)
        chosen = np.sort(rng.choice(starts, min(videos, len(starts)), replace=False))
        idx = chosen[:, None] + np.arange(length)[None]
        params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                      betas=rng.standard_normal((len(chosen), 10)), transl=data["transl"][idx])
        obs = video_observations(self.engine.body, params, torch.Generator().manual_seed(SEED + 202), "medium",
                                 fps=FPS)
        rows = []
        for i in range(len(chosen)):
            o = validate_observations(dict(keypoints=obs["keypoints"][i].double().numpy(),
                                           image_size=obs["image_size"][i].double().numpy(),
                                           focal_length=np.float64(obs["focal_length"][i]),
                                           principal_point=obs["principal_point"][i].double().numpy(),
                                           fps=np.float64(FPS)), "video")
            pred = self.engine.run(o, None, "video")["joints"]
            rows.append(video_errors(pred[None], obs["gt_joints"][i].double().numpy()[None]))
        return dict(_mean(rows), n=len(rows))

    def _sim_frames(self, data: dict, frames: int) -> dict:
        from backend.engine import problems
        from backend.engine.api import EngineOptions
        from backend.engine.frame_fit import REGRESSOR_SOURCE
        from backend.engine.modes import frame
        from lab.bench import frame_observations
        from lab.bench_common import errors, joints_of

        e = self.engine
        obs = frame_observations(e.body, data, frames, SEED + 101, "medium")
        kp, focal, pp, size = (obs[k].float() for k in ("keypoints", "focal_length", "principal_point", "image_size"))
        reg = e.initial(kp, focal, pp)
        start = dict(rotmats=reg["rotmats"], betas=reg["betas"], transl=reg["transl"], source=REGRESSOR_SOURCE,
                     context=e.context(kp, focal, pp))
        res = frame.refine(e, problems.Observations(kp, focal, pp, size), start,
                           EngineOptions().for_mode("frame"))
        return dict(errors(joints_of(e, res), obs["gt_joints"].double().numpy()), n=int(kp.shape[0]))

    def _sim_calibrated(self, data: dict, instants: int) -> dict:
        import torch

        from backend.contract.observations import validate_observations
        from lab.bench_common import errors
        from lab.sim.observations import multiview_observations

        rng = np.random.default_rng(SEED + 303)
        n = min(instants, len(data["global_orient"]))
        idx = np.sort(rng.choice(len(data["global_orient"]), n, replace=False))
        params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                      betas=rng.standard_normal((n, 10)), transl=np.zeros((n, 3), np.float32))
        obs = multiview_observations(self.engine.body, params, torch.Generator().manual_seed(SEED + 303),
                                     CALIBRATED_VIEWS, "medium", calibrated=True)
        pred, gt = [], []
        for b in range(n):   # the instants are different people: one engine run each
            o = validate_observations(dict(keypoints=obs["keypoints"][b][:, None].double().numpy(),
                                           **{k: obs[k][b].double().numpy() for k in
                                              ("image_size", "focal_length", "principal_point", "cam_R", "cam_t")}),
                                      "multiview")
            pred.append(self.engine.run(o, None, "multiview")["joints"][0, 0])
            gt.append(obs["gt_joints"][b, 0].double().numpy())
        return dict(errors(np.stack(pred), np.stack(gt)), n=n)


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 2) for k in ("pa_mpjpe14", "mpjpe14", "accel")}


def worker_main(threads: int, dataset: str | None) -> int:
    """Answers task lines (JSON) on stdin with one MARK line each on stdout until stdin closes."""
    worker = Worker(threads, dataset or None)
    print(MARK + json.dumps(dict(ready=True)), flush=True)
    for line in sys.stdin:
        task = json.loads(line)
        kind = task.pop("task")
        with contextlib.redirect_stdout(sys.stderr):
            result = getattr(worker, kind)(**task)
        print(MARK + json.dumps(result), flush=True)
    return 0


# -- the driver ----------------------------------------------------------------------------------
WORKER_CODE = ("import importlib.util, sys; "
               "spec = importlib.util.spec_from_file_location('bench_speed_worker', {path!r}); "
               "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
               "sys.exit(m.worker_main({threads}, {dataset!r}))")


class Version:
    """A worker process running one version of the code (``root``: the checkout whose backend/ it imports)."""

    def __init__(self, name: str, root: Path, threads: int, dataset: str | None):
        self.name, self.root = name, root
        env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        code = WORKER_CODE.format(path=str(Path(__file__).resolve()), threads=threads, dataset=dataset or "")
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"the {self.name} worker ({self.root}) stopped (exit {self.proc.wait()})")

    def ask(self, task: str, **kwargs) -> dict:
        self.proc.stdin.write(json.dumps(dict(task=task, **kwargs)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


@contextlib.contextmanager
def checkout(ref: str):
    """A temporary detached ``git worktree`` of ``ref`` (a path to an existing checkout is used as is)."""
    if Path(ref).is_dir():
        yield Path(ref).resolve()
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    path = tmp / "code"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), ref], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def measure(versions: list, repeats: int, frames: int | None, memory_minutes: float, threads: int,
            dataset: str | None, sizes: dict | None, progress=print, start=Version, warmup: bool = True) -> dict:
    """Speed runs interleaved over the versions (old, new, old, new ...), then accuracy, then memory (a fresh
    worker each).  versions: [(name, root)], the baseline first; start(name, root, threads, dataset) makes a
    worker (:class:`Version`); ``warmup``: one short untimed run per mode and version first.  Returns per
    version: speed {mode: [runs]}, accuracy, memory."""
    out = {name: dict(speed={m: [] for m in SPEED_MODES}) for name, _ in versions}
    workers = [start(name, root, threads, dataset) for name, root in versions]
    try:
        for w in workers if warmup else ():     # first-call costs before anything is timed
            for mode in SPEED_MODES:
                w.ask("speed", mode=mode, frames=8)
        for r in range(repeats):
            for mode in SPEED_MODES:
                for w in workers:
                    res = w.ask("speed", mode=mode, frames=frames)
                    out[w.name]["speed"][mode].append(res)
                    progress(f"  {w.name:>8} {mode:<10} {res['per_s']:7.1f}/s  (repeat {r + 1})")
        if sizes:
            for w in workers:
                out[w.name]["accuracy"] = w.ask("accuracy", sizes=sizes)
                progress(f"  {w.name:>8} accuracy {out[w.name]['accuracy']}")
    finally:
        for w in workers:
            w.close()
    if memory_minutes > 0:
        for name, root in versions:
            w = start(name, root, threads, dataset)
            try:
                out[name]["memory"] = w.ask("memory", minutes=memory_minutes)
            finally:
                w.close()
            progress(f"  {name:>8} memory {out[name]['memory']}")
    return out


def table(results: dict, baseline: str, current: str) -> str:
    """One markdown table: per mode the baseline's and this code's speed (median of the runs; wall clock and
    per CPU second of the worker, which the load of other processes disturbs less) and ratio,
    then peak memory, then the accuracy rows (PA-MPJPE-14 / MPJPE-14 / accel, change)."""
    lines = ["| mode | measure | " + baseline + " | " + current + " | ratio |", "|---|---|---|---|---|"]
    med = lambda name, mode, key: float(np.median([r[key] for r in results[name]["speed"][mode]]))
    for mode in SPEED_MODES:
        unit = "instants" if mode == "calibrated" else "frames"
        for key, label in (("per_s", f"{unit}/s"), ("per_cpu_s", f"{unit} per CPU second")):
            a, b = med(baseline, mode, key), med(current, mode, key)
            lines.append(f"| {mode} | {label} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
        ea = results[baseline]["speed"][mode][0]["evaluations_per_item"]
        eb = results[current]["speed"][mode][0]["evaluations_per_item"]
        lines.append(f"| {mode} | denoiser evaluations per item | {ea:.0f} | {eb:.0f} | {eb / max(ea, 1e-9):.2f} |")
    if "memory" in results[current]:
        ma, mb = results[baseline]["memory"], results[current]["memory"]
        lines.append(f"| memory ({mb['frames']} frames) | peak RSS MB | {ma['peak_mb']:.0f} | {mb['peak_mb']:.0f} | "
                     f"{mb['peak_mb'] / ma['peak_mb']:.2f} |")
    acc_a, acc_b = results[baseline].get("accuracy", {}), results[current].get("accuracy", {})
    for task in acc_b:
        for key, label in (("pa_mpjpe14", "PA-MPJPE-14 mm"), ("mpjpe14", "MPJPE-14 mm"), ("accel", "accel")):
            if key in acc_b[task]:
                a, b = acc_a[task][key], acc_b[task][key]
                lines.append(f"| {task}, n={acc_b[task]['n']} | {label} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    return "\n".join(lines)


# -- profile -------------------------------------------------------------------------------------
SECTIONS = ("denoiser", "body model", "backward", "L-BFGS", "curvature")


class SectionTimer:
    """Exclusive wall time per section: a section's time excludes that of the sections called inside it,
    and each is also keyed by the outermost phase it ran in (loop, curvature, L-BFGS)."""

    def __init__(self):
        self.stack: list[str] = []
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[str, int] = {}
        self.child: list[float] = [0.0]

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            phase = next((s for s in self.stack if s in ("L-BFGS", "curvature")), "loop")
            self.stack.append(name)
            self.child.append(0.0)
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.process_time() - t0
                inner = self.child.pop()
                self.stack.pop()
                self.child[-1] += dt
                key = (name, phase)
                self.seconds[key] = self.seconds.get(key, 0.0) + dt - inner
                self.calls[name] = self.calls.get(name, 0) + 1
        return timed


@contextlib.contextmanager
def profile_sections():
    """Wraps, for the block, the denoiser networks' forward, BodyModel.joints_fast, the backward passes,
    the final fit's L-BFGS (backend.engine.polish.polish) and the curvature estimate
    (backend.engine.scorehmr.stable_scales).  Yields the SectionTimer."""
    import torch

    from backend.body.body_model import BodyModel
    from backend.engine import polish, scorehmr
    from backend.models import denoiser as denoiser_module

    timer = SectionTimer()
    patches = [(denoiser_module.DiffusionNet, "forward", "denoiser"), (BodyModel, "joints_fast", "body model"),
               (torch.autograd, "grad", "backward"), (torch.Tensor, "backward", "backward"),
               (polish, "polish", "L-BFGS"), (scorehmr, "stable_scales", "curvature")]
    fast = getattr(scorehmr, "FAST_DENOISER_CLASSES", ())     # this code's cheaper denoiser paths, if any
    patches += [(cls, "__call__", "denoiser") for cls in fast]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    for obj, attr, name in patches:
        setattr(obj, attr, timer.wrap(name, getattr(obj, attr)))
    try:
        yield timer
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)


def profile_main(threads: int, frames: int | None) -> str:
    """Where the time goes per mode for this code: a markdown table (CPU time of this process, so that other
    processes on a shared machine count less; items per CPU-second)."""
    import torch

    torch.set_num_threads(threads)
    from backend.engine.api import Engine

    engine = Engine.load(device="cpu")
    lines = ["| mode | items/s | denoiser evals/item | " + " | ".join(
        ["denoiser", "body model (loop)", "backward (loop)", "curvature (incl. its body model, backward)",
         "L-BFGS (own)", "body model (L-BFGS)", "backward (L-BFGS)", "other (Python, DDIM, start, world)"]) + " |",
        "|" + "---|" * 11]
    for mode in SPEED_MODES:
        obs = multiview_obs(frames) if mode == "calibrated" else shot_obs(frames, mode)
        run_mode = "multiview" if mode == "calibrated" else mode
        engine.run(shot_obs(8, mode) if mode != "calibrated" else multiview_obs(8), None, run_mode)  # warm-up
        with profile_sections() as timer:
            t0 = time.process_time()
            res = engine.run(obs, None, run_mode)
            total = time.process_time() - t0
        s = timer.seconds
        get = lambda name, phase: s.get((name, phase), 0.0)
        curvature = sum(v for (name, phase), v in s.items() if phase == "curvature" or name == "curvature")
        parts = [get("denoiser", "loop") + get("denoiser", "L-BFGS"), get("body model", "loop"),
                 get("backward", "loop"), curvature, get("L-BFGS", "loop"), get("body model", "L-BFGS"),
                 get("backward", "L-BFGS")]
        parts.append(total - sum(parts))
        n = obs["keypoints"].shape[1]
        evals = json.loads(str(res["info"]))["denoiser_evaluations"] / n
        lines.append(f"| {mode} | {n / total:.1f} | {evals:.0f} | "
                     + " | ".join(f"{100 * p / total:.0f}%" for p in parts) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab bench-speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="main", help="git ref (or a checkout's path) to compare with")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per mode and version (median)")
    ap.add_argument("--frames", type=int, default=None, help="cut the inputs to this many frames/instants")
    ap.add_argument("--memory-minutes", type=float, default=10.0, help="0: no memory row")
    ap.add_argument("--dataset", default=None, help="the converted CMU dataset (lab.data.dataset.load_split)")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--no-warmup", action="store_true", help="no untimed first run per mode (tests)")
    ap.add_argument("--videos", type=int, default=4, help="simulated tuning clips (accuracy)")
    ap.add_argument("--video-length", type=int, default=96)
    ap.add_argument("--accuracy-frames", type=int, default=64, help="simulated tuning frames (accuracy)")
    ap.add_argument("--instants", type=int, default=16, help="simulated calibrated tuning instants (accuracy)")
    ap.add_argument("--excerpts", type=int, default=12, help="real-detection tuning excerpts (accuracy)")
    ap.add_argument("--profile", action="store_true", help="where the time goes, this code only")
    args = ap.parse_args(argv)
    if args.profile:
        print(profile_main(args.threads, args.frames))
        return 0
    sizes = None if args.no_accuracy else dict(videos=args.videos, video_length=args.video_length,
                                               frames=args.accuracy_frames, instants=args.instants,
                                               excerpts=args.excerpts)
    current = "this"
    with checkout(args.against) as old_root:
        results = measure([(args.against, old_root), (current, ROOT)], args.repeats, args.frames,
                          args.memory_minutes, args.threads, args.dataset, sizes,
                          progress=lambda s: print(s, file=sys.stderr, flush=True), warmup=not args.no_warmup)
    load = os.getloadavg()
    print(f"python -m lab bench-speed {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}")
    print(f"threads {args.threads}, repeats {args.repeats} interleaved; load average at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores\n")
    print(table(results, args.against, current))
    return 0
