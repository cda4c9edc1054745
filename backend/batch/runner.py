"""The batch runner: every clip not already done is one Ray task (:func:`backend.batch.clip.process_clip`)
on a local cluster started for the run, or on an existing one (``ray_address``); ``use_ray=False``
runs the same work one clip after another in this process (the sequential baseline).

    summary = run(BatchOptions(clips=[...], out="DIR", clip=ClipOptions(mode="video")))

``DIR/summary.json`` (rewritten after every clip, atomically) lists every clip in order with its status
(``done``, ``skipped``: done before with the same inputs and options, ``failed`` with a one-line
message, ``cancelled``: interrupted, nothing of it written), its timings, and the cluster.  An
interrupt (Ctrl-C) cancels the running tasks, removes their temp folders, writes the summary and
raises :class:`Interrupted`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from backend.batch.clip import RECORD_NAME, ClipOptions, process_clip, remove_leftovers
from backend.batch.clips import Clip, clip_key, find_clips
from backend.contract.errors import InputError

__all__ = ["BatchOptions", "Interrupted", "run", "SUMMARY_NAME"]

SUMMARY_NAME = "summary.json"
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 0.5          # how often the driver looks at the tasks (and the progress bar moves)
CANCEL_WAIT_S = 30.0  # how long cancelled tasks get to stop before their temp folders are removed


class Interrupted(KeyboardInterrupt):
    """The run was interrupted; ``summary`` is what DIR/summary.json says."""

    def __init__(self, summary: dict):
        super().__init__("interrupted")
        self.summary = summary


@dataclass
class BatchOptions:
    """A batch run: the clips (files or folders), where they go and how they run."""
    clips: list[str]
    out: str
    keypoints_dir: str | None = None
    clip: ClipOptions = field(default_factory=ClipOptions)
    ray_address: str | None = None    # join this cluster (None: start a local one for the run)
    num_cpus: int | None = None       # CPUs of the local cluster (None: all of this machine's)
    cpus_per_clip: float = 1.0        # each task's CPUs (its torch threads)
    clips_per_gpu: int = 1            # with --device cuda: tasks sharing one GPU
    use_ray: bool = True              # False: one clip after another in this process
    progress: bool = True             # a progress bar over clips on stderr


# -- the cluster ------------------------------------------------------------------------------------------


# Ray puts Unix sockets under its temp folder (.../session_<date>_<pid>/sockets/plasma_store), and a socket's
# path may not exceed 107 bytes: a deep per-process TMPDIR (a test worker's, say) is too long for it.
MAX_RAY_TEMP_ROOT = 24  # leaves 83 bytes: /ray-batch-XXXXXXXX/session_<date>_<time>_<us>_<pid>/sockets/plasma_store


def short_temp_root() -> str:
    """The system temp folder when it is short enough for Ray's socket paths, else /tmp."""
    root = tempfile.gettempdir()
    return root if len(root) <= MAX_RAY_TEMP_ROOT else "/tmp"


@contextlib.contextmanager
def ray_cluster(address: str | None, num_cpus: int | None) -> Iterator[dict]:
    """Ray connected to ``address``, or a fresh local cluster in its own temp folder (two runs never share
    one); yields the cluster's description and shuts Ray down (stopping a local cluster) on exit."""
    import ray

    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                            os.environ.get("PYTHONPATH")]))}}
    temp = None
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        temp = tempfile.mkdtemp(prefix="ray-batch-", dir=short_temp_root())
        ray.init(address="local", num_cpus=num_cpus, _temp_dir=temp, include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False)
    try:
        yield describe_cluster(started_here=address is None)
    finally:
        ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def describe_cluster(started_here: bool) -> dict:
    """address, alive nodes, CPUs and GPUs of the connected Ray cluster."""
    import ray

    resources = ray.cluster_resources()
    return dict(ray=True, address=ray.get_runtime_context().gcs_address, started_here=started_here,
                nodes=sum(1 for node in ray.nodes() if node.get("Alive")),
                cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)))


def _this_process() -> dict:
    return dict(ray=False, address=None, started_here=True, nodes=1, cpus=1.0, gpus=0.0)


# -- records and the summary ----------------------------------------------------------------------------

def _previous_record(out_dir: Path, clip: Clip, key: str) -> dict | None:
    """The record of ``clip`` finished before with the same key, or None."""
    path = out_dir / clip.name / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("status") == "done" and record.get("key") == key else None


def _skipped(record: dict) -> dict:
    return {**record, "status": "skipped", "message": "done before with the same inputs and options",
            "previous_seconds": record.get("seconds"), "seconds": {}}


def _not_done(clip: Clip, status: str, message: str) -> dict:
    return dict(clip=clip.name, status=status, message=message, seconds={})


def write_summary(out_dir: Path, clips: list[Clip], records: dict, cluster: dict, options: BatchOptions,
                  started: float, interrupted: bool = False) -> dict:
    """DIR/summary.json (atomically): every clip in order, counts, the cluster; returns it."""
    rows = [records.get(clip.name) or _not_done(clip, "pending", "not finished yet") for clip in clips]
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = dict(out=str(out_dir), started=datetime.fromtimestamp(started, timezone.utc).isoformat(),
                   wall_s=round(time.time() - started, 3), interrupted=interrupted, counts=counts, cluster=cluster,
                   options=options.clip.keyed(), clips=rows)
    tmp = out_dir / f".{SUMMARY_NAME}.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out_dir / SUMMARY_NAME)
    return summary


