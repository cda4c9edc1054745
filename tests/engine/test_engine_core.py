"""The ScoreHMR loop and its guidance terms (with small untrained denoisers: the maths, not the prior)."""
import json

import numpy as np
import pytest
import torch

from backend.engine import guidance
from backend.engine.scorehmr import LoopOptions, Problem, refine
from backend.models.denoiser import Denoiser
from backend.models.diffusion import cosine_alphas_cumprod, ddim_invert, ddim_sample, timesteps


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_cosine_schedule_matches_its_definition():
    a = cosine_alphas_cumprod()
    assert a.shape == (1000,) and (a[1:] < a[:-1]).all()
    assert abs(a[0].item() - (1 - 4.1e-5)) < 1e-5  # beta_0 of the cosine schedule with s = 0.008
    assert a[-1] < 1e-6


def test_timesteps_follow_the_paper():
    assert timesteps(0, 50, 2)[:3] == [0, 2, 4] and timesteps(0, 50, 2)[-1] == 50
    assert timesteps(50, 0, 2) == list(range(50, -1, -2))


@pytest.mark.parametrize("term", ["reprojection", "multiview", "temporal"])
def test_guidance_gradients_match_finite_differences(term):
    g = _gen(0)
    if term == "reprojection":
        pts = (torch.randn(2, 5, 3, generator=g, dtype=torch.float64) * 0.3
               + torch.tensor([0, 0, 4.0], dtype=torch.float64))
        obs = torch.cat([torch.rand(2, 5, 2, generator=g, dtype=torch.float64) * 500 + 200,
                         torch.rand(2, 5, 1, generator=g, dtype=torch.float64)], -1)
        focal = torch.tensor([900.0, 1100.0], dtype=torch.float64)
        pp = torch.tensor([[480.0, 270.0], [640.0, 360.0]], dtype=torch.float64)
        size = torch.tensor([[960.0, 540.0], [1280.0, 720.0]], dtype=torch.float64)
        fn, x = (lambda p: guidance.keypoint_reprojection(p, obs, focal, pp, size).sum()), pts
    elif term == "multiview":
        fn, x = ((lambda r: guidance.multiview_consistency(r).sum()),
                 torch.randn(2, 3, 24, 6, generator=g, dtype=torch.float64))
    elif term == "temporal":
        fn, x = ((lambda r: guidance.temporal_smoothness(r).sum()),
                 torch.randn(2, 6, 144, generator=g, dtype=torch.float64))
    assert torch.autograd.gradcheck(fn, (x.requires_grad_(),), eps=1e-6, atol=1e-4, rtol=1e-3)


def test_reprojection_is_robust_and_resolution_independent():
    pts = torch.tensor([[[0.0, 0.0, 2.0]]], dtype=torch.float64)
    focal, pp = torch.tensor([1000.0], dtype=torch.float64), torch.tensor([[500.0, 500.0]], dtype=torch.float64)
    obs = lambda dx: torch.tensor([[[500.0 + dx, 500.0, 1.0]]], dtype=torch.float64)
    size = torch.tensor([[1000.0, 1000.0]], dtype=torch.float64)
    small = guidance.keypoint_reprojection(pts, obs(1.0), focal, pp, size)
    assert small.item() == pytest.approx(1.0, rel=1e-3)  # ~ r^2 for small residuals
    far = guidance.keypoint_reprojection(pts, obs(1e5), focal, pp, size)
    assert far.item() < 100.0 ** 2 + 1e-6  # bounded by sigma^2: outliers cannot dominate
    # The same geometry at twice the resolution costs the same.
    big = guidance.keypoint_reprojection(pts, torch.tensor([[[1001.0 + 1.0, 1000.0, 1.0]]], dtype=torch.float64),
                                         2 * focal, 2 * pp, 2 * size)
    assert big.item() == pytest.approx(small.item(), rel=1e-6)
    zero_conf = guidance.keypoint_reprojection(pts, torch.tensor([[[900.0, 0.0, 0.0]]], dtype=torch.float64),
                                               focal, pp, size)
    assert zero_conf.item() == 0.0


