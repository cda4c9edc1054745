"""The benchmarks' unknown focal length (a drawn field of view, the engine told the CLI's default) and the
real-detection table's excerpts with missed frames (kept and counted)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel
from backend.contract.observations import DEFAULT_FOV_DEG, focal_from_fov
from backend.engine.gmm import GMM, MaxMixturePrior
from lab import bench, bench_detections
from lab.bench_common import told_focal
from lab.sim.cameras import FOV_DEG_RANGE, fov_deg, sample_cameras
from tests.lab.test_bench import synthetic_val, tiny_engine

DETECTIONS = Path(__file__).resolve().parents[2] / "docs/benchmark/detections_val64_report"


def _people(n: int) -> torch.Tensor:
    """(n,2,3) box corners of a 1.7 m person."""
    return torch.tensor([[-0.3, 0.0, -0.2], [0.3, 1.7, 0.2]], dtype=torch.float64).expand(n, 2, 3)


def test_fov_draw_is_uniform_in_its_range_and_seeded():
    draw = lambda seed: sample_cameras(_people(400), torch.Generator().manual_seed(seed), fov_deg_range=FOV_DEG_RANGE)
    cams = draw(3)
    fov = fov_deg(cams.focal_length, cams.image_size)
    assert FOV_DEG_RANGE == (40.0, 75.0)
    assert fov.min() >= 40.0 and fov.max() <= 75.0
    # Uniform over the whole range, not a narrow part of it: both ends and the middle are drawn.
    assert fov.min() < 42 and fov.max() > 73 and 54 < fov.mean() < 61
    assert torch.equal(draw(3).K, cams.K) and not torch.equal(draw(4).K, cams.K)
    # The default draw (35-85 mm across the width) is not this one.
    default = sample_cameras(_people(400), torch.Generator().manual_seed(3))
    assert fov_deg(default.focal_length, default.image_size).max() < 60


def test_the_unknown_setting_tells_the_cli_default_focal_and_keeps_the_truth():
    obs = bench.frame_observations(BodyModel.load(), synthetic_val(), 5, 7, camera_kwargs=dict(
        fov_deg_range=FOV_DEG_RANGE))
    assert told_focal(obs, "known") is obs
    unknown = told_focal(obs, "unknown")
    want = focal_from_fov(obs["image_size"].double().numpy(), DEFAULT_FOV_DEG)
    np.testing.assert_allclose(unknown["focal_length"].numpy(), want, rtol=1e-6)
    assert not np.allclose(obs["focal_length"].numpy(), want, rtol=1e-3)    # the true focal differs
    assert unknown["gt_joints"] is obs["gt_joints"] and unknown["keypoints"] is obs["keypoints"]
    with pytest.raises(ValueError):
        told_focal(obs, "guessed")


def test_the_focal_section_runs_both_settings_on_the_same_draw_and_tells_the_engine_the_default():
    engine = tiny_engine()
    told: list[torch.Tensor] = []
    initial = engine.initial
    engine.initial = lambda kp, focal, pp: told.append(focal.detach().cpu().clone()) or initial(kp, focal, pp)
    cfg = bench.BenchConfig(frames=3, videos=1, video_length=12, quick=True, scorehmr_iterations=1, fit_steps=3,
                            motion_prior=None, sections=("focal",))
    gmm = GMM(np.ones(1), np.zeros((1, 69)), 0.09 * np.eye(69)[None])
    b = bench.Bench(engine, synthetic_val(), MaxMixturePrior(gmm), cfg)
    section = b.focal()
    frames = bench.frame_observations(b.sim_body, b.data, 3, cfg.seed + bench.SEED_FOCAL, cfg.level,
                                      dict(fov_deg_range=FOV_DEG_RANGE))
    true_focal = frames["focal_length"].float()
    default = torch.as_tensor(focal_from_fov(frames["image_size"].double().numpy(), DEFAULT_FOV_DEG)).float()
    single = [f for f in told if f.shape == (3,)]
    assert len(single) == 2
    torch.testing.assert_close(single[0], true_focal)
    torch.testing.assert_close(single[1], default)
    assert [(r["focal"], r["method"]) for r in section["single_frame"]] == [
        (s, m) for s in ("known", "unknown")
        for m in ("start", "+SMPLify", "+DPoser-style", "+ScoreHMR (paper)", "+ScoreHMR (ours)")]
    assert {r["focal"] for r in section["video"]} == {"known", "unknown"}
    assert all(r["depth_pct"] >= 0 and np.isfinite(r["pa_mpjpe14"]) for r in section["video"])
    assert 40 <= section["fov_deg"]["min"] <= section["fov_deg"]["max"] <= 75
    assert b.speed == []     # the section leaves the speed table alone
    md = "\n".join(bench.focal_markdown(section, dict(seed=0)))
    assert "## Unknown focal length" in md and "| focal | method |" in md and "root depth err %" in md


def _with_missed_frames(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the committed report detections where BlazePose 'missed' frames 10-12 of excerpt 0."""
    with np.load(DETECTIONS / "chunk_0000.npz") as z:
        chunk = dict(z)
    chunk["detected"][0, 10:13] = 0.0
    np.savez(tmp_path / "chunk_0000.npz", **chunk)
    return tmp_path, f"{tmp_path.name}/{chunk['clip_ids'][0]}"


