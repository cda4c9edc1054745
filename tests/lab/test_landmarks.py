"""The landmark model of BlazePose (lab.sim.landmarks): simulated keypoints that are not the engine's own."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel, KeypointMap
from backend.body.free_model import load_free_model
from backend.rotations import axis_angle_to_matrix
from lab.sim import landmarks as lm
from lab.sim.detector_noise import KEYPOINT_NAMES, NoiseLevel
from lab.sim.observations import single_view_observations, video_observations

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = ROOT / "docs" / "benchmark" / "detections_val64_tuning"


@pytest.fixture(scope="module")
def free():
    data = load_free_model()
    reg = KeypointMap.from_regressor(data["keypoint_names"], data["keypoint_regressor"].astype(np.float64))
    return data["v_template"], reg.vertex_weights @ data["v_template"][reg.vertex_ids]


@pytest.fixture(scope="module")
def model():
    return lm.load_landmarks("blazepose-fit")


@pytest.fixture(scope="module")
def body():
    return BodyModel.load(None, dtype=torch.float64)


def _posed_views(body: BodyModel, ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pixels (n,U,2) of vertices ``ids`` (U,) of n randomly posed bodies (mildly bent joints, any heading,
    tilted up to ~30 degrees) seen by a pinhole camera 4 m away."""
    rng = np.random.default_rng(seed)
    aa = np.concatenate([np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-np.pi, np.pi, n),
                                   rng.uniform(-0.3, 0.3, n)], 1), rng.normal(0, 0.35, (n, 69))], 1)
    rot = axis_angle_to_matrix(torch.as_tensor(aa).reshape(n, 24, 3))
    with torch.no_grad():
        verts = body(rot, torch.as_tensor(rng.normal(0, 1, (n, 10)))).vertices[:, torch.as_tensor(ids)].numpy()
    cam = verts @ np.diag([1.0, -1.0, -1.0]) + np.array([0.0, 0.2, 4.0])       # Y up -> OpenCV y down, 4 m away
    return 500.0 * cam[..., :2] / cam[..., 2:] + np.array([320.0, 240.0])


def _synthetic(body, free, joint: str, picks: list[int], weights: list[float], bias, n: int, seed: int) -> tuple:
    """Candidates' pixels (n,C,2), detections (n,2) of a known landmark (vertex weights on candidates
    ``picks``, image bias), body axes, size, the candidate ids and the true weights."""
    template, rest_kp = free
    j = KEYPOINT_NAMES.index(joint)
    cand = lm.candidate_vertices(template, rest_kp)[j]
    data = load_free_model()
    reg = KeypointMap.from_regressor(data["keypoint_names"], data["keypoint_regressor"].astype(np.float64))
    uv = _posed_views(body, np.concatenate([cand, reg.vertex_ids]), n, seed)
    cand_uv, kp_uv = uv[:, :len(cand)], np.einsum("ku,nud->nkd", reg.vertex_weights, uv[:, len(cand):])
    size, axes = lm.frame_scale(kp_uv[:, :17])
    true_w = np.zeros(len(cand))
    true_w[picks] = weights
    det = lm.project_landmarks(true_w[None], np.asarray(bias)[None], cand_uv, size, axes)[:, 0]
    return cand_uv, det, axes, size, cand, true_w


def test_fit_recovers_a_known_landmark(body, free):
    """Detections made from known vertex weights plus a known image bias (and 0.5 px noise) on posed
    bodies: the fit finds the same point on the body (within 5 mm) and the same bias (within 0.003 x size)."""
    template, rest_kp = free
    true_bias = np.array([0.012, -0.02])
    cand_uv, det, axes, size, cand, true_w = _synthetic(body, free, "left_wrist", [3, 40, 77], [0.5, 0.3, 0.2],
                                                        true_bias, 200, seed=0)
    det = det + np.random.default_rng(1).normal(0, 0.5, det.shape)
    w, b, used = lm.fit_landmark(cand_uv, det, axes, size, np.ones(len(det), bool))
    assert used.all()
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0) and (w > 0).sum() <= lm.MAX_VERTICES
    assert np.linalg.norm(w @ template[cand] - true_w @ template[cand]) < 0.005
    assert np.abs(b - true_bias).max() < 0.003
    # The body model's own keypoint (what the simulator used before) is far from it: the test can fail.
    assert np.linalg.norm(rest_kp[KEYPOINT_NAMES.index("left_wrist")] - true_w @ template[cand]) > 0.02


def test_fit_leaves_out_gross_errors(body, free):
    """A tenth of the detections thrown 0.3 x size away does not move the fitted point by over 5 mm."""
    template, _ = free
    cand_uv, det, axes, size, cand, true_w = _synthetic(body, free, "right_knee", [5, 60], [0.6, 0.4], [0.0, 0.0],
                                                        150, seed=2)
    det[::10] += 0.3 * size[::10, None] * np.array([0.6, 0.8])
    w, b, used = lm.fit_landmark(cand_uv, det, axes, size, np.ones(len(det), bool))
    assert not used[::10].any() and used.mean() > 0.85
    assert np.linalg.norm(w @ template[cand] - true_w @ template[cand]) < 0.005