# -- running ----------------------------------------------------------------------------------------------

def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a timeout, a scheduler) handled like Ctrl-C for the run: tasks cancelled, temp folders removed,
    the local cluster stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while cleaning up (a second Ctrl-C must not leave temp folders behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bar(options: BatchOptions, total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="clip", desc="batch", file=sys.stderr,
                disable=not options.progress, mininterval=1.0)


def _run_sequential(todo: list, options: BatchOptions, out_dir: Path, on_record: Callable) -> None:
    for clip, key in todo:
        on_record(clip, process_clip(clip, options.clip, str(out_dir), key))


def _task_resources(options: BatchOptions, cluster: dict) -> dict:
    """num_cpus / num_gpus of each clip's task; InputError when --device cuda meets a cluster without GPUs."""
    resources = dict(num_cpus=options.cpus_per_clip, num_gpus=0, max_retries=0)
    if options.clip.device == "cuda":
        if cluster["gpus"] <= 0:
            raise InputError("--device cuda: the Ray cluster has no GPUs (start its workers on GPU machines, or "
                             "use --device cpu)")
        resources["num_gpus"] = 1.0 / max(1, options.clips_per_gpu)
    return resources


def _run_on_ray(todo: list, options: BatchOptions, out_dir: Path, cluster: dict, on_record: Callable,
                tick: Callable | None) -> None:
    """Every clip of ``todo`` as a Ray task; on an interrupt the tasks still running are cancelled and their
    temp folders removed (each gets a ``cancelled`` record) before the interrupt goes on."""
    import ray

    clip_options = options.clip
    if clip_options.device is None:
        from dataclasses import replace

        clip_options = replace(clip_options, device="cuda" if cluster["gpus"] > 0 else "cpu")
    task = ray.remote(process_clip).options(**_task_resources(options, cluster))
    threads = max(1, int(options.cpus_per_clip))
    pending = {task.remote(clip, clip_options, str(out_dir), key, threads): clip for clip, key in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                clip = pending.pop(ref)
                on_record(clip, _task_record(ref, clip, out_dir))
            if tick is not None:
                tick()
    except KeyboardInterrupt:
        with _no_interrupts():
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
            for ref, clip in pending.items():
                record = _task_record(ref, clip, out_dir)
                on_record(clip, record if record["status"] == "done" else
                          _not_done(clip, "cancelled", "interrupted before it finished; nothing of it was written"))
        raise


def _task_record(ref, clip: Clip, out_dir: Path) -> dict:
    """The record a finished task returned, or a ``failed`` one when its worker died (its temp folder is
    then removed here)."""
    import ray

    try:
        return ray.get(ref, timeout=0)
    except Exception as exc:  # the worker crashed or the task was cancelled: the clip fails alone
        remove_leftovers(out_dir, {clip.name})
        return _not_done(clip, "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


def _run(todo: list, options: BatchOptions, out_dir: Path, cluster: dict, on_record: Callable,
         tick: Callable | None) -> None:
    """The clips of ``todo`` on Ray (a cluster for the run, or the one at ``options.ray_address``) or here."""
    if todo and options.use_ray:
        with ray_cluster(options.ray_address, options.num_cpus) as cluster_info:
            cluster.update(cluster_info)
            _run_on_ray(todo, options, out_dir, cluster, on_record, tick)
    elif todo:
        _run_sequential(todo, options, out_dir, on_record)


def run(options: BatchOptions, tick: Callable[[], None] | None = None) -> dict:
    """Run the batch (module docstring); returns the summary.  ``tick()`` is called while waiting for the
    Ray tasks (tests interrupt the run from there).  InputError for bad clip paths; :class:`Interrupted`
    (a KeyboardInterrupt) after an interrupt, the summary written."""
    started = time.time()
    clips = find_clips(options.clips, options.keypoints_dir)
    if not clips:
        raise InputError("no clips given")
    out_dir = Path(options.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)  # a run killed outright (kill -9) leaves its temp folders
    extra = (options.clip.retarget, options.clip.smpl)
    keys = {clip.name: clip_key(clip, options.clip.keyed(), extra) for clip in clips}
    records = {}
    for clip in clips:
        if previous := _previous_record(out_dir, clip, keys[clip.name]):
            records[clip.name] = _skipped(previous)
    todo = [(clip, keys[clip.name]) for clip in clips if clip.name not in records]
    cluster = _this_process()
    bar = _bar(options, len(clips), len(records))

    def on_record(clip: Clip, record: dict) -> None:
        records[clip.name] = record
        bar.update(1)
        failed = sum(r["status"] == "failed" for r in records.values())
        if failed:
            bar.set_postfix(failed=failed)
        write_summary(out_dir, clips, records, cluster, options, started)

    try:
        with _sigterm_interrupts():
            _run(todo, options, out_dir, cluster, on_record, tick)
    except KeyboardInterrupt:
        with _no_interrupts():
            bar.close()
            for clip in clips:
                records.setdefault(clip.name, _not_done(clip, "cancelled", "interrupted before it finished; nothing of "
                                                                           "it was written"))
            remove_leftovers(out_dir, {c.name for c in clips if records[c.name]["status"] != "done"})
            summary = write_summary(out_dir, clips, records, cluster, options, started, interrupted=True)
        raise Interrupted(summary) from None
    bar.close()
    return write_summary(out_dir, clips, records, cluster, options, started)