def test_ddim_inversion_then_sampling_reconstructs():
    torch.manual_seed(0)
    model = Denoiser(context_dim=8, hidden=64).double().eval()
    a = cosine_alphas_cumprod()
    x0 = torch.randn(4, 144, generator=_gen(1), dtype=torch.float64) * 0.5
    c = torch.randn(4, 8, generator=_gen(2), dtype=torch.float64)
    x_tau = ddim_invert(model, x0, c, a, 50, 2)
    # The model's eps matters on the way up (a null denoiser would give sqrt(a) x0 and a trivial round trip) ...
    assert (x_tau - a[50].sqrt() * x0).abs().max() > 1e-2
    # ... and the way back undoes it.
    assert (ddim_sample(model, x_tau, c, a, 50, 2) - x0).abs().max() < 1e-3


class _NullDenoiser(torch.nn.Module):
    """eps = 0: the loop reduces to gradient descent on the guidance loss."""

    def forward(self, x, t, c):
        return torch.zeros_like(x)


def _linear_problem(gradient: torch.Tensor) -> Problem:
    """L = <gradient, x0> per group (constant gradient, zero curvature); gradient (G,S,144) float64."""
    x0 = torch.zeros_like(gradient)
    x0[..., 0::3] = 1.0
    loss = lambda rotmats, rot6d, transl, groups: (rot6d * gradient[groups]).sum((1, 2))
    return Problem(x0, torch.zeros(*gradient.shape[:2], 3, dtype=gradient.dtype),
                   torch.zeros(*gradient.shape[:2], 4, dtype=gradient.dtype), loss)


