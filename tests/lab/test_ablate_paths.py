"""`python -m lab ablate-paths`: the controls are what they claim (weight 0 is eps = 0, a weight moves the
result), the gaps method is the default video path when nothing is replaced, and the command gives a row
for every variant of every path (tiny untrained models, synthetic motion)."""
import json

import numpy as np
import torch

from backend.engine.gmm import gmm_term
from backend.engine.modes import video
from backend.engine.scorehmr import ClassicalPrior, LoopOptions, Problem, null_denoiser, refine
from backend.models.diffusion import cosine_alphas_cumprod
from lab import ablate_paths as AP
from lab.bench_common import joints_of
from tests.lab.test_bench import synthetic_val, tiny_engine


def _linear_problem(seed=0):
    """Two groups of one sample: 6D identity poses and a guidance loss linear in them."""
    g = torch.randn(2, 1, 144, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x0 = torch.zeros_like(g)
    x0[..., 0::3] = 1.0
    return Problem(x0, torch.zeros(2, 1, 3, dtype=torch.float64), torch.zeros(2, 1, 8, dtype=torch.float64),
                   lambda rotmats, rot6d, transl, groups: (rot6d * g[groups]).sum((1, 2)))


OPTS = LoopOptions(tau=10, step=2, iterations=3, optimise_translation=False)


def test_l2_control_with_weight_zero_is_the_null_loop_and_a_weight_pulls_to_the_start():
    a = cosine_alphas_cumprod()
    null = refine(null_denoiser, a, _linear_problem(), OPTS)["x0"]
    zero = refine(ClassicalPrior(AP.l2_term(0.0)), a, _linear_problem(), OPTS)["x0"]
    assert torch.equal(zero, null)
    start = _linear_problem().x0
    moved = [float((refine(ClassicalPrior(AP.l2_term(w)), a, _linear_problem(), OPTS)["x0"] - start).norm())
             for w in (0.0, 10.0, 1000.0)]
    assert moved[0] > moved[1] > moved[2] > 0


def test_the_trained_prior_has_no_guidance_term_and_the_hook_leaves_it_alone():
    engine = tiny_engine()
    assert getattr(engine.prior, "guidance_term", None) is None
    assert AP.variant_denoiser("trained", engine.prior, None) is engine.prior
    assert AP.variant_denoiser("null", engine.prior, None) is null_denoiser


def _clip(engine, gap=0, length=24):
    return AP.sim_clips(engine, engine.body, synthetic_val(length=length), 1, length, 0, "medium", gap)[0]


def test_controls_change_the_video_result_and_l2_zero_equals_null():
    engine = tiny_engine()
    clip = _clip(engine)
    st = AP.Settings(scale=1.0, iterations=2)
    run = lambda den: joints_of(engine, AP.run_video(engine, clip, den, st))
    null = run(null_denoiser)
    np.testing.assert_array_equal(run(ClassicalPrior(AP.l2_term(0.0))), null)
    assert np.abs(run(ClassicalPrior(AP.l2_term(100.0))) - null).max() > 1e-5
    assert np.abs(run(ClassicalPrior(gmm_term(engine.pose_gmm(), 1.0))) - null).max() > 1e-5
    assert np.abs(run(engine.prior) - null).max() > 1e-5


def test_gaps_method_without_replacement_is_the_default_video_mode():
    """gap_base + run_gaps with the trained motion prior at the default settings is video.refine's result,
    and a control in the motion prior's place changes the gap's frames."""
    engine = tiny_engine()
    clip = _clip(engine, gap=6)
    assert clip.empty.sum() == 6
    mode = AP.mode_options("video")
    default = AP.Settings(mode.gaps.loop.guidance_scale, mode.gaps.loop.iterations)
    base = AP.gap_base(engine, clip)
    motion = engine.motion_prior(mode.gaps.motion_prior)[0]
    ours = joints_of(engine, AP.run_gaps(engine, clip, base, motion, default))
    product = joints_of(engine, video.refine(engine, clip.obs, clip.start, mode))
    np.testing.assert_array_equal(ours, product)
    null = joints_of(engine, AP.run_gaps(engine, clip, base, null_denoiser, default))
    assert np.abs(null - ours)[clip.empty].max() > 1e-5


def test_grids_give_every_variant_the_same_number_of_points():
    for method in AP.METHODS:
        counts = {v: len(AP.grid("small", method, v)) for v in AP.VARIANTS}
        assert len(set(counts.values())) == 1, counts
    assert {s.weight for s in AP.grid("small", "video", "l2")} == set(AP.GRIDS["small"]["l2"])


def test_verdict_needs_the_margin_and_an_interval_above_zero():
    rows = [dict(variant="trained", pa_mpjpe14=50.0),
            dict(variant="null", diff_pa_mpjpe14=dict(mean=1.5, lo=0.2, hi=2.8)),      # 3%, above zero: beaten
            dict(variant="l2", diff_pa_mpjpe14=dict(mean=0.5, lo=0.1, hi=0.9)),       # 1%: not enough
            dict(variant="gmm", diff_pa_mpjpe14=dict(mean=2.0, lo=-0.1, hi=4.1))]     # interval holds zero
    assert AP.verdict(rows) == dict(null=True, l2=False, gmm=False, all=False)


def test_command_gives_rows_for_every_variant_of_every_path(tmp_path):
    engine = tiny_engine()
    argv = ["--grid", "quick", "--clips", "1", "--report-clips", "2", "--length", "16", "--gap", "4",
            "--instants", "1", "--report-instants", "2", "--sources", "sim", "--out", str(tmp_path)]
    assert AP.main(argv, engine=engine, data=synthetic_val()) == 0
    report = json.loads((tmp_path / "ablation_paths.json").read_text())
    assert list(report["tasks"]) == ["video/sim", "gaps/sim", "calibrated/sim"]
    for name, task in report["tasks"].items():
        assert [r["variant"] for r in task["rows"]] == ["start", *AP.VARIANTS], name
        assert all(np.isfinite(r["pa_mpjpe14"]) and r["n"] == 2 for r in task["rows"]), name
        assert all("diff_pa_mpjpe14" in r for r in task["rows"][2:]), name
        assert set(task["verdict"]) == {*AP.CONTROLS, "all"}
    assert "## Verdicts" in (tmp_path / "ablation_paths.md").read_text()


def test_real_clips_keep_the_excerpts_where_the_detector_missed_frames():
    """Every excerpt of the subjects, with the true joints of its camera; frames BlazePose missed are kept
    (marked empty, their start bridged from the seen neighbours as in Engine.run)."""
    from lab.sim.calibrate import load_chunks

    engine = tiny_engine()
    folder = AP.DETECTIONS["report"]
    clips = AP.real_clips(engine, folder, AP.SUBJECT_PARTS["report"])
    data = load_chunks(folder)
    assert len(clips) == len(data["clip_ids"])
    missed = (data["detected"][:, :, :17, 2] > 0).sum(-1) < 4                      # (E,F) frames without a body
    assert [c.empty.tolist() for c in clips] == missed.tolist()
    assert all(c.gt.shape == (c.obs.keypoints.shape[0], 24, 3) for c in clips)
