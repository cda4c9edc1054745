"""``python -m backend batch``: clips as Ray tasks on a local cluster of 2 workers the runner starts and
stops, resumption, a damaged clip failing alone, an interrupt leaving nothing half-written, the Blender
exports (build.py --result in a Python with bpy), and build.py's batch handing its clips to the runner (--ray)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from backend.batch import cli
from backend.batch.clip import ClipOptions
from backend.batch.runner import SUMMARY_NAME, BatchOptions, Interrupted, run
from backend.contract.results import read_results

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAMES = 4  # per clip: enough to show every step, short enough for a 2-core machine
FAST = ClipOptions(mode="frame", iterations=1, device="cpu")


def shot_frames(count):
    capture = cv2.VideoCapture(os.path.join(ROOT, "examples", "shot", "shot.mp4"))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    return frames


def write_clip(folder, name, first):
    """FRAMES frames of the example shot from ``first`` as folder/name.mp4 + its keypoints name.npz."""
    keypoints = dict(np.load(os.path.join(ROOT, "examples", "shot", "keypoints.npz")))
    writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24, (640, 360))
    for frame in shot_frames(first + FRAMES)[first:]:
        writer.write(frame)
    writer.release()
    np.savez(folder / f"{name}.npz", **{**keypoints, "keypoints": keypoints["keypoints"][first:first + FRAMES]})


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for index, name in enumerate(("a", "b", "c")):
        write_clip(folder, name, index * FRAMES)
    return folder


def statuses(summary):
    return {row["clip"]: row["status"] for row in summary["clips"]}


def hidden(out):
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_batch_on_a_local_cluster_resumes_and_a_damaged_clip_fails_alone(clips, tmp_path, capsys):
    (clips / "broken.mp4").write_bytes(b"not a video" * 100)
    np.savez(clips / "broken.npz", **np.load(clips / "a.npz"))
    out = tmp_path / "out"
    summary = run(BatchOptions(clips=[str(clips)], out=str(out), keypoints_dir=str(clips), clip=FAST, num_cpus=2,
                               progress=False))
    assert statuses(summary) == dict(a="done", b="done", broken="failed", c="done")
    broken = next(row for row in summary["clips"] if row["clip"] == "broken")
    assert "broken.mp4" in broken["message"] and "\n" not in broken["message"]
    assert summary["cluster"] | dict(address=None) == dict(ray=True, address=None, started_here=True, nodes=1,
                                                           cpus=2.0, gpus=0.0)
    assert len({row["pid"] for row in summary["clips"]}) == 2, "the clips ran on the cluster's 2 workers"
    assert not ray.is_initialized(), "the local cluster is stopped after the run"
    assert json.loads((out / SUMMARY_NAME).read_text()) == summary
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c", SUMMARY_NAME], "nothing of the broken clip"
    for index, name in enumerate("abc"):
        assert sorted(p.name for p in (out / name).iterdir()) == sorted([f"{name}.npz", f"{name}.keypoints.npz",
                                                                         "clip.json"])
        result = read_results(out / name / f"{name}.npz")
        assert result["body_pose"].shape[0] == FRAMES
        np.testing.assert_array_equal(np.load(out / name / f"{name}.keypoints.npz")["keypoints"],
                                      np.load(clips / f"{name}.npz")["keypoints"])
        assert json.loads((out / name / "clip.json").read_text())["frames"] == FRAMES

    # Run again through the command line: the three clips are skipped (Ray is not even started).
    written = {name: (out / name / f"{name}.npz").stat().st_mtime_ns for name in "abc"}
    args = [str(clips / f"{name}.mp4") for name in "abc"]
    assert cli.main([*args, "--out", str(out), "--keypoints-dir", str(clips), "--mode", "frame", "--iterations", "1",
                     "--device", "cpu", "--no-progress"]) == 0
    again = json.loads((out / SUMMARY_NAME).read_text())
    assert statuses(again) == dict(a="skipped", b="skipped", c="skipped") and again["cluster"]["ray"] is False
    assert "3 skipped" in capsys.readouterr().out
    assert {name: (out / name / f"{name}.npz").stat().st_mtime_ns for name in "abc"} == written

    # Changed inputs or options: refined again (in this process, the same per-clip work).
    os.utime(clips / "c.npz", ns=(1, 1))
    changed = run(BatchOptions(clips=args, out=str(out), keypoints_dir=str(clips), clip=FAST, use_ray=False,
                               progress=False))
    assert statuses(changed) == dict(a="skipped", b="skipped", c="done")
    assert (out / "c" / "c.npz").stat().st_mtime_ns != written["c"]
    assert hidden(out) == []


def test_an_interrupt_leaves_no_half_written_clip(clips, tmp_path):
    out = tmp_path / "out"

    def interrupt_while_a_clip_is_being_written():
        written = json.loads((out / SUMMARY_NAME).read_text()) if (out / SUMMARY_NAME).exists() else None
        if written and "done" in statuses(written).values() and any(n.startswith(".partial-") for n in hidden(out)):
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as raised:
        run(BatchOptions(clips=[str(clips)], out=str(out), keypoints_dir=str(clips), clip=FAST, num_cpus=2,
                         progress=False), tick=interrupt_while_a_clip_is_being_written)
    summary = raised.value.summary
    done = [name for name, status in statuses(summary).items() if status == "done"]
    assert 1 <= len(done) < 3 and set(statuses(summary).values()) == {"done", "cancelled"}
    assert summary["interrupted"] is True and json.loads((out / SUMMARY_NAME).read_text()) == summary
    assert hidden(out) == [], "the clips being written when interrupted left their temp folders"
    assert sorted(p.name for p in out.iterdir()) == sorted([*done, SUMMARY_NAME])
    assert not ray.is_initialized()


def test_exports_need_blender_and_say_so(clips, tmp_path):
    summary = run(BatchOptions(clips=[str(clips / "a.mp4")], out=str(tmp_path / "out"), keypoints_dir=str(clips),
                               clip=ClipOptions(mode="frame", bvh=True, blender=str(tmp_path / "no-blender")),
                               use_ray=False, progress=False))
    (row,) = summary["clips"]
    assert row["status"] == "failed" and row["message"].startswith("--blend/--bvh/--fbx need Blender")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SUMMARY_NAME]


def test_blend_and_bvh_are_exported_with_bpy(clips, tmp_path):
    pytest.importorskip("bpy")
    out = tmp_path / "out"
    summary = run(BatchOptions(clips=[str(clips / "b.mp4")], out=str(out), keypoints_dir=str(clips),
                               clip=FAST.__class__(**{**FAST.keyed(), "blend": True, "bvh": True}), use_ray=False,
                               progress=False))
    assert statuses(summary) == dict(b="done"), summary["clips"][0]["message"]
    assert sorted(p.name for p in (out / "b").iterdir()) == ["b.blend", "b.bvh", "b.keypoints.npz", "b.npz",
                                                             "clip.json"]
    bvh = (out / "b" / "b.bvh").read_text()
    assert bvh.startswith("HIERARCHY") and f"Frames: {FRAMES}" in bvh


# Two processes need not agree to the last bit on a float32 refinement: the BLAS kernels may round
# differently with the alignment of their buffers (CI saw the refined reprojection error of one clip differ by
# 1.4e-6 px between a Ray worker and this process).  Within this the outputs count as the same.
FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-6
BVH_ATOL = 1e-3  # its channels are printed with 6 decimals (degrees, metres): a rounding flip is 1e-6


def comparable(row):
    """A clip's record less what differs from run to run (timings, the process it ran in), its
    reprojection errors (floats) apart: (record, errors)."""
    rest = {k: v for k, v in row.items() if k not in ("seconds", "pid", "node", "reprojection_error_px")}
    return rest, row.get("reprojection_error_px")


def assert_same_records(got: list, want: list) -> None:
    assert [comparable(row)[0] for row in got] == [comparable(row)[0] for row in want]
    for g, w in zip(got, want):
        assert comparable(g)[1] == pytest.approx(comparable(w)[1], rel=FLOAT32_RTOL, abs=FLOAT32_ATOL), g["clip"]


def bvh_motion(text: str) -> tuple:
    """A BVH file's hierarchy text and its motion channels (frames, channels) as numbers."""
    head, motion = text.split("MOTION")
    lines = motion.strip().splitlines()
    return head + "\n".join(lines[:2]), np.array([[float(v) for v in line.split()] for line in lines[2:]])


