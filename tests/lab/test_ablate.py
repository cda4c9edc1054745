"""`python -m lab ablate`: the variants really change what the loop is given, the statistics are right,
and the command runs end to end (tiny untrained models, synthetic motion)."""
import json

import numpy as np
import pytest
import torch

from lab import ablate, bench
from backend.engine.scorehmr import LoopOptions, Problem, refine
from backend.models.diffusion import cosine_alphas_cumprod
from tests.lab.test_bench import synthetic_val, tiny_engine


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_null_variant_gives_the_loop_eps_zero_and_its_single_step_is_the_analytic_one():
    engine = tiny_engine()
    ctx = torch.randn(3, 8, generator=_gen(0))
    eps_model, given = ablate.variant_inputs("null", engine, ctx, seed=0)
    x = torch.randn(3, 144, generator=_gen(1))
    assert torch.equal(eps_model(x, torch.tensor(10), given), torch.zeros_like(x))
    # One guided DDIM step 2 -> 0 with eps = 0 on L = <g, x0>:
    # x0 moves by -sqrt(a_0) scale sigma_2 (sigma_2 - sigma_0) g.
    a = cosine_alphas_cumprod()
    g = torch.randn(2, 1, 144, generator=_gen(2), dtype=torch.float64)
    x0 = torch.zeros_like(g)
    x0[..., 0::3] = 1.0
    problem = Problem(x0, torch.zeros(2, 1, 3, dtype=torch.float64), torch.zeros(2, 1, 8, dtype=torch.float64),
                      lambda rotmats, rot6d, transl, groups: (rot6d * g[groups]).sum((1, 2)))
    out = refine(eps_model, a, problem, LoopOptions(tau=2, step=2, iterations=1, guidance_scale=2.0,
                                                    optimise_translation=False))
    sigma = ((1 - a) / a).sqrt()
    expected = x0 - a[0].sqrt() * 2.0 * sigma[2] * (sigma[2] - sigma[0]) * g
    torch.testing.assert_close(out["x0"], expected, atol=1e-14, rtol=1e-12)


def _case(engine, condition="medium", frames=4, seed=0):
    return ablate.make_case(engine, engine.body, synthetic_val(), condition, frames, seed)


@pytest.mark.parametrize("method", ["loop", "fit"])
def test_variants_change_the_result_and_trained_is_reproducible(method):
    engine = tiny_engine()
    case = _case(engine)
    settings = ablate.Settings(scale=1.0, tau=10, step=5, iterations=1, prior_weight=20.0 if method == "fit" else None)
    err = {v: ablate.refine_errors(engine, case, v, settings, 0, method)["pa_mpjpe14"] for v in ablate.VARIANTS}
    again = ablate.refine_errors(engine, case, "trained", settings, 0, method)["pa_mpjpe14"]
    np.testing.assert_array_equal(again, err["trained"])
    for v in ("untrained", "null", "unconditional", "shuffled"):
        assert np.abs(err[v] - err["trained"]).max() > 1e-6, v


def test_fit_method_fits_the_regressor_start_with_the_given_prior_weight():
    """The fit method goes through frame_fit (the start is the built-in regressor's), and its prior weight
    is the tuned one: weight 0 and 20 differ for the trained prior, and the fit is not the loop."""
    engine = tiny_engine()
    case = _case(engine)
    assert case.start["source"] == ablate.REGRESSOR_SOURCE
    fit = lambda w, v="trained": ablate.refine_errors(engine, case, v, ablate.Settings(prior_weight=w), 0, "fit")
    loop = ablate.refine_errors(engine, case, "trained", ablate.Settings(scale=1.0, tau=10, step=5, iterations=1), 0)
    assert np.abs(fit(20.0)["pa_mpjpe14"] - fit(0.0)["pa_mpjpe14"]).max() > 1e-6
    assert np.abs(fit(20.0)["pa_mpjpe14"] - loop["pa_mpjpe14"]).max() > 1e-6
    assert ablate.grid("small", "fit")[0].prior_weight == 0.0


