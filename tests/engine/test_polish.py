"""The video result's final smoothing fit (backend.engine.polish) and what it buys the default variant."""
import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.engine import baselines as bl
from backend.engine.api import Engine, EngineOptions
from backend.engine.guidance import project
from backend.engine.problems import Observations
from backend.engine.polish import PolishOptions, keypoint_jitter_px, polish, smoothing_basis, smoothing_factor
from backend.io.shot import load_shot
from backend.metrics import SMPL24_TO_LSP14, accel_error, pa_mpjpe
from backend.rotations import axis_angle_to_matrix
from tests.contract.test_bad_inputs import KEYPOINTS, SHOT, needs_weights

LSP = list(SMPL24_TO_LSP14)


def test_smoothing_basis_whitens_the_smoothness():
    b = smoothing_basis(12, 10.0, torch.zeros(1, dtype=torch.float64))
    d2 = torch.diff(torch.eye(12, dtype=torch.float64), n=2, dim=0)
    k = torch.eye(12, dtype=torch.float64) + 10.0 * d2.T @ d2
    assert torch.allclose(b.T @ k @ b, torch.eye(12, dtype=torch.float64), atol=1e-9)


def _tracks(frames: int, noise_px: float, seed: int = 0, size=(1000.0, 800.0)):
    """Keypoint tracks (F,17,3) of a slow drift plus white noise of std noise_px per axis, and image sizes."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float64)[:, None, None]
    base = torch.rand(1, 17, 2, generator=g, dtype=torch.float64) * 400 + 200 + 0.5 * t   # 0.5 px/frame drift
    xy = base + noise_px * torch.randn(frames, 17, 2, generator=g, dtype=torch.float64)
    kp = torch.cat([xy, torch.ones(frames, 17, 1, dtype=torch.float64)], -1)
    return kp, torch.tensor(size, dtype=torch.float64).expand(frames, 2)


def test_keypoint_jitter_is_the_median_second_difference_at_1000_px():
    # White noise of std s per axis: the second difference has std sqrt(6) s per axis, and the median of
    # its 2D length is sqrt(2 ln 2) sqrt(6) s ~ 2.88 s; a drift at constant speed adds nothing.
    kp, size = _tracks(400, 2.0)
    assert keypoint_jitter_px(kp, size) == pytest.approx(2.88 * 2.0, rel=0.05)
    assert keypoint_jitter_px(kp, size * 2) == pytest.approx(2.88 * 1.0, rel=0.05)   # measured at 1000 px
    kp[100:200, 3:, 2] = 0.0                                          # unseen points do not count
    kp[100:200, 3:, :2] = float("nan")
    assert keypoint_jitter_px(kp, size) == pytest.approx(2.88 * 2.0, rel=0.05)
    kp[..., 2] = 0.0
    assert np.isnan(keypoint_jitter_px(kp, size))


def test_smoothing_is_lowered_for_smooth_tracks_only():
    opts = PolishOptions()
    factor = lambda s: smoothing_factor(*_tracks(300, s), opts)
    assert factor(6.0) == 1.0 and factor(30.0) == 1.0                 # as jittery as the reference or more
    smooth = factor(1.0)                                              # jitter ~2.9 px at reference 6
    assert smooth == pytest.approx((2.88 / opts.jitter_reference_px) ** 2, rel=0.1)
    assert factor(0.0) == opts.min_smoothing                          # perfectly smooth: the floor
    kp, size = _tracks(300, 1.0)
    kp[..., 2] = 0.0
    assert smoothing_factor(kp, size, opts) == 1.0                    # nothing seen: unchanged


def _true_clip(frames: int):
    """The example shot's true motion (camera frame) and its keypoints seen perfectly, as engine tensors."""
    body = BodyModel.load()
    z = np.load(SHOT / "ground_truth.npz")
    k = np.load(KEYPOINTS)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
    rot = pose_to_rotmats(t(z["global_orient"][:frames]), t(z["body_pose"][:frames]))
    betas, transl = t(z["betas"]).expand(frames, 10), t(z["transl"][:frames])
    focal, pp = t(k["focal_length"]).expand(frames), t(k["principal_point"]).expand(frames, 2)
    size = t(k["image_size"]).expand(frames, 2)
    kp2d = project(body.joints_fast(rot, betas, transl).keypoints[:, :17], focal, pp)
    obs = Observations(torch.cat([kp2d, torch.ones(frames, 17, 1)], -1), focal, pp, size)
    return body, obs, rot, betas, transl


def test_polish_removes_frame_to_frame_shake_and_keeps_the_motion():
    """A true motion with per-frame noise (3 deg per joint, 1 cm across / 5 cm along the line of sight)
    polished against its exact keypoints: the shake goes (acceleration error down > 6x) and the pose gets
    closer to the truth.  A polish that did nothing, or only smoothed, fails one of the two."""
    frames = 48
    body, obs, rot, betas, transl = _true_clip(frames)
    g = torch.Generator().manual_seed(0)
    noise = axis_angle_to_matrix(torch.randn(frames, 24, 3, generator=g) * np.radians(3.0) / np.sqrt(3))
    noisy_rot = noise @ rot
    noisy_tr = transl + torch.randn(frames, 3, generator=g) * torch.tensor([0.01, 0.01, 0.05])
    R, tr = polish(body, obs.map(lambda x, n: x[None]), betas[None], noisy_rot[None], noisy_tr[None])
    joints = lambda r, t: body.joints_fast(r, betas, t).joints.double().numpy()
    truth, before, after = joints(rot, transl), joints(noisy_rot, noisy_tr), joints(R[0], tr[0])
    assert accel_error(after, truth).mean() < 0.15 * accel_error(before, truth).mean()
    err = lambda j: pa_mpjpe(j[:, LSP], truth[:, LSP]).mean()
    assert err(after) < 0.6 * err(before)


def test_no_polish_leaves_the_result_alone():
    body, obs, rot, betas, transl = _true_clip(8)
    R, tr = polish(body, obs.map(lambda x, n: x[None]), betas[None], rot[None], transl[None],
                   PolishOptions(iterations=0))
    assert torch.equal(R[0], rot) and torch.equal(tr[0], transl)


@pytest.mark.slow
@needs_weights
def test_default_video_is_smoother_and_closer_than_the_baselines_on_the_example_shot():
    """On the example shot (96 frames, detector-like keypoints, ground truth) the default video result
    has a lower acceleration error, pelvis-relative and in the camera frame, than per-frame ScoreHMR +
    filter and the paper's variant, and a PA-MPJPE-14 no worse than theirs."""
    engine = Engine.load(device="cpu")
    obs = load_shot(None, KEYPOINTS).obs
    truth = np.load(SHOT / "ground_truth.npz")["joints"].astype(np.float64)
    ours = engine.run(obs, None, "video")["joints"].astype(np.float64)
    paper = engine.run(obs, None, "video", EngineOptions(variant="paper"))["joints"].astype(np.float64)
    filtered = bl.run_baseline(engine, obs, None, "video", "per-frame-filter")["joints"].astype(np.float64)
    rel = lambda j: j - j[:, :1]
    accel = lambda j: accel_error(rel(j), rel(truth)).mean()
    accel_abs = lambda j: accel_error(j, truth).mean()
    pa = lambda j: pa_mpjpe(j[:, LSP], truth[:, LSP]).mean()
    for other in (paper, filtered):
        assert accel(ours) < accel(other) and accel_abs(ours) < accel_abs(other)
        assert pa(ours) <= pa(other)
