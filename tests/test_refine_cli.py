"""The refine CLI on footage + keypoints: a frame range, an outside initial estimate, a preview video."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from backend.contract.results import read_results
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
