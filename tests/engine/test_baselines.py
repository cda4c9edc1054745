"""Baselines of the benchmark: the GMM prior, SMPLify, DPoser-style fitting, filtering, triangulation."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.engine import baselines as bl
from backend.engine import views
from backend.engine.gmm import GMM, MaxMixturePrior, gmm_term
from backend.engine.guidance import project
from backend.engine.problems import Observations
from backend.engine.scorehmr import ClassicalPrior, LoopOptions, Problem, refine
from backend.models.denoiser import Denoiser
from backend.models.diffusion import cosine_alphas_cumprod
from backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from lab.gmm_fit import fit_gmm


@pytest.fixture(scope="module")
def bm():
    return BodyModel.load()


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _broad_prior(dim=69, std=0.3):
    return MaxMixturePrior(GMM(np.ones(1), np.zeros((1, dim)), std ** 2 * np.eye(dim)[None]))


def _scene(bm, b=2, seed=0, pose_std=0.2):
    """Ground-truth bodies ~4 m in front of a 1000-px camera, their exact keypoints (conf 1) and a start
    with ~0.2 rad per-joint rotation noise and a translation error."""
    g = _gen(seed)
    R = pose_to_rotmats(torch.tensor([math.pi, 0.0, 0.0]).expand(b, 3), pose_std * torch.randn(b, 69, generator=g))
    betas, transl = torch.zeros(b, 10), torch.tensor([0.0, 0.2, 4.0]).expand(b, 3)
    body = bm.joints_fast(R, betas, transl)
    focal, pp = torch.full((b,), 1000.0), torch.tensor([[480.0, 270.0]]).expand(b, 2)
    size = torch.tensor([[960.0, 540.0]]).expand(b, 2)
    kp = torch.cat([project(body.keypoints[:, :17], focal, pp), torch.ones(b, 17, 1)], -1)
    start = dict(rotmats=axis_angle_to_matrix(0.2 * torch.randn(b, 24, 3, generator=g)) @ R, betas=betas,
                 transl=transl + torch.tensor([0.05, -0.05, 0.3]))
    return dict(R=R, betas=betas, transl=transl, joints=body.joints, obs=Observations(kp, focal, pp, size),
                start=start)


def test_gmm_recovers_a_known_two_component_mixture():
    true = GMM(np.array([0.3, 0.7]), np.array([[2.0, 0, 0, 1], [-1, 1, 0, 0]]),
               np.stack([np.diag([0.2, 0.1, 0.3, 0.1]), 0.05 * np.eye(4) + 0.02]))
    x = true.sample(4000, np.random.default_rng(0))
    gmm, log = fit_gmm(x, 2, seed=0)
    order = np.argsort(gmm.weights)  # the true mixture lists the light component first
    np.testing.assert_allclose(gmm.weights[order], true.weights, atol=0.03)
    np.testing.assert_allclose(gmm.means[order], true.means, atol=0.05)
    np.testing.assert_allclose(gmm.covariances[order], true.covariances, atol=0.03)
    assert (np.diff(log["history"]) > -1e-9).all()  # EM never lowers the likelihood
    # Same seed, same fit.
    np.testing.assert_array_equal(fit_gmm(x, 2, seed=0)[0].means, gmm.means)


def test_max_mixture_prior_is_smplifys_min_over_components():
    gmm = GMM(np.array([0.3, 0.7]), np.array([[2.0, 0, 0], [-1, 1, 0]]),
              np.stack([np.diag([0.2, 0.1, 0.3]), 0.05 * np.eye(3) + 0.02]))
    x = np.random.default_rng(1).normal(size=(6, 3))
    expected = np.min([-np.log(w) - multivariate_normal(m, c).logpdf(x) for w, m, c in
                       zip(gmm.weights, gmm.means, gmm.covariances)], axis=0) - 1.5 * math.log(2 * math.pi)
    prior = MaxMixturePrior(gmm, dtype=torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(prior(xt).detach().numpy(), expected, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda p: prior(p).sum(), (xt,))


def test_mixture_nll_is_the_exact_mixtures_and_smooth_where_the_minimum_switches():
    gmm = GMM(np.array([0.3, 0.7]), np.array([[2.0, 0, 0], [-1, 1, 0]]),
              np.stack([np.diag([0.2, 0.1, 0.3]), 0.05 * np.eye(3) + 0.02]))
    x = np.random.default_rng(2).normal(size=(6, 3))
    density = sum(w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(gmm.weights, gmm.means, gmm.covariances))
    prior = MaxMixturePrior(gmm, dtype=torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(prior.mixture_nll(xt).detach().numpy(), -np.log(density) - 1.5 * math.log(2 * math.pi),
                               rtol=1e-10)
    assert torch.autograd.gradcheck(lambda p: prior.mixture_nll(p).sum(), (xt,))
    # Across the point where the two components tie, the minimum's gradient jumps and the mixture's does not.
    a, b = (torch.tensor(m, dtype=torch.float64) for m in gmm.means)
    line = torch.stack([a + s * (b - a) for s in torch.linspace(0, 1, 401, dtype=torch.float64)]).requires_grad_()
    jump = lambda f: torch.autograd.grad(f(line).sum(), line)[0].diff(dim=0).norm(dim=1).max()
    assert jump(prior.mixture_nll) < 0.2 * jump(prior)


def test_gmm_term_in_the_loop_pulls_toward_the_mixture():
    """eps = 0 with the GMM term (the video default's prior) lowers the pose's GMM NLL from a bent start when the
    guidance has nothing else to say."""
    prior = MaxMixturePrior(GMM(np.ones(1), np.zeros((1, 69)), 0.09 * np.eye(69)[None]))
    start = torch.zeros(2, 24, 3)
    start[:, 1:] = 0.6 * torch.randn(2, 23, 3, generator=torch.Generator().manual_seed(0))
    x0 = matrix_to_rot6d(axis_angle_to_matrix(start)).reshape(2, 1, 144)
    nothing = lambda rotmats, rot6d, transl, groups: rot6d.sum(dim=(1, 2)) * 0.0
    problem = Problem(x0=x0, transl=torch.zeros(2, 1, 3), context=torch.zeros(2, 1, 8), loss=nothing)
    out = refine(ClassicalPrior(gmm_term(prior, 1.0)), cosine_alphas_cumprod().float(), problem,
                 LoopOptions(tau=50, step=10, iterations=3, stop_threshold=0.0, optimise_translation=False))
    body_pose = lambda x: matrix_to_axis_angle(rot6d_to_matrix(x.reshape(-1, 24, 6))[:, 1:]).reshape(-1, 69)
    nll = lambda x: prior.mixture_nll(body_pose(x))
    assert (nll(out["x0"]) < 0.5 * nll(x0)).all()


def test_bend_prior_penalises_hyperextension_only():
    pose = torch.zeros(3, 69)
    pose[1, bl.BEND_INDEX[2]] = 1.5    # left knee bent (+X): natural
    pose[2, bl.BEND_INDEX[2]] = -1.5   # left knee bent backwards
    e = bl.bend_prior(pose)
    # Each joint adds exp(sign * angle)^2: 1 at rest, e^-3 bent naturally, e^3 hyper-extended.
    assert e[1] < e[0] - 0.9 and e[2] > e[0] + 15


def test_smplify_lowers_the_reprojection_error_from_a_perturbed_start(bm):
    s = _scene(bm)
    r0, _ = bl.reprojection(bm, s["start"]["rotmats"], s["betas"], s["start"]["transl"], s["obs"])
    res = bl.smplify(bm, _broad_prior(), s["obs"], s["start"], bl.SmplifyOptions(camera_steps=10, steps=60, lr=0.02))
    assert (res["reprojection"] < 0.1 * r0).all()
    err = lambda R, b, t: (bm.joints_fast(R, b, t).joints - s["joints"]).norm(dim=-1).mean()
    assert err(res["rotmats"], res["betas"], res["transl"]) < 0.5 * err(s["start"]["rotmats"], s["betas"],
                                                                         s["start"]["transl"])
    # The camera stage alone moves the translation only (and the root), never the limbs.
    cam_only = bl.smplify(bm, _broad_prior(), s["obs"], s["start"], bl.SmplifyOptions(camera_steps=5, steps=0))
    torch.testing.assert_close(cam_only["rotmats"][:, 1:], s["start"]["rotmats"][:, 1:], atol=1e-5, rtol=0)


def test_dposer_style_runs_and_lowers_the_loss(bm):
    s = _scene(bm, seed=1)
    torch.manual_seed(0)
    eps_model = Denoiser(8, hidden=32, blocks=1)
    opts = bl.DPoserOptions(steps=40, lr=0.02)
    res = bl.dposer_style(bm, eps_model, cosine_alphas_cumprod().float(), s["obs"], torch.zeros(2, 8), s["start"],
                          opts, generator=_gen(3))
    assert (res["reprojection"] < 0.3 * res["start_reprojection"]).all()
    assert res["denoiser_evaluations"] == 40 * 2
    again = bl.dposer_style(bm, eps_model, cosine_alphas_cumprod().float(), s["obs"], torch.zeros(2, 8), s["start"],
                            opts, generator=_gen(3))
    torch.testing.assert_close(again["rotmats"], res["rotmats"])  # seeded


class _PointMassDenoiser(torch.nn.Module):
    """The exact denoiser of a prior concentrated on one 6D pose: eps = (x_t - sqrt(a_t) pose) / sqrt(1 - a_t)."""

    def __init__(self, pose: torch.Tensor):
        super().__init__()
        self.pose, self.a = pose, cosine_alphas_cumprod().float()

    def forward(self, x, t, c):
        a = self.a[t].reshape(-1, 1)
        return (x - a.sqrt() * self.pose) / (1 - a).sqrt()


def test_dposer_prior_term_pulls_towards_the_prior_and_a_null_denoiser_does_not(bm):
    """Prior term only (keypoint weight 0): its gradient w(t) (eps_phi - eps) moves the pose to the prior's
    mode when eps_phi is the point mass's exact denoiser; with eps_phi = 0 it is zero-mean noise."""
    from backend.rotations import matrix_to_rot6d

    s = _scene(bm, seed=2)
    target = matrix_to_rot6d(s["R"][:1]).reshape(1, 144)
    opts = bl.DPoserOptions(steps=60, lr=0.02, keypoint_weight=0.0)
    dist = lambda rotmats: (matrix_to_rot6d(rotmats).reshape(-1, 144) - target).norm(dim=1)
    run = lambda model: bl.dposer_style(bm, model, cosine_alphas_cumprod().float(), s["obs"], torch.zeros(2, 8),
                                        s["start"], opts, generator=_gen(4))
    before = dist(s["start"]["rotmats"])
    pulled = dist(run(_PointMassDenoiser(target))["rotmats"])
    null = dist(run(lambda x, t, c: torch.zeros_like(x))["rotmats"])
    assert (pulled < 0.3 * before).all()
    assert (null > 0.7 * before).all()


def test_triangulation_recovers_known_points_from_three_calibrated_views():
    g = _gen(4)
    b, v, k = 2, 3, 17
    pts = 0.5 * torch.randn(b, k, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.2, 0.0], [0.2, -1.0, 0.1]], dtype=torch.float64))
    R = R.expand(b, v, 3, 3)
    t = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64).expand(b, v, 3)
    focal = torch.tensor([[1000.0, 1400.0, 800.0]], dtype=torch.float64).expand(b, v)
    pp = torch.tensor([[640.0, 360.0]], dtype=torch.float64).expand(b, v, 2)
    cam = torch.einsum("bvij,bkj->bvki", R, pts) + t[:, :, None]
    uv = focal[..., None, None] * cam[..., :2] / cam[..., 2:] + pp[:, :, None]
    conf = 0.2 + 0.8 * torch.rand(b, v, k, 1, generator=g, dtype=torch.float64)
    conf[0, 1:, 5] = 0.0                                     # point 5 of sample 0: seen by one view only
    found, weight = views.triangulate(torch.cat([uv, conf], -1), focal, pp, R, t)
    ok = weight > 0
    assert ok.sum() == b * k - 1 and not ok[0, 5]
    assert (found - pts).norm(dim=-1)[ok].max() < 1e-3      # < 1 mm without noise
    assert found[0, 5].abs().sum() == 0


