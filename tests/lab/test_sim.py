"""Synthetic observations: cameras, detector noise statistics, camera-frame ground truth."""
import math

import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.body.example_poses import example_pose
from backend.rotations import axis_angle_to_matrix
from lab.sim import detector_noise as dn
from lab.sim.cameras import (
    FOCAL_MM_RANGE,
    RESOLUTIONS,
    SENSOR_WIDTH_MM,
    Cameras,
    intrinsics,
    project,
    sample_cameras,
)
from lab.sim.observations import (
    camera_frame_params,
    engine_obs,
    multiview_observations,
    single_view_observations,
    video_observations,
)

F64 = torch.float64
IDX = {name: i for i, name in enumerate(dn.KEYPOINT_NAMES)}


@pytest.fixture(scope="module")
def bm():
    return BodyModel.load(None, dtype=F64)


def _random_params(n, seed, lead=None):
    """Plausible bodies: example poses plus noise, any heading, somewhere near the origin."""
    g = torch.Generator().manual_seed(seed)
    base = torch.stack([example_pose(p, F64) for p in ("arms_down", "squat", "t_pose")])
    aa = base[torch.randint(3, (n,), generator=g)] + 0.15 * torch.randn(n, 24, 3, generator=g, dtype=F64)
    aa[:, 0] = torch.tensor([0.0, 1.0, 0.0], dtype=F64) * (2 * math.pi * torch.rand(n, 1, generator=g, dtype=F64))
    lead = lead or (n,)
    return {"global_orient": aa[:, 0].reshape(*lead, 3), "body_pose": aa[:, 1:].reshape(*lead, 69),
            "transl": torch.randn(n, 3, generator=g, dtype=F64).reshape(*lead, 3),
            "betas": torch.randn(n, 10, generator=g, dtype=F64).reshape(*lead, 10)}