@pytest.mark.parametrize("tau, step", [(50, 2), (100, 10)])
def test_null_denoiser_loop_moves_by_the_ddim_step_sizes(tau, step):
    """eps = 0: one outer iteration moves x0 by exactly -scale * sum_t sigma_t (sigma_t - sigma_t') grad L
    (times sqrt(a_0) ~ 1 - 2e-5: the loop ends at level t = 0, x_0 = sqrt(a_0) y_0)."""
    from backend.engine.scorehmr import guidance_steps

    a = cosine_alphas_cumprod()
    grad = torch.randn(2, 3, 144, generator=_gen(7), dtype=torch.float64)
    problem = _linear_problem(grad)
    out = refine(_NullDenoiser(), a, problem, LoopOptions(tau=tau, step=step, iterations=1, guidance_scale=3.0,
                                                          optimise_translation=False))
    sigma = ((1 - a) / a).sqrt()
    ts = list(range(tau, -1, -step))
    total = sum(sigma[t] * (sigma[t] - sigma[t_next]) for t, t_next in zip(ts[:-1], ts[1:]))
    torch.testing.assert_close(guidance_steps(a, ts).sum(), total)
    torch.testing.assert_close(out["x0"], problem.x0 - a[0].sqrt() * 3.0 * total * grad, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("tau, step", [(50, 2), (100, 10)])
def test_null_denoiser_loop_on_a_quadratic_moves_by_the_summed_steps(tau, step):
    """eps = 0 on L = 0.5 k ||x0 - c||^2, with y_t = x_t / sqrt(a_t): inversion (which starts from the estimate
    as level t = 0) gives y_tau = x0 / sqrt(a_0); each guided step t -> t' is y' - c = (1 - scale k eta_t)(y - c)
    with eta_t = sigma_t (sigma_t - sigma_t'); the loop returns x_0 = sqrt(a_0) y_0.  So one outer iteration
    ends exactly at sqrt(a_0) c + prod_t (1 - scale k eta_t) (x0 - sqrt(a_0) c), and at a small step it moves by
    -sqrt(a_0) scale sum_t eta_t grad L(y_tau).  Unlike the linear loss, this catches a gradient taken at the
    wrong point (x_t instead of x0_hat, or a stale one)."""
    a = cosine_alphas_cumprod()
    k = 2.0
    centre = 0.1 * torch.randn(2, 1, 144, generator=_gen(11), dtype=torch.float64)
    sigma = ((1 - a) / a).sqrt()
    ts = list(range(tau, -1, -step))
    etas = [sigma[t] * (sigma[t] - sigma[t_next]) for t, t_next in zip(ts[:-1], ts[1:])]

    def run(scale):
        problem = _linear_problem(torch.zeros(2, 1, 144, dtype=torch.float64))
        problem.loss = lambda rotmats, rot6d, transl, groups: 0.5 * k * (rot6d - centre[groups]).pow(2).sum((1, 2))
        out = refine(_NullDenoiser(), a, problem, LoopOptions(tau=tau, step=step, iterations=1, guidance_scale=scale,
                                                              optimise_translation=False, max_step_curvature=0.0))
        return problem.x0, out["x0"]

    scale = 0.5 / (k * float(max(etas)))           # large steps: the gradient changes along the way
    x0, out = run(scale)
    shrink = torch.stack([1 - scale * k * e for e in etas]).prod()
    r0 = a[0].sqrt()
    torch.testing.assert_close(out, r0 * centre + shrink * (x0 - r0 * centre), atol=1e-12, rtol=1e-10)
    assert shrink < 0.5                              # the case is far from the linear one
    x0, out = run(1e-3)                              # small step: first order in the summed step sizes
    expected = -r0 * 1e-3 * sum(etas) * k * (x0 / r0 - centre)
    torch.testing.assert_close(out - x0, expected, atol=1e-14, rtol=1e-4)


def test_step_is_bounded_by_the_curvature_of_the_guidance():
    """A stiff quadratic (curvature k) whose plain step eta * k is far past 2 diverges without the bound
    and converges with it; the chosen scale is max_step_curvature / (eta_max k)."""
    from backend.engine.scorehmr import guidance_steps

    a = cosine_alphas_cumprod()
    stiff = 5.0 / float(guidance_steps(a, list(range(50, -1, -2))).max())     # eta_max * k = 5
    target = torch.full((1, 1, 144), 0.1, dtype=torch.float64)

    def problem():
        p = _linear_problem(target)
        p.loss = lambda rotmats, rot6d, transl, groups: 0.5 * stiff * (rot6d - target[groups]).pow(2).sum((1, 2))
        return p

    start = problem().loss(None, problem().x0, None, torch.arange(1))
    free = refine(_NullDenoiser(), a, problem(), LoopOptions(iterations=1, optimise_translation=False,
                                                             max_step_curvature=0.0))
    bounded = refine(_NullDenoiser(), a, problem(), LoopOptions(iterations=1, optimise_translation=False))
    assert free["loss"][0] > 1e6 * start[0]
    assert bounded["loss"][0] < 1e-6 * start[0]
    assert bounded["guidance_scale"][0].item() == pytest.approx(1.0 / 5.0, rel=1e-6)


def _quadratic_problem(targets, ctx_dim=4):
    """A toy loss 0.5 ||x0 - target||^2 per group; translation pulled to (1,2,3)."""
    G, S, D = targets.shape

    def loss(rotmats, rot6d, transl, groups):
        return (0.5 * (rot6d - targets[groups]).pow(2).sum((1, 2))
                + (transl - torch.tensor([1.0, 2.0, 3.0])).pow(2).sum((1, 2)))

    x0 = torch.zeros(G, S, D)
    x0[..., 0::3] = 1.0  # any valid 6D-ish start
    return Problem(x0, torch.zeros(G, S, 3), torch.zeros(G, S, ctx_dim), loss)


def test_guided_loop_lowers_the_loss():
    torch.manual_seed(0)
    model = Denoiser(context_dim=4, hidden=32).eval()
    a = cosine_alphas_cumprod()
    targets = torch.randn(3, 2, 144, generator=_gen(3)) * 0.1
    problem = _quadratic_problem(targets)
    start = problem.loss(None, problem.x0, problem.transl, torch.arange(3))
    out = refine(model, a, problem, LoopOptions(iterations=6, guidance_scale=50.0))
    assert (out["loss"] < start).all()


def test_a_converged_group_stops_and_a_moving_one_runs_to_the_end():
    """Null denoiser: group 0's stiff quadratic reaches its minimum in the first outer iteration, so the
    second changes its loss by ~0 and it stops there; group 1's loss is linear and falls by the same
    amount every iteration (relative change ~ 0.1 > the threshold), so it runs all 6."""
    from backend.engine.scorehmr import guidance_steps

    a = cosine_alphas_cumprod()
    k = 0.5 / float(guidance_steps(a, list(range(50, -1, -2))).max())
    target = torch.full((1, 144), 0.05, dtype=torch.float64)
    direction = torch.randn(144, generator=_gen(9), dtype=torch.float64)
    problem = _linear_problem(torch.zeros(2, 1, 144, dtype=torch.float64))

    def loss(rotmats, rot6d, transl, groups):
        quadratic = 0.5 * k * (rot6d[:, 0] - target).pow(2).sum(1)
        linear = 100.0 + 30.0 * (rot6d[:, 0] * direction).sum(1)
        return torch.where(groups == 0, quadratic, linear)

    problem.loss = loss
    opts = LoopOptions(iterations=6, optimise_translation=False)
    assert opts.stop_threshold == 1e-2
    out = refine(_NullDenoiser(), a, problem, opts)
    assert out["iterations"].tolist() == [2, 6]
    assert out["denoiser_evaluations"] == 2 * 25 * (2 + 6)
    assert out["loss"][0] < 1e-6


def test_a_group_done_by_the_extra_stop_rule_is_not_moved_and_one_that_gets_there_stops():
    """Problem.done (the single-frame discrepancy stop): group 0 is done at its start, so it keeps it exactly
    and takes no iteration; group 1 is done once its linear loss has fallen below 97 (from 100), i.e. after
    the first iteration that gets it there, long before the 6 it would run otherwise."""
    a = cosine_alphas_cumprod()
    direction = torch.randn(144, generator=_gen(9), dtype=torch.float64)
    problem = _linear_problem(torch.zeros(2, 1, 144, dtype=torch.float64))
    problem.loss = lambda rotmats, rot6d, transl, groups: 100.0 + 30.0 * (rot6d[:, 0] * direction).sum(1)
    free = refine(_NullDenoiser(), a, problem, LoopOptions(iterations=6, optimise_translation=False))
    assert free["iterations"].tolist() == [6, 6] and (free["loss"] < 97.0).all()

    problem.done = lambda x0, transl, groups: (groups == 0) | (problem.loss(None, x0, transl, groups) < 97.0)
    out = refine(_NullDenoiser(), a, problem, LoopOptions(iterations=6, optimise_translation=False))
    assert out["iterations"][0] == 0 and torch.equal(out["x0"][0], problem.x0[0])
    assert 1 <= out["iterations"][1] < 6 and out["loss"][1] < 97.0


def test_v_parameterised_denoiser_returns_eps_and_trains_on_v():
    from backend.models.diffusion import diffusion_loss, q_sample

    torch.manual_seed(0)
    model = Denoiser(context_dim=4, hidden=32, parameterisation="v").double()
    a = model.alphas_cumprod  # the schedule the model converts with (float32 values, here as float64)
    x0, c = torch.randn(5, 144, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    t, noise = torch.tensor([0, 10, 500, 900, 999]), torch.randn(5, 144, dtype=torch.float64)
    x_t = q_sample(x0, t, noise, a)
    at = a[t][:, None]
    v = model.net(x_t, t, c)
    # eps = sqrt(1-a) x_t + sqrt(a) v, the inverse of v = sqrt(a) eps - sqrt(1-a) x0
    torch.testing.assert_close(model(x_t, t, c), (1 - at).sqrt() * x_t + at.sqrt() * v)
    g = torch.Generator().manual_seed(3)
    loss = diffusion_loss(model, x0, c, a, g)
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (5,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    at = a[t][:, None]
    target = at.sqrt() * noise - (1 - at).sqrt() * x0
    torch.testing.assert_close(loss, (model.net(q_sample(x0, t, noise, a), t, c) - target).pow(2).mean())
    with pytest.raises(ValueError, match="parameterisation"):
        Denoiser(context_dim=4, parameterisation="x0")


def test_calibrated_views_start_from_the_body_fitted_to_the_triangulation():
    import math

    from backend.body.body_model import BodyModel
    from backend.engine.api import Engine, EngineOptions
    from backend.engine.guidance import project
    from backend.models.regressor import KeypointRegressor
    from backend.rotations import matrix_to_axis_angle

    bm = BodyModel.load()
    engine = Engine(bm, KeypointRegressor(width=16, blocks=1, feature_dim=8), Denoiser(8, hidden=16, blocks=1),
                    torch.zeros(8), torch.ones(8))
    f = 3
    rotmats = torch.eye(3).expand(f, 24, 3, 3).clone()
    rotmats[:, 0] = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])   # upright in the OpenCV frame
    truth = torch.tensor([[0.1, 0.2, 4.0], [0.0, 0.1, 4.5], [-0.2, 0.0, 5.0]])
    centre = torch.tensor([0.0, 0.0, 4.5])
    R, t = [], []
    for deg in (0.0, 70.0, -80.0):  # world = view 0's camera; the others look at the same spot
        a = math.radians(deg)
        Ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1.0, 0], [-math.sin(a), 0, math.cos(a)]])
        R.append(Ry)
        t.append(centre - Ry @ centre)
    R, t = torch.stack(R), torch.stack(t)
    kp3d = bm.joints_fast(rotmats, torch.zeros(f, 10), truth).keypoints[:, :17]
    kp = torch.stack([torch.cat([project(kp3d @ R[v].T + t[v], torch.full((f,), 1000.0), torch.full((f, 2), 500.0)),
                                 torch.ones(f, 17, 1)], -1) for v in range(3)])
    obs = dict(keypoints=kp.numpy(), focal_length=np.full(3, 1000.0, np.float32),
               principal_point=np.full((3, 2), 500.0, np.float32), image_size=np.full((3, 2), 1000.0, np.float32),
               cam_R=R.numpy(), cam_t=t.numpy())
    aa = matrix_to_axis_angle(rotmats).reshape(f, 72).repeat(3, 1)
    wrong_depth = (truth + torch.tensor([0.0, 0.0, 1.5])).repeat(3, 1)             # one row per view and frame
    init = dict(global_orient=aa[:, :3].numpy(), body_pose=aa[:, 3:].numpy(), betas=np.zeros(10, np.float32),
                transl=wrong_depth.numpy())
    out = engine.run(obs, init, "multiview", EngineOptions(loop=LoopOptions(iterations=0)))
    # View 0's body on the truth (the start was 1.5 m too deep; the fit's priors bend a T-pose a little).
    assert np.linalg.norm(out["keypoints3d"][0] - kp3d.numpy(), axis=-1).mean() < 0.03
    assert json.loads(str(out["info"]))["options"]["loop"]["optimise_translation"] is False