def test_committed_landmarks_lie_on_the_body(model, free):
    """Every fitted landmark is a convex combination of a few vertices near the body model's keypoint,
    close to the skin (the hips, inside the pelvis, closest to it), with a bias of a few % of the size."""
    template, rest_kp = free
    assert model.names == tuple(KEYPOINT_NAMES)
    W = lm.weights_on(model, np.arange(len(template)))
    assert (W >= 0).all() and np.allclose(W.sum(1), 1.0)
    assert set(np.nonzero(~model.fitted)[0]) == {KEYPOINT_NAMES.index(n) for n in ("left_small_toe", "right_small_toe")}
    points = W @ template
    for j in np.nonzero(model.fitted)[0]:
        name = KEYPOINT_NAMES[j]
        assert (W[j] > 0).sum() <= lm.MAX_VERTICES, name
        assert np.linalg.norm(template[W[j] > 0] - rest_kp[j], axis=1).max() < lm.CANDIDATE_RADIUS_M + 1e-9, name
        skin = np.linalg.norm(template - points[j], axis=1).min()
        assert skin < (0.1 if name.endswith("hip") else 0.05), (name, skin)
    assert np.abs(model.bias).max() < 0.05
    assert model.info["render"]["split"] == "train"      # never fitted on validation (report) subjects


def _params(n: int, seed: int) -> dict:
    """n random upright bodies (any heading, mildly bent joints, random shape)."""
    rng = np.random.default_rng(seed)
    orient = np.stack([rng.normal(0, 0.1, n), rng.uniform(-np.pi, np.pi, n), rng.normal(0, 0.1, n)], 1)
    return dict(global_orient=orient, body_pose=rng.normal(0, 0.15, (n, 69)), transl=np.zeros((n, 3)),
                betas=rng.normal(0, 1, (n, 10)))


def _engine_reprojection(body: BodyModel, obs: dict) -> torch.Tensor:
    """(B,K,2) the engine's keypoints of the true body (camera-frame truth), projected: what its guidance
    would reproject."""
    from backend.body.body_model import pose_to_rotmats

    out = body.joints_fast(pose_to_rotmats(obs["gt_global_orient"], obs["gt_body_pose"]), obs["gt_betas"],
                           obs["gt_transl"]).keypoints
    return out[..., :2] / out[..., 2:] * obs["focal_length"][:, None, None] + obs["principal_point"][:, None]


def test_simulated_keypoints_are_not_the_regressors(body, model):
    """Clean detector: with the default the reported keypoints are the engine's own reprojection of the
    true body (the inverse crime); with the landmark model they differ from it by a few % of the
    person's size, the truth staying consistent (joints from the same parameters)."""
    params = _params(16, 0)
    for landmarks, low, high in (("regressor", 0.0, 1e-6), ("blazepose-fit", 0.006, 0.05)):
        obs = single_view_observations(body, params, torch.Generator().manual_seed(3), "clean", foot_points=True,
                                       landmarks=landmarks)
        engine_uv = _engine_reprojection(body, obs)
        size = (engine_uv.amax(1) - engine_uv.amin(1)).amax(-1)
        seen = obs["keypoints"][..., 2] > 0
        gap = ((obs["keypoints"][..., :2] - engine_uv).norm(dim=-1) / size[:, None])[:, :17][seen[:, :17]]
        assert low <= gap.mean() <= high, (landmarks, gap.mean())
        assert gap.max() < 0.15
    # "clean" with landmarks still adds the model's bias: the reported points are not their projections.
    assert not torch.allclose(obs["keypoints"][..., :2][seen], obs["gt_keypoints2d"][seen], atol=0.5)


def test_video_and_blazepose_level_run_on_landmarks(body, model):
    """Video windows with the refitted "blazepose" preset: the level holds the model's bias plus the
    residual one, the refitted spreads (not the old preset's), and the draws are reproducible."""
    level = lm.detector_level("blazepose", model)
    old = NoiseLevel.preset("blazepose")
    assert level.joint_sigma != old.joint_sigma
    residual = np.asarray(model.noise["joint_bias"])
    assert np.allclose(np.asarray(level.joint_bias), model.bias + residual)
    assert lm.detector_level("medium", model).joint_bias == tuple(map(tuple, model.bias))
    assert lm.detector_level("medium", None) == "medium"
    p = _params(2, 1)
    params = {k: v if k == "betas" else np.repeat(v[:, None], 4, 1) for k, v in p.items()}   # (2,4,...) windows
    a = video_observations(body, params, torch.Generator().manual_seed(0), "blazepose", landmarks="blazepose-fit")
    b = video_observations(body, params, torch.Generator().manual_seed(0), "blazepose", landmarks="blazepose-fit")
    assert a["keypoints"].shape == (2, 4, 17, 3) and torch.equal(a["keypoints"], b["keypoints"])


def test_landmarks_are_closer_to_blazepose_on_held_out_renders(model, tmp_path):
    """On a held-out render (tuning subjects, never fitted on), the landmarks' clean keypoints lie closer
    to BlazePose's detections than the body model's own keypoints (pooled COCO-17, gross errors out)."""
    shutil.copy(HELD_OUT / "chunk_0000.npz", tmp_path / "chunk_0000.npz")
    table = lm.distance_table(tmp_path, model)["joints"]["coco17"]
    assert table["landmarks"]["fine_mean_px"] < 0.9 * table["regressor"]["fine_mean_px"]


def test_ablate_setup_takes_the_landmarks():
    """`python -m lab ablate --landmarks`: the ablation's simulator body sees the landmarks; default unchanged."""
    from types import SimpleNamespace

    from lab import ablate

    engine = SimpleNamespace(device=torch.device("cpu"), body=BodyModel.load())
    assert ablate.make_setup(engine, {}).sim_body is engine.body
    sim = ablate.make_setup(engine, {}, "blazepose-fit").sim_body
    assert isinstance(sim, lm.LandmarkBody) and sim.landmarks is lm.load_landmarks("blazepose-fit")
    assert sim.dtype == engine.body.dtype