def test_fit_to_3d_recovers_the_body_from_its_3d_keypoints(bm):
    s = _scene(bm, seed=2)
    points = bm.joints_fast(s["R"], s["betas"], s["transl"]).keypoints[:, :17]
    weights = torch.ones(2, 17)
    res = bl.fit_to_3d(bm, _broad_prior(), points, weights, s["start"], bl.Fit3DOptions(camera_steps=10, steps=60))
    start_res = 1000 * (bm.joints_fast(s["start"]["rotmats"], s["betas"], s["start"]["transl"]).keypoints[:, :17]
                        - points).norm(dim=-1).mean(1)
    assert (res["residual_mm"] < 0.25 * start_res).all()


def _smooth_sequence(f=40):
    t = torch.linspace(0, 1, f)[:, None]
    aa = torch.zeros(f, 24, 3)
    aa[:, :, 0] = 0.5 * torch.sin(2 * math.pi * t) + 0.1 * torch.arange(24) / 24
    return axis_angle_to_matrix(aa), torch.cat([0.5 * t, torch.zeros(f, 1), 4 + 0.2 * t], 1)


def test_filter_reduces_the_acceleration_of_a_noisy_sequence():
    R, tr = _smooth_sequence()
    g = _gen(5)
    R_noisy = axis_angle_to_matrix(0.05 * torch.randn(*R.shape[:2], 3, generator=g)) @ R
    tr_noisy = tr + 0.02 * torch.randn(tr.shape, generator=g)
    accel = lambda x: (x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).mean()
    for kind in ("gaussian", "savgol"):
        R_f, tr_f = bl.temporal_filter(R_noisy, tr_noisy, bl.FilterOptions(kind=kind))
        assert accel(matrix_to_rot6d(R_f)) < 0.2 * accel(matrix_to_rot6d(R_noisy))
        assert accel(tr_f) < 0.2 * accel(tr_noisy)
        # Still rotations, and closer to the clean motion than the noisy input.
        eye = torch.eye(3).expand_as(R_f)
        torch.testing.assert_close(R_f @ R_f.transpose(-1, -2), eye, atol=1e-5, rtol=0)
        assert torch.linalg.det(R_f).min() > 0.999
        assert (R_f - R).pow(2).mean() < (R_noisy - R).pow(2).mean()
    with pytest.raises(ValueError, match="unknown filter"):
        bl.temporal_filter(R, tr, bl.FilterOptions(kind="kalman"))


