"""`python -m lab bench-speed`: the interleaving, the table, and one end-to-end run on a tiny input."""
import re
import subprocess
import sys
from pathlib import Path

from lab import bench_speed

ROOT = Path(__file__).resolve().parents[2]


class FakeWorker:
    """Records the order of the tasks it is asked; 'new' is twice as fast as 'old'."""
    log: list = []

    def __init__(self, name, root, threads, dataset):
        self.name = name

    def ask(self, task, **kw):
        FakeWorker.log.append((self.name, task, kw.get("mode")))
        if task == "speed":
            per_s = 20.0 if self.name == "old" else 40.0
            return dict(seconds=1.0, items=96, per_s=per_s, per_cpu_s=per_s, evaluations_per_item=666.0)
        if task == "memory":
            return dict(frames=100, peak_mb=800.0 if self.name == "old" else 600.0)
        return {"video (simulated)": dict(pa_mpjpe14=40.0, mpjpe14=60.0, accel=5.0, n=2)}

    def close(self):
        pass


def test_runs_alternate_versions_and_the_table_has_every_mode():
    FakeWorker.log = []
    res = bench_speed.measure([("old", ROOT), ("new", ROOT)], 2, None, 1.0, 1, None, dict(videos=1),
                              progress=lambda s: None, start=FakeWorker)
    timed = [(name, mode) for name, task, mode in FakeWorker.log if task == "speed"][2 * 3:]   # after warm-up
    assert timed == [(v, m) for _ in range(2) for m in bench_speed.SPEED_MODES for v in ("old", "new")]
    text = bench_speed.table(res, "old", "new")
    rows = [line.split("|")[1:-1] for line in text.splitlines()[2:]]
    assert all(len(r) == 5 for r in rows)
    speed = {r[0].strip(): float(r[4]) for r in rows if "/s" in r[1]}
    assert speed == {"video": 2.0, "frame": 2.0, "calibrated": 2.0}
    assert any("peak RSS" in r[1] and float(r[4]) == 0.75 for r in rows)
    assert [r[1].strip() for r in rows if "simulated" in r[0]] == ["PA-MPJPE-14 mm", "MPJPE-14 mm", "accel"]


def test_end_to_end_on_a_tiny_input():
    """Both sides are this checkout (a path in place of a git ref); 6 frames, no warm-up, memory or accuracy."""
    out = subprocess.run([sys.executable, "-m", "lab", "bench-speed", "--against", str(ROOT), "--frames", "6",
                          "--repeats", "1", "--memory-minutes", "0", "--no-accuracy", "--no-warmup"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    modes = [r.split("|")[1].strip() for r in rows]
    assert modes == [m for m in ("video", "frame", "calibrated") for _ in range(3)]
    for r in rows:
        assert re.fullmatch(r"-?\d+\.\d+", r.split("|")[5].strip())
