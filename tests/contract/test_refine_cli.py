"""The refine CLI on footage + keypoints: a frame range, an outside initial estimate, a preview video."""
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from backend.contract.results import Result, read_results
from tests.support.result_fixture import write_openpose_folder
from tests.contract.test_bad_inputs import ENV, FOOTAGE, KEYPOINTS, ROOT, example_keypoints, needs_weights


@pytest.mark.slow
@needs_weights
def test_refine_a_frame_range_of_the_example_shot_with_a_preview(tmp_path):
    init = tmp_path / "init.npz"  # one estimate per keypoint frame; the CLI takes the --frames part
    frames = len(example_keypoints()["keypoints"])
    marker = np.zeros((frames, 3), np.float32)
    marker[:, 2] = 4.0 + 0.01 * np.arange(frames)   # a depth that names the frame
    np.savez(init, global_orient=np.tile([np.pi, 0, 0], (frames, 1)), body_pose=np.zeros((frames, 69)),
             betas=np.zeros(10), transl=marker)
    out, preview = tmp_path / "OUT.npz", tmp_path / "preview.mp4"
    proc = subprocess.run([sys.executable, "-m", "backend", "refine", "--footage", str(FOOTAGE), "--keypoints",
                           str(KEYPOINTS), "--frames", "10:40", "--init", str(init), "--iterations", "1",
                           "--device", "cpu", "--out", str(out), "--preview", str(preview)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "shot.mp4: 96 frames, 24 fps" in proc.stdout
    result = read_results(out)
    assert result["joints"].shape == (30, 24, 3) and np.isfinite(result["reprojection_error_px"]).all()
    # the initial estimate of footage frame 10 starts OUT frame 0
    np.testing.assert_allclose(result["init_joints"][:, 0, 2] - result["init_joints"][0, 0, 2],
                               0.01 * np.arange(30), atol=1e-4)
    assert result["info"]["mode"] == "video"
    video = cv2.VideoCapture(str(preview))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 and video.get(cv2.CAP_PROP_FPS) == pytest.approx(24)
    video.release()


# -- an OpenPose folder numbered from 1 (keypoint file numbers are footage frame numbers) -----------

class RecordingEngine:
    """Engine.run's contract for the CLI: records the observations, returns fixture arrays for them."""

    def __init__(self):
        self.calls = []

    def run(self, obs, init, mode, options, progress=None):
        import torch

        from tests.support import result_fixture

        self.calls.append(obs)
        motion = result_fixture.synthetic_motion(obs["keypoints"].shape[1])
        arrays = result_fixture.result_arrays(*motion, torch.zeros(10, dtype=torch.float64), fps=obs["fps"])
        arrays["init_reprojection_error_px"] = arrays["reprojection_error_px"]
        return Result.from_arrays(arrays)


def test_openpose_folder_numbered_from_1_maps_file_n_to_footage_frame_n(tmp_path, monkeypatch, capsys):
    """Files 1..95 hold the detections of footage frames 1..95 of the 96-frame example shot: the whole
    footage is refused with the range both cover, which then refines exactly those detections."""
    from backend import cli, service

    kp = example_keypoints()["keypoints"]
    folder = write_openpose_folder(tmp_path / "openpose", kp[1:], first_number=1)
    engine = RecordingEngine()
    monkeypatch.setattr(service, "load_engine", lambda smpl, device: engine)
    args = ["refine", "--footage", str(FOOTAGE), "--keypoints", str(folder), "--progress-lines"]

    assert cli.main(args + ["--out", str(tmp_path / "all.npz")]) == 2
    assert "--frames 1:96" in capsys.readouterr().err and engine.calls == []

    assert cli.main(args + ["--frames", "1:96", "--out", str(tmp_path / "OUT.npz")]) == 0
    (obs,) = engine.calls
    np.testing.assert_allclose(obs["keypoints"][0, :, :, :2], kp[1:, :, :2], atol=1e-3)
    assert read_results(tmp_path / "OUT.npz")["joints"].shape == (95, 24, 3)


# -- multi-view from footage alone: each view detected, then refined together --------------------------

class MultiViewRecordingEngine(RecordingEngine):
    """RecordingEngine for --mode multiview (per-view fields with a leading view axis)."""

    def run(self, obs, init, mode, options, progress=None):
        import torch

        from tests.support import result_fixture

        self.calls.append(obs)
        motion = result_fixture.synthetic_motion(obs["keypoints"].shape[1])
        return Result.from_arrays(result_fixture.multiview_arrays(*motion, torch.zeros(10, dtype=torch.float64), obs),
                                  per_view=True)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("mediapipe"), reason="no mediapipe (detect.txt)")
def test_multiview_footage_without_keypoints_detects_each_view(tmp_path, monkeypatch, capsys):
    """Two cameras' footage (the example shot and its mirror image, 24 frames): each is detected into
    OUT.view<i>.keypoints.npz, and the engine gets both views' detections, view 0 first; a second run
    refuses to overwrite the detections before detecting anything."""
    from backend import cli, service
    from backend.contract.keypoints import load_keypoints
    from tests.engine.test_detect import shot_frames, truth2d, write_clip

    frames = shot_frames(24)
    front = write_clip(tmp_path / "front.mp4", frames)
    mirror = write_clip(tmp_path / "mirror.mp4", [np.ascontiguousarray(f[:, ::-1]) for f in frames])
    engine = MultiViewRecordingEngine()
    monkeypatch.setattr(service, "load_engine", lambda smpl, device: engine)
    out = tmp_path / "OUT.npz"
    args = ["refine", "--footage", str(front), "--footage", str(mirror), "--mode", "multiview", "--out", str(out),
            "--progress-lines"]
    assert cli.main(args) == 0, capsys.readouterr().err
    views = [load_keypoints(tmp_path / f"OUT.view{i}.keypoints.npz").keypoints for i in (0, 1)]
    (obs,) = engine.calls
    assert obs["keypoints"].shape == (2, 24, 17, 3) and "cam_R" not in obs
    for v in (0, 1):
        np.testing.assert_allclose(obs["keypoints"][v, ..., :2], views[v][..., :2], atol=1e-3)
    truth = truth2d(24)
    width = frames[0].shape[1]
    # View 0 near the true keypoints; view 1 near their mirror image (x -> width - 1 - x, left <-> right
    # is the detector's business: compare the nose, which has no side).
    assert np.linalg.norm(views[0][..., :2] - truth, axis=-1).mean() < 8.0
    mirrored_nose = np.stack([width - 1 - truth[:, 0, 0], truth[:, 0, 1]], -1)
    assert np.linalg.norm(views[1][:, 0, :2] - mirrored_nose, axis=-1).mean() < 8.0
    assert read_results(out)["view_joints"].shape[:2] == (2, 24)
    printed = capsys.readouterr().out
    assert "view 0: front.mp4" in printed and "view 1: mirror.mp4" in printed

    out.unlink()  # the detections are still there: refused before anything is detected
    assert cli.main(args) == 2
    assert "OUT.view0.keypoints.npz: exists; pass --force" in capsys.readouterr().err and len(engine.calls) == 1
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--footage", "B.mp4"], "several --footage / --keypoints are the views of one shot: add --mode multiview"),
    (["--footage", "B.mp4", "--mode", "multiview", "--keypoints", "K.npz"],
     r"give one --keypoints per --footage \(2\) or none"),
])
def test_several_footage_files_need_multiview_and_matching_keypoints(tmp_path, capsys, extra, message):
    from backend import cli

    assert cli.main(["refine", "--footage", "A.mp4", *extra, "--out", str(tmp_path / "OUT.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err
    assert list(tmp_path.iterdir()) == []