def test_temporal_smplify_is_smoother_than_per_frame_smplify(bm):
    f = 10
    R, tr = _smooth_sequence(f)
    R = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0])) @ R  # upright in the camera frame
    R[:, 1:] = axis_angle_to_matrix(0.1 * torch.ones(f, 23, 3))
    g = _gen(6)
    betas = torch.zeros(f, 10)
    body = bm.joints_fast(R, betas, tr)
    focal, pp, size = torch.full((f,), 1000.0), torch.full((f, 2), 500.0), torch.full((f, 2), 1000.0)
    uv = project(body.keypoints[:, :17], focal, pp) + 4.0 * torch.randn(f, 17, 2, generator=g)
    kp = torch.cat([uv, torch.ones(f, 17, 1)], -1)
    start = dict(rotmats=R.clone(), betas=betas, transl=tr.clone())
    opts = bl.SmplifyOptions(camera_steps=0, steps=30)
    obs = Observations(kp, focal, pp, size)
    per_frame = bl.smplify(bm, _broad_prior(), obs, start, opts)
    temporal = bl.temporal_smplify(bm, _broad_prior(), obs, start, opts)
    accel = lambda res: (lambda j: (j[2:] - 2 * j[1:-1] + j[:-2]).norm(dim=-1).mean())(
        bm.joints_fast(res["rotmats"], res["betas"], res["transl"]).joints)
    assert accel(temporal) < 0.7 * accel(per_frame)
    assert torch.allclose(temporal["betas"], temporal["betas"][:1].expand(f, 10))  # one body for the clip