def _two_view_fixture(bm, views: int = 2):
    """One body (instant) seen by ``views`` cameras around it: observations (1,V,...) of a posed body's keypoints
    moved 20 px, the body's start and the cameras (1,V,3,3)/(1,V,3) from view 0's frame to each view."""
    import math

    from backend.engine import problems
    from backend.engine.guidance import project

    g = _gen(21)
    rotmats = torch.eye(3).expand(1, 24, 3, 3).clone()
    rotmats[:, 0] = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])
    transl = torch.tensor([[0.0, 0.2, 4.0]])
    kp3d = bm.joints_fast(rotmats, torch.zeros(1, 10), transl).keypoints[0, :17]
    R, t = [], []
    for v in range(views):
        a = math.radians(75.0 * v)
        Ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1.0, 0], [-math.sin(a), 0, math.cos(a)]])
        R.append(Ry)
        t.append(transl[0] - Ry @ transl[0])
    R, t = torch.stack(R)[None], torch.stack(t)[None]
    px = torch.stack([project((kp3d @ R[0, v].T + t[0, v])[None], torch.full((1,), 1000.0),
                              torch.full((1, 2), 500.0))[0] for v in range(views)])[None] \
        + 20 * torch.randn(1, views, 17, 2, generator=g)
    kp = torch.cat([px, torch.ones(1, views, 17, 1)], -1)
    obs = problems.Observations(kp, torch.full((1, views), 1000.0),
                             torch.full((1, views, 2), 500.0),
                             torch.full((1, views, 2), 1000.0))
    return obs, rotmats, transl, R, t


