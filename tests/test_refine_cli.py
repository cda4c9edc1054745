"""The refine CLI on footage + keypoints: a frame range, an outside initial estimate, a preview video."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from backend.contract.results import read_results
from tests.result_fixture import write_openpose_folder
from tests.test_bad_inputs import ENV, FOOTAGE, KEYPOINTS, ROOT, example_keypoints, needs_weights


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

        from tests import result_fixture

        self.calls.append(obs)
        motion = result_fixture.synthetic_motion(obs["keypoints"].shape[1])
        arrays = result_fixture.result_arrays(*motion, torch.zeros(10, dtype=torch.float64), fps=obs["fps"])
        arrays["init_reprojection_error_px"] = arrays["reprojection_error_px"]
        return arrays


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