def test_run_baseline_keeps_the_engine_contract_in_calibrated_multiview(bm):
    """Triangulation + fit behind the OUT contract: one body, expressed consistently in every view."""
    from backend.engine.api import Engine
    from backend.contract.observations import validate_observations
    from backend.models.regressor import KeypointRegressor
    from lab.sim.observations import engine_obs, multiview_observations

    torch.manual_seed(0)
    engine = Engine(bm, KeypointRegressor(width=16, blocks=1, feature_dim=8), Denoiser(8, hidden=16, blocks=1),
                    torch.zeros(8), torch.ones(8))
    params = dict(global_orient=np.zeros((1, 3)), body_pose=0.1 * np.ones((1, 69)), betas=np.zeros(10))
    sim = multiview_observations(bm, params, _gen(7), 3, "clean")
    obs = validate_observations(engine_obs(sim, 0), "multiview")
    init = dict(global_orient=sim["gt_global_orient"][0].numpy(), body_pose=sim["gt_body_pose"][0].numpy() + 0.05,
                betas=sim["gt_betas"][0, 0].numpy(), transl=sim["gt_transl"][0].numpy() + 0.1)
    out = bl.run_baseline(engine, obs, init, "multiview", "smplify", _broad_prior())
    assert out["joints"].shape == (3, 1, 24, 3) and out["joints_world"].shape == (1, 24, 3)
    err_mm = [1000 * np.linalg.norm(out["joints"][i, 0] - sim["gt_joints"][0, i].numpy(), axis=-1).mean()
              for i in range(3)]
    assert max(err_mm) < 40 and max(err_mm) - min(err_mm) < 0.1   # the same body seen from every camera
    assert (out["reprojection_error_px"] < out["init_reprojection_error_px"]).all()
    with pytest.raises(ValueError, match="does not run in calibrated mode"):
        bl.run_baseline(engine, obs, init, "multiview", "dposer")