def _doubled(obs, *cameras):
    """The same views twice (duplicated observations and cameras along the view axis, dim 1)."""
    return obs.map(lambda x, n: torch.cat([x, x], 1)), *(torch.cat([c, c], 1) for c in cameras)


@pytest.mark.parametrize("setting", ["calibrated", "multiview"])
def test_the_step_does_not_grow_with_the_number_of_views(setting):
    """Item 3 of issue 12: the views' terms are normalised so that the step stays inside the stable range
    whatever their number.  With a null denoiser one outer iteration is a gradient step; seeing the same views
    twice (duplicated observations) must give exactly the same step: calibrated, one body reprojected into
    every view (a mean over views); uncalibrated, one body per view (its own reprojection plus Eq. 13's pull to
    the views' mean, neither of which changes when every view is repeated).  A sum over views would double it."""
    from backend.body.body_model import BodyModel
    from backend.engine import problems

    bm = BodyModel.load()
    obs, rotmats, transl, R, t = _two_view_fixture(bm)
    a = cosine_alphas_cumprod()
    loop = LoopOptions(tau=50, step=10, iterations=1, max_step_curvature=0.0, optimise_translation=False)
    w = problems.GuidanceWeights()

    def step(o, R_, t_):
        """(start, result) rotations of one null-denoiser iteration: (1,24,3,3) calibrated, (V,24,3,3) per view."""
        v = o.focal.shape[1]
        if setting == "calibrated":
            loss = problems.calibrated_loss(bm, o, torch.zeros(1, 1, 10), R_, t_, w)
            start, start_transl, ctx = rotmats[:, None], transl[:, None], torch.zeros(1, 1, 4)
        else:   # view v's body in its own camera frame; the views disagree on one joint (Eq. 13 pulls it)
            from backend.engine.views import move_bodies

            rot_v, tr_v = move_bodies(bm, rotmats.expand(v, -1, -1, -1), transl.expand(v, -1),
                                      torch.zeros(v, 10), R_[0], t_[0])
            rot_v[:, 4] = _yaw(torch.tensor([0.3, 0.0]).repeat(v // 2))
            loss = problems.multiview_loss(bm, o, torch.zeros(1, v, 10), w)
            start, start_transl, ctx = rot_v[None], tr_v[None], torch.zeros(1, v, 4)
        return start[0], problems.run(_NullDenoiser(), a, loss, start, start_transl, ctx, loop)["rotmats"][0]

    start, once = step(obs, R, t)
    _, twice = step(*_doubled(obs, R, t))
    assert (once - start).abs().max() > 1e-3                                    # the step is not nothing ...
    torch.testing.assert_close(twice[: len(once)], once, atol=1e-5, rtol=1e-5)   # ... and the same for 2V views


def _yaw(angles: torch.Tensor) -> torch.Tensor:
    c, s = angles.cos(), angles.sin()
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1), torch.stack([-s, z, c], -1)], -2)


def test_rotation_mean_is_weighted_and_ignores_unseen_views():
    from backend.engine.views import rotation_mean

    R = _yaw(torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64))[:, None]           # (V=3,1,3,3)
    torch.testing.assert_close(rotation_mean(R[:2], torch.ones(2, 1, dtype=torch.float64)),
                               _yaw(torch.tensor([0.2], dtype=torch.float64)))       # equal weights: the middle
    w = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64)                     # a view that saw nothing
    torch.testing.assert_close(rotation_mean(R, w), _yaw(torch.tensor([0.2], dtype=torch.float64)))
    torch.testing.assert_close(rotation_mean(R, torch.zeros(3, 1, dtype=torch.float64)),  # none: all count
                               rotation_mean(R, torch.ones(3, 1, dtype=torch.float64)))