def _person(n, k=17, height=500.0, seed=0):
    """Clean detections layout: a fixed 2D stick person scaled to ``height`` px in a 1920x1080 frame."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(k, 2, generator=g, dtype=F64) * torch.tensor([0.4, 1.0], dtype=F64)
    base[0, 1], base[-1, 1] = 0.0, 1.0  # spans exactly one height
    uv = (base * height + torch.tensor([800.0, 300.0], dtype=F64)).expand(n, k, 2).clone()
    return uv, torch.full((n, k), 5.0, dtype=F64), torch.tensor([1920.0, 1080.0], dtype=F64).expand(n, 2)


# -- cameras --------------------------------------------------------------------------------------

def test_project_matches_hand_computed_pinhole():
    K = intrinsics(torch.tensor([1000.0], dtype=F64), torch.tensor([[960.0, 540.0]], dtype=F64))
    Ry = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]], dtype=F64)  # 90 deg about Y
    cam = Cameras(K, Ry, torch.tensor([[0.0, 0.0, 5.0]], dtype=F64), torch.tensor([[1920.0, 1080.0]], dtype=F64))
    pts = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, -1.0], [0.0, 0.0, 6.0]]], dtype=F64)
    uv, depth = project(pts, cam)
    # camera frame: (0,0,4), (-1,0.5,5), (6,0,5)
    assert torch.allclose(depth, torch.tensor([[4.0, 5.0, 5.0]], dtype=F64))
    assert torch.allclose(uv, torch.tensor([[[960.0, 540.0], [760.0, 640.0], [2160.0, 540.0]]], dtype=F64))


def test_sampled_cameras_frame_the_person(bm):
    n = 300
    p = _random_params(n, seed=1)
    out = bm.joints_fast(pose_to_rotmats(p["global_orient"], p["body_pose"]), p["betas"], p["transl"])
    pts = torch.cat([out.joints, out.keypoints], 1)
    cam = sample_cameras(pts, np.random.default_rng(3))
    uv, depth = project(pts, cam)
    w, h = cam.image_size[:, 0], cam.image_size[:, 1]
    fill = (uv[..., 1].amax(1) - uv[..., 1].amin(1)) / h
    assert fill.min() >= 0.3 - 1e-6 and fill.max() <= 0.9 + 1e-6
    assert (fill < 0.4).any() and (fill > 0.8).any()
    assert depth.min() > 0.5                                        # in front, and not absurdly close
    assert (uv >= 0).all() and (uv[..., 0] <= w[:, None]).all() and (uv[..., 1] <= h[:, None]).all()
    assert {tuple(s) for s in cam.image_size.tolist()} <= {(float(w), float(h)) for w, h in RESOLUTIONS}
    f_mm = cam.focal_length / w * SENSOR_WIDTH_MM
    assert f_mm.min() >= FOCAL_MM_RANGE[0] and f_mm.max() <= FOCAL_MM_RANGE[1]
    assert torch.allclose(cam.principal_point, cam.image_size / 2)
    assert torch.allclose(cam.R @ cam.R.transpose(1, 2), torch.eye(3, dtype=F64).expand(n, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(cam.R), torch.ones(n, dtype=F64))
    # Small pitch and roll: the optical axis is near horizontal, the image x axis stays level.
    assert cam.R[:, 2, 1].abs().max() < math.sin(math.radians(20))
    assert cam.R[:, 0, 1].abs().max() < math.sin(math.radians(3.01))
    # Yaw all around: camera directions from the person cover every quadrant.
    d = cam.centre - pts.mean(1)
    quadrant = (d[:, 0] > 0).long() * 2 + (d[:, 2] > 0).long()
    assert torch.bincount(quadrant, minlength=4).min() > n // 8


def test_off_centre_cameras_put_people_anywhere_partly_outside(bm):
    from lab.sim.cameras import DISTANCE_M_RANGE, MAX_HEIGHT_FILL, OUTSIDE_MAX

    n = 400
    p = _random_params(n, seed=4)
    out = bm.joints_fast(pose_to_rotmats(p["global_orient"], p["body_pose"]), p["betas"], p["transl"])
    pts = torch.cat([out.joints, out.keypoints], 1)
    cam = sample_cameras(pts, np.random.default_rng(5), off_centre=True)
    uv, depth = project(pts, cam)
    size = cam.image_size
    lo, hi = uv.amin(1), uv.amax(1)
    centre = (lo + hi) / 2 / size                                    # box centre as a share of the frame
    # Distances in the range (camera centre to the person's box centre), near and far both drawn.
    dist = (cam.centre - (pts.amin(1) + pts.amax(1)) / 2).norm(dim=-1)
    assert dist.min() >= DISTANCE_M_RANGE[0] - 0.05 and dist.max() <= DISTANCE_M_RANGE[1] + 0.05
    assert (dist < 3.0).any() and (dist > 8.0).any()
    assert (depth > 0).all()
    # Anywhere in the frame: every third of each axis is used, and centres come close to each edge.
    for axis in (0, 1):
        thirds = torch.bincount((centre[:, axis] * 3).clamp(0, 2.999).long(), minlength=3)
        assert thirds.min() > n // 8, thirds
        assert centre[:, axis].min() < 0.2 and centre[:, axis].max() > 0.8
    # Partly outside: some people cross the frame's edge, none by much more than OUTSIDE_MAX of the box.
    outside = ((-lo).clamp_min(0) + (hi - size).clamp_min(0)) / (hi - lo)
    truncated = (outside > 0.02).any(-1)
    assert 0.1 * n < truncated.sum() < 0.9 * n
    assert outside.max() < OUTSIDE_MAX + 0.1
    # The height fill holds on the axis; turned towards an edge, perspective enlarges the box (~1 / cos^2).
    assert ((hi - lo)[:, 1] / size[:, 1]).max() <= MAX_HEIGHT_FILL * 1.3
    # The same body through the simulator: points outside the image are reported missing.
    obs = single_view_observations(bm, _random_params(64, seed=6), torch.Generator().manual_seed(7), "clean",
                                   camera_kwargs=dict(off_centre=True))
    uv2, wh = obs["gt_keypoints2d"], obs["image_size"][:, None]
    out_of_frame = ((uv2 < 0) | (uv2 > wh)).any(-1)
    assert out_of_frame.any() and (obs["keypoints"][..., 2][out_of_frame] == 0).all()


# -- ground truth in the camera frame -------------------------------------------------------------

def test_camera_frame_params_reproduce_camera_joints(bm):
    obs = single_view_observations(bm, _random_params(16, seed=2), torch.Generator().manual_seed(0), "medium",
                                   foot_points=True)
    R = pose_to_rotmats(obs["gt_global_orient"], obs["gt_body_pose"])
    fast = bm.joints_fast(R, obs["gt_betas"], obs["gt_transl"])
    full = bm(R, obs["gt_betas"], obs["gt_transl"], return_vertices=False)
    assert (fast.joints - obs["gt_joints"]).abs().max() < 1e-5
    assert (full.joints - obs["gt_joints"]).abs().max() < 1e-5
    assert (fast.keypoints - obs["gt_keypoints3d"]).abs().max() < 1e-5
    # gt_keypoints2d is the pinhole projection of the camera-frame keypoints.
    kp = obs["gt_keypoints3d"]
    uv = kp[..., :2] / kp[..., 2:] * obs["focal_length"][:, None, None] + obs["principal_point"][:, None]
    assert torch.allclose(uv, obs["gt_keypoints2d"], atol=1e-6)
    # Upright people have a camera-frame global orientation near 180 deg about X (OpenCV is y-down).
    upright = axis_angle_to_matrix(obs["gt_global_orient"])[:, :, 1]  # body up axis in the camera
    assert (upright[:, 1] < -0.8).all()


def test_camera_frame_params_identity_camera_and_pelvis_pivot(bm):
    p = _random_params(4, seed=3)
    eye, zero = torch.eye(3, dtype=F64).expand(4, 3, 3), torch.zeros(4, 3, dtype=F64)
    orient, transl = camera_frame_params(bm, p["global_orient"], p["transl"], p["betas"], eye, zero)
    assert torch.allclose(axis_angle_to_matrix(orient), axis_angle_to_matrix(p["global_orient"]), atol=1e-12)
    assert torch.allclose(transl, p["transl"], atol=1e-12)
    # A pure rotation about the origin moves transl by more than R transl (the body pivots on its pelvis).
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)).expand(4, 3, 3)
    _, transl = camera_frame_params(bm, p["global_orient"], p["transl"], p["betas"], R, zero)
    assert not torch.allclose(transl, (R @ p["transl"][..., None])[..., 0], atol=1e-3)


def test_multiview_and_video_ground_truth(bm):
    g = torch.Generator().manual_seed(5)
    mv = multiview_observations(bm, _random_params(6, seed=4), g, num_views=4, level="low")
    assert mv["keypoints"].shape == (6, 4, 17, 3) and mv["cam_R"].shape == (6, 4, 3, 3)
    world = mv["gt_joints_world"][:, None]
    assert torch.allclose(world @ mv["cam_R"].transpose(-1, -2) + mv["cam_t"][..., None, :], mv["gt_joints"])
    az = torch.atan2(-mv["cam_R"][..., 2, 0], -mv["cam_R"][..., 2, 2]).sort(-1).values  # camera headings
    gaps = torch.diff(torch.cat([az, az[:, :1] + 2 * math.pi], -1), dim=-1)
    assert gaps.min() > math.radians(30)  # spread around the person, not bunched
    un = multiview_observations(bm, _random_params(6, seed=4), g, num_views=3, calibrated=False, as_numpy=True)
    assert "cam_R" not in un and "cam_t" not in un and un["focal_length"].shape == (6, 3)
    assert engine_obs(mv, 0)["keypoints"].shape == (4, 1, 17, 3) and engine_obs(mv, 0)["cam_R"].shape == (4, 3, 3)

    vid = video_observations(bm, _random_params(12, seed=6, lead=(3, 4)), g, "medium", fps=30)
    assert vid["keypoints"].shape == (3, 4, 17, 3) and vid["image_size"].shape == (3, 2)
    R = pose_to_rotmats(vid["gt_global_orient"].reshape(-1, 3), vid["gt_body_pose"].reshape(-1, 69))
    j = bm.joints_fast(R, vid["gt_betas"].reshape(-1, 10), vid["gt_transl"].reshape(-1, 3)).joints
    assert (j.reshape(3, 4, 24, 3) - vid["gt_joints"]).abs().max() < 1e-5
    e = engine_obs(vid, 1)
    assert e["keypoints"].shape == (4, 17, 3) and e["image_size"].shape == (2,) and e["focal_length"].shape == ()
    assert "cam_R" not in e and float(e["fps"]) == 30.0


# -- detector noise -------------------------------------------------------------------------------

def _clean_jitter(det, uv):
    """Per-point error (…,K,2) and the mask of plain jittered points (seen, not swapped, not outliers)."""
    ok = (det.status == dn.VISIBLE) & ~det.swapped & ~det.outlier
    return det.keypoints[..., :2] - uv, ok


def test_jitter_scales_with_person_size_and_joint():
    level = dn.PRESETS["medium"]
    stds = []
    for height in (200.0, 600.0):
        uv, z, wh = _person(3000, height=height)
        det = dn.simulate_detections(uv, z, wh, level, torch.Generator().manual_seed(0))
        err, ok = _clean_jitter(det, uv)
        per_joint = torch.stack([err[:, j][ok[:, j]].std(0).mean() for j in range(17)])
        stds.append(per_joint)
        expected = level.jitter * height * dn.joint_sigma_scale(17)
        assert torch.allclose(per_joint, expected, rtol=0.06)
    assert torch.allclose(stds[1] / stds[0], torch.full((17,), 3.0, dtype=F64), rtol=0.08)
    s = stds[0]
    for limb in ("wrist", "ankle"):
        for side in ("left", "right"):
            assert s[IDX[f"{side}_{limb}"]] > 1.3 * s[IDX[f"{side}_hip"]]
    assert s[IDX["nose"]] < s[IDX["left_hip"]]


def test_dropout_and_swap_rates_near_preset():
    level = dn.PRESETS["medium"]
    n = 20000
    uv, z, wh = _person(n, k=23)
    det = dn.simulate_detections(uv, z, wh, level, torch.Generator().manual_seed(1))
    occluded = (det.status == dn.OCCLUDED).double().mean(0)
    assert torch.allclose(occluded, dn.expected_occlusion_rate(level, 23), atol=0.006)
    assert (det.keypoints[det.status != dn.VISIBLE] == 0).all()  # missing points are (0, 0, 0)
    # Whole limbs swap together, at the preset rate per group.
    arm = [IDX[f"{s}_{p}"] for s in ("left", "right") for p in dn.SWAP_GROUPS["arm"]]
    leg = [IDX[f"{s}_{p}"] for s in ("left", "right") for p in dn.SWAP_GROUPS["leg"]]
    for group in (arm, leg):
        sw = det.swapped[:, group]
        assert (sw == sw[:, :1]).all()
        assert abs(sw[:, 0].double().mean() - level.swap_rate) < 0.15 * level.swap_rate
    assert not det.swapped[:, :5].any()
    # A swapped slot reports its partner: left wrist <- right wrist position (+ its jitter).
    i = det.swapped[:, IDX["left_wrist"]] & (det.status[:, IDX["left_wrist"]] == dn.VISIBLE)
    i &= ~det.outlier[:, IDX["left_wrist"]]
    d = det.keypoints[i, IDX["left_wrist"], :2] - uv[i, IDX["right_wrist"]]
    assert d.abs().max() < 6 * level.jitter * 500 * dn.JOINT_SIGMA_SCALE["wrist"]


def test_confidence_falls_with_error():
    uv, z, wh = _person(4000)
    det = dn.simulate_detections(uv, z, wh, "high", torch.Generator().manual_seed(2))
    use = (det.status == dn.VISIBLE) & ~det.swapped  # swaps are confident by design
    conf = det.keypoints[..., 2][use]
    err = (det.keypoints[..., :2] - uv).norm(dim=-1)[use]
    assert conf.min() >= 0 and conf.max() <= 1
    assert np.corrcoef(conf.numpy(), err.numpy())[0, 1] < -0.3
    outlier = det.outlier[use]
    assert conf[outlier].mean() < 0.5 * conf[~outlier].mean()


def test_video_noise_is_temporally_correlated():
    level = dn.PRESETS["medium"]
    n, frames = 400, 48
    uv, z, wh = _person(n)
    uv, z = uv[:, None].expand(n, frames, 17, 2), z[:, None].expand(n, frames, 17)
    det = dn.simulate_detections(uv, z, wh, level, torch.Generator().manual_seed(3))
    err, ok = _clean_jitter(det, uv)
    e = err / det.sigma[..., None]
    both = (ok[:, 1:] & ok[:, :-1])[..., None].expand(-1, -1, -1, 2)
    a, b = e[:, 1:][both], e[:, :-1][both]
    assert abs(float((a * b).mean() / (b * b).mean()) - level.temporal_rho) < 0.03
    # Dropouts come in runs of about occlusion_run frames, at the stationary rate.
    occ = det.status == dn.OCCLUDED
    assert abs(occ.double().mean() - dn.expected_occlusion_rate(level, 17).mean()) < 0.01
    starts = (occ[:, 1:] & ~occ[:, :-1]).sum()
    ends = (occ[:, :-1] & ~occ[:, 1:]).sum()
    mean_run = occ[:, 1:-1].sum() / ((starts + ends) / 2)
    assert 0.75 * level.occlusion_run < mean_run < 1.25 * level.occlusion_run


def test_truncation_behind_camera_and_face_self_occlusion():
    uv, z, wh = _person(4)
    uv[0, 9] = torch.tensor([-30.0, 500.0], dtype=F64)   # left wrist left of the frame
    uv[1, 16] = torch.tensor([900.0, 1200.0], dtype=F64)  # right ankle below it
    z[2, 10] = -1.0                                       # right wrist behind the camera
    z[3, 0] = z[3, 3:5].mean() + 0.05                     # nose deeper than the ears: facing away
    det = dn.simulate_detections(uv, z, wh, "low", torch.Generator().manual_seed(4))
    assert det.status[0, 9] == dn.TRUNCATED and det.status[1, 16] == dn.TRUNCATED
    assert det.status[2, 10] == dn.BEHIND
    assert (det.status[3, :3] == dn.SELF_OCCLUDED).all()
    assert (det.keypoints[det.status != dn.VISIBLE] == 0).all()
    seen = det.keypoints[det.status == dn.VISIBLE]
    assert (seen[:, 0] >= 0).all() and (seen[:, 0] <= 1920).all() and (seen[:, 1] <= 1080).all()


def test_clean_preset_is_exact():
    uv, z, wh = _person(8)
    det = dn.simulate_detections(uv, z, wh, "clean", torch.Generator().manual_seed(0))
    assert torch.equal(det.keypoints[..., :2], uv) and (det.keypoints[..., 2] == 1).all()


# -- determinism ----------------------------------------------------------------------------------

def test_same_seed_same_observations(bm):
    p = _random_params(4, seed=7)
    vp = _random_params(6, seed=8, lead=(2, 3))
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(11)
        runs.append([single_view_observations(bm, p, g), multiview_observations(bm, p, g, 3),
                     video_observations(bm, vp, g), single_view_observations(bm, p, np.random.default_rng(4))])
    for a, b in zip(*runs):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a if k != "mode")
    other = single_view_observations(bm, p, torch.Generator().manual_seed(12))
    assert not torch.equal(other["keypoints"], runs[0][0]["keypoints"])