def test_triangulation_reweighting_resists_a_confident_outlier_view():
    g = _gen(9)
    b, v, k = 1, 4, 17
    pts = 0.5 * torch.randn(b, k, 3, generator=g, dtype=torch.float64)
    yaw = torch.tensor([0.0, 1.6, 3.1, 4.7], dtype=torch.float64)
    R = axis_angle_to_matrix(torch.stack([torch.zeros(4), yaw, torch.zeros(4)], -1).double())[None]
    t = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64).expand(b, v, 3)
    focal = torch.full((b, v), 1000.0, dtype=torch.float64)
    pp = torch.full((b, v, 2), 500.0, dtype=torch.float64)
    cam = torch.einsum("bvij,bkj->bvki", R, pts) + t[:, :, None]
    uv = focal[..., None, None] * cam[..., :2] / cam[..., 2:] + pp[:, :, None]
    uv[0, 2, :, 0] += 1500.0                                   # view 2 reports every point far off, confidently
    kp = torch.cat([uv, torch.ones(b, v, k, 1, dtype=torch.float64)], -1)
    err = lambda **kw: (views.triangulate(kp, focal, pp, R, t, **kw)[0] - pts).norm(dim=-1).max()
    assert err(robust_iterations=0) > 0.1
    assert err() < 0.02


def test_triangulation_drops_points_between_facing_cameras():
    """Two cameras looking at each other see a point near the line between them along almost the same ray:
    its depth is unobservable, so it gets weight 0 instead of a point anywhere on the line."""
    pts = 0.1 * torch.randn(1, 17, 3, generator=_gen(10), dtype=torch.float64)
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [0.0, math.pi, 0.0]], dtype=torch.float64))[None]
    t = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64).expand(1, 2, 3)
    focal, pp = torch.full((1, 2), 1000.0, dtype=torch.float64), torch.full((1, 2, 2), 500.0, dtype=torch.float64)
    cam = torch.einsum("bvij,bkj->bvki", R, pts) + t[:, :, None]
    kp = torch.cat([focal[..., None, None] * cam[..., :2] / cam[..., 2:] + pp[:, :, None],
                    torch.ones(1, 2, 17, 1, dtype=torch.float64)], -1)
    _, weight = views.triangulate(kp, focal, pp, R, t)
    assert (weight == 0).all()