def test_shuffled_context_is_a_derangement_and_unconditional_is_zeros():
    engine = tiny_engine()
    ctx = torch.arange(7 * 8, dtype=torch.float32).reshape(7, 8)      # distinct rows
    _, shuffled = ablate.variant_inputs("shuffled", engine, ctx, seed=3)
    rows = [int(r[0]) // 8 for r in shuffled]
    assert sorted(rows) == list(range(7))                               # a permutation of the batch ...
    assert all(r != i for i, r in enumerate(rows))                      # ... that moves every sample
    for n in (2, 3, 10):
        perm = ablate.derangement(n, _gen(n))
        assert sorted(perm.tolist()) == list(range(n)) and (perm != torch.arange(n)).all()
    prior, zeros = ablate.variant_inputs("unconditional", engine, ctx, seed=0)
    assert prior is engine.prior and torch.equal(zeros, torch.zeros_like(ctx))


def test_untrained_variant_has_the_prior_architecture_with_seeded_weights():
    engine = tiny_engine()
    a = ablate.untrained_like(engine.prior, 5)
    b = ablate.untrained_like(engine.prior, 5)
    c = ablate.untrained_like(engine.prior, 6)
    assert a.config == engine.prior.config
    flat = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    assert torch.equal(flat(a), flat(b)) and not torch.equal(flat(a), flat(c))
    assert not torch.equal(flat(a), flat(engine.prior))


def test_occlusion_zeroes_exactly_one_whole_limb_per_frame():
    kp = torch.rand(50, 17, 3, generator=_gen(0)) + 0.1
    out = ablate.occlude_limbs(kp, _gen(1))
    torch.testing.assert_close(out[..., :2], kp[..., :2])
    hidden = out[..., 2] == 0
    limbs = [set(limb) for limb in ablate.LIMBS]
    for i in range(len(kp)):
        assert set(torch.nonzero(hidden[i]).flatten().tolist()) in limbs
    assert len({tuple(torch.nonzero(h).flatten().tolist()) for h in hidden}) == 4   # every limb drawn


def test_off_centre_condition_moves_the_principal_point_away_from_the_person():
    engine = tiny_engine()
    centred, off = _case(engine, "medium", 8), _case(engine, "off_centre", 8)
    offset = lambda c: (c.obs.principal - c.obs.image_size / 2).abs().amax(1)
    assert offset(centred).max() < 1e-3 and offset(off).min() > 1.0


def test_multiview_case_is_view_major_and_its_errors_are_per_instant():
    engine = tiny_engine()
    case = _case(engine, "multiview", frames=3)
    views = ablate.CONDITIONS["multiview"].views
    assert case.views == views and case.obs.focal.shape == (views, 3) and case.gt.shape == (views * 3, 24, 3)
    assert case.context.shape[0] == case.start["rotmats"].shape[0] == views * 3
    # The start's per-instant error is the mean over that instant's views (row v*N + n).
    from backend.metrics import sample_joint_errors
    per_row = sample_joint_errors(bench.joints_of(engine, case.start), case.gt)["mpjpe14"]
    np.testing.assert_allclose(ablate.case_errors(engine, case, case.start)["mpjpe14"],
                               per_row.reshape(views, 3).mean(0))
    # Every view of an instant sees the same body (the truth differs by the camera only: same bone lengths).
    bones = np.linalg.norm(case.gt[:, 1:] - case.gt[:, :1], axis=-1).reshape(views, 3, 23)
    np.testing.assert_allclose(bones, np.broadcast_to(bones[:1], bones.shape), atol=1e-5)
    settings = ablate.Settings(scale=1.0, tau=10, step=5, iterations=1)
    err = {v: ablate.refine_errors(engine, case, v, settings, 0, "multiview")["pa_mpjpe14"]
           for v in ("trained", "null")}
    assert err["trained"].shape == (3,) and np.abs(err["trained"] - err["null"]).max() > 1e-6


def test_paired_interval_on_known_distributions():
    const = ablate.paired_interval(np.full(20, -1.5))
    assert const["mean"] == const["lo"] == const["hi"] == -1.5
    # A known normal: mean 1, sd 2, n 30 -> the 95% interval covers 1 in ~95% of repeats, and its half
    # width is t_{29} 2 / sqrt(30) ~ 0.75 on average.
    rng = np.random.default_rng(0)
    runs = [ablate.paired_interval(rng.normal(1.0, 2.0, 30)) for _ in range(2000)]
    coverage = np.mean([r["lo"] <= 1.0 <= r["hi"] for r in runs])
    assert 0.935 < coverage < 0.965
    assert np.mean([(r["hi"] - r["lo"]) / 2 for r in runs]) == pytest.approx(2.045 * 2 / np.sqrt(30), rel=0.03)


def test_tuning_and_report_subjects_and_draws_are_disjoint():
    parts = bench.SUBJECT_PARTS
    assert not set(parts["tuning"]) & set(parts["report"])
    assert ablate.SEED_TUNE != ablate.SEED_REPORT
    data = synthetic_val(clips=4)
    data["subject"] = np.array(list(parts["tuning"][:2]) + list(parts["report"][:2]))
    data["clip_index"] = np.repeat(np.arange(4), 30)
    data["frame_index"] = np.tile(np.arange(30), 4)
    tuning, report = (bench.select_subjects(data, parts[k]) for k in ("tuning", "report"))
    assert len(tuning["global_orient"]) == len(report["global_orient"]) == 60
    np.testing.assert_array_equal(tuning["body_pose"], data["body_pose"][:60])
    np.testing.assert_array_equal(report["body_pose"], data["body_pose"][60:])


def test_grid_search_picks_the_best_tuning_setting():
    engine = tiny_engine()
    settings = [ablate.Settings(1.0, 10, 5, 1), ablate.Settings(0.0, 10, 5, 1)]
    setup = ablate.make_setup(engine, dict(tuning=synthetic_val()))
    chosen = ablate.tune(ablate.local_mapper(setup), ["trained", "null"], dict(loop=settings, multiview=settings[:1]),
                         4, [0], lambda s: None)
    for v in ("trained", "null"):
        scores = [r["pa_mpjpe14"] for r in chosen["loop"][v]["grid"]]
        assert chosen["loop"][v]["pa_mpjpe14"] == min(scores) and len(scores) == 2
        assert len(chosen["multiview"][v]["grid"]) == 1


@pytest.mark.slow
def test_ablate_quick_end_to_end(tmp_path):
    out = tmp_path / "docs"
    conditions = ("medium", "occluded", "multiview")
    assert ablate.main(["--quick", "--seeds", "0", "1", "--conditions", *conditions, "--out", str(out)],
                       engine=tiny_engine(), data=synthetic_val()) == 0
    report = json.loads((out / "ablation.json").read_text())
    md = (out / "ablation.md").read_text()
    assert set(report["chosen"]) == set(ablate.METHODS)
    assert all(set(c) == set(ablate.VARIANTS) for c in report["chosen"].values())
    rows = {(r["condition"], r["method"], r["variant"]): r for r in report["rows"]}
    expected = {(c, m, v) for c in conditions for m in ablate.CONDITIONS[c].methods for v in ablate.VARIANTS}
    assert set(rows) == expected | {(c, "", "start") for c in conditions}
    assert all(r["n"] == 8 for r in rows.values())                      # 4 frames (instants) x 2 seeds, pooled
    for m in ("loop", "fit"):
        for v in ("untrained", "null", "unconditional", "shuffled"):
            d = rows[("medium", m, v)]["diff_pa_mpjpe14"]
            assert d["lo"] <= d["mean"] <= d["hi"] and d["n"] == 8
    assert "python -m lab ablate --quick" in md and "numbers mean nothing" in md