def test_real_detection_excerpts_with_missed_frames_are_kept_counted_and_get_the_default_focal(tmp_path):
    folder, missed_name = _with_missed_frames(tmp_path)
    seen_obs = []

    def results(engine, obs):
        seen_obs.append(obs)
        f = obs["keypoints"].shape[1]
        joints = np.zeros((f, 24, 3))
        joints[..., 2] = 5.0
        joints[:, :, 0] = np.linspace(-0.5, 0.5, 24)
        return {"start": joints, "ScoreHMR (ours)": joints + 0.01}

    report = bench_detections.evaluate(None, [folder], (108, 115, 132, 135), ("known", "unknown"), results)
    excerpts = len(report["excerpts"])
    assert excerpts == 4 and missed_name in report["excerpts"]        # every excerpt of the chunk is kept
    assert report["missed"] == {missed_name: 3} and report["frames_total"] == 4 * 64
    assert len(seen_obs) == 2 * excerpts
    known, unknown = seen_obs[0::2], seen_obs[1::2]
    with np.load(folder / "chunk_0000.npz") as z:
        render_focal, size = z["focal_length"], z["image_size"]
    np.testing.assert_allclose([o["focal_length"][0] for o in known], render_focal, rtol=1e-6)
    np.testing.assert_allclose([o["focal_length"][0] for o in unknown], focal_from_fov(size, DEFAULT_FOV_DEG))
    assert all(o.focal_source.startswith("estimated") for o in unknown)
    # The missed frames reach the methods as frames without keypoints.
    assert (known[0]["keypoints"][0, 10:13, :, 2] == 0).all()
    assert len(report["pa_mpjpe14_per_excerpt"]["unknown"]["ScoreHMR (ours)"]) == excerpts
    scores = report["focal"]["known"]["start"]
    assert scores["pa_mpjpe14"] != scores["pa_mpjpe14_detected"]
    md = bench_detections.markdown(report, "cmd")
    assert f"found no one: 1 ({missed_name}: 3)" in md and f"3 of {4 * 64}" in md
    assert "## unknown focal, frames with a detection" in md


def test_pooled_errors_over_detected_frames_leave_the_missed_ones_out():
    f = 8
    seen = np.ones(f, bool)
    seen[3] = False
    errs = dict(pa_mpjpe14=np.where(seen, 1.0, 100.0), mpjpe14=np.where(seen, 2.0, 100.0),
                depth=np.where(seen, 0.01, -0.5), accel=np.arange(f - 2, dtype=float),
                accel_abs=np.ones(f - 2))
    out = bench_detections.pooled([errs], [seen])
    assert out["pa_mpjpe14_detected"] == 1.0 and out["mpjpe14_detected"] == 2.0
    assert out["pa_mpjpe14"] == round((7 + 100) / 8, 2)
    assert out["depth_pct_detected"] == 1.0 and out["depth_bias_pct"] == round(100 * (7 * 0.01 - 0.5) / 8, 2)
    # Accelerations at interior frames 1..6 (indices 0..5): those next to frame 3 (indices 1, 2, 3) leave.
    assert out["accel_detected"] == round(np.mean([0, 4, 5]), 2)