def test_build_py_with_ray_gives_the_runners_outputs_and_summary(clips, tmp_path):
    """build.py's batch with --ray hands its clips to the runner (a local cluster of 2 workers, started and
    stopped by it) and its .blend / BVH come from the add-on's import: the same per-clip outputs and summary
    as python -m backend batch with the same options gives (here in this process, --no-ray)."""
    pytest.importorskip("bpy")
    videos = [str(clips / f"{name}.mp4") for name in "ab"]
    shared = ["--mode", "frame", "--iterations", "1", "--device", "cpu"]
    out, reference = tmp_path / "build", tmp_path / "runner"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "--", "--footage", *videos, "--keypoints",
                           str(clips), "--out", str(out), "--bvh", "--ray", "--num-cpus", "2", *shared],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "handing 2 clip(s) to the Ray runner" in proc.stdout and "2 clips: 2 done" in proc.stdout
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["cluster"] | dict(address=None) == dict(ray=True, address=None, started_here=True, nodes=1,
                                                           cpus=2.0, gpus=0.0)

    assert cli.main([*videos, "--keypoints-dir", str(clips), "--out", str(reference), "--blend", "--bvh", "--no-ray",
                     "--no-progress", *shared]) == 0
    expected = json.loads((reference / SUMMARY_NAME).read_text())
    assert statuses(summary) == statuses(expected) == dict(a="done", b="done")
    assert summary["options"] == expected["options"] and summary["options"]["blend"] is True
    assert_same_records(summary["clips"], expected["clips"])
    for name in "ab":
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == sorted(p.name for p in (reference / name).iterdir()) == sorted(
            [f"{name}.blend", f"{name}.bvh", f"{name}.keypoints.npz", f"{name}.npz", "clip.json"])
        with np.load(out / name / f"{name}.npz") as got, np.load(reference / name / f"{name}.npz") as want:
            assert got.files == want.files and "body_pose" in got.files
            for field in set(got.files) - {"info"}:  # info: the run's notes (timings)
                if np.issubdtype(want[field].dtype, np.floating):
                    np.testing.assert_allclose(got[field], want[field], rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL,
                                               err_msg=field)
                else:
                    np.testing.assert_array_equal(got[field], want[field], err_msg=field)
        (got_head, got_motion), (want_head, want_motion) = (
            bvh_motion((folder / name / f"{name}.bvh").read_text()) for folder in (out, reference))
        assert got_head == want_head
        np.testing.assert_allclose(got_motion, want_motion, rtol=0, atol=BVH_ATOL)
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", SUMMARY_NAME]


def test_a_python_without_ray_is_told_how_to_get_it(clips, tmp_path, monkeypatch, capsys):
    """build.py --ray starts the runner in the worker Python, which may lack ray: one line saying what to
    install, exit code 2."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    assert cli.main([str(clips / "a.mp4"), "--out", str(tmp_path / "out"), "--keypoints-dir", str(clips),
                     "--no-progress"]) == 2
    assert "-r requirements/batch.txt" in capsys.readouterr().err
