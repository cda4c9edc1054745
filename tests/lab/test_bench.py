"""`python -m lab bench`: end to end on a tiny synthetic dataset with tiny untrained models."""
import json

import numpy as np
import pytest
import torch

from lab import bench, bench_video
from backend.body.body_model import BodyModel
from backend.engine import problems
from backend.engine.api import Engine
from backend.engine.gmm import GMM
from backend.models.denoiser import Denoiser
from backend.models.motion import MOTION_PRIOR_PATH
from backend.models.regressor import KeypointRegressor

TINY = ["--quick", "--frames", "3", "--videos", "1", "--video-length", "12", "--instants", "2", "--views", "2"]


def synthetic_val(clips=2, length=30, seed=0) -> dict:
    """A load_split('val')-like dict: smooth random motion (body-model frame, upright, walking sideways)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None] / 24.0
    go, bp, tr = [], [], []
    for _ in range(clips):
        phase = rng.uniform(0, 6)
        bp.append(0.1 * rng.standard_normal(69) + 0.25 * rng.standard_normal(69) * np.sin(2 * np.pi * t + phase))
        go.append(np.stack([np.zeros(length), rng.uniform(-np.pi, np.pi) + 0.3 * t[:, 0], np.zeros(length)], 1))
        tr.append(np.stack([0.3 * t[:, 0], np.zeros(length), np.zeros(length)], 1))
    f32 = lambda xs: np.concatenate(xs).astype(np.float32)
    return dict(global_orient=f32(go), body_pose=f32(bp), transl=f32(tr), clip_start=np.arange(clips) * length,
                clip_length=np.full(clips, length), betas=np.zeros(10, np.float32), meta={})


def tiny_engine() -> Engine:
    torch.manual_seed(0)
    return Engine(BodyModel.load(), KeypointRegressor(width=32, blocks=1, feature_dim=8),
                  Denoiser(8, hidden=32, blocks=1), torch.zeros(8), torch.ones(8))


@pytest.mark.slow
def test_bench_quick_writes_the_paper_shaped_tables(tmp_path):
    engine = tiny_engine()
    prior, grad, video_loss = engine.prior, torch.autograd.grad, problems.video_loss
    gmm = GMM(np.ones(1), np.zeros((1, 69)), 0.09 * np.eye(69)[None])
    assert bench.main(TINY + ["--out", str(tmp_path)], engine=engine, data=synthetic_val(), gmm=gmm) == 0
    # The profiling wrappers are gone again.
    assert engine.prior is prior and torch.autograd.grad is grad and problems.video_loss is video_loss
    assert "joints_fast" not in vars(engine.body)

    report = json.loads((tmp_path / "benchmark.json").read_text())
    metrics = {"pa_mpjpe14", "mpjpe14", "pa_mpjpe24", "mpjpe24"}
    frame = report["single_frame"]
    assert [(r["start"], r["method"]) for r in frame] == [
        (s, m) for s in bench.STARTS for m in ("start", "+SMPLify", "+DPoser-style", "+ScoreHMR (paper)",
                                                                   "+ScoreHMR (ours)")]
    assert all(metrics <= r.keys() and all(np.isfinite(r[k]) for k in metrics) for r in frame)
    assert all(r["frames"] == 3 for r in frame)
    # The near-perfect start is near perfect: ground truth + 3 deg per joint.
    near = next(r for r in frame if r["start"] == "near-perfect" and r["method"] == "start")
    assert near["pa_mpjpe14"] < 40

    video = report["video"]
    # The motion prior's row comes with its shipped checkpoint (bench --motion-prior's default).
    motion_row = [bench_video.MOTION] if MOTION_PRIOR_PATH.is_file() else []
    assert [r["method"] for r in video] == ["start", "start + filter", "per-frame ScoreHMR + filter",
                                            "temporal SMPLify", "ScoreHMR (paper)", "ScoreHMR (ours)", *motion_row]
    assert all((metrics | {"accel", "accel_abs"}) <= r.keys() for r in video)
    assert video[1]["accel_abs"] < video[0]["accel_abs"]  # filtering smooths the jittery start

    mv = report["multiview"]
    assert [(r["views"], r["setting"], r["method"]) for r in mv] == [
        (2, "calibrated", "start (view 0)"), (2, "calibrated", "triangulate + fit"),
        (2, "calibrated", "ScoreHMR calibrated"), (2, "uncalibrated", "start (per view)"),
        (2, "uncalibrated", "ScoreHMR Eq. 13 (paper)"), (2, "uncalibrated", "Eq. 13 without prior (ours)")]

    speed = report["speed"]
    methods = {(r["mode"], r["method"]) for r in speed}
    assert {("frame", "ScoreHMR (paper)"), ("frame", "ScoreHMR (ours)"), ("frame", "SMPLify"),
            ("frame", "DPoser-style"),
            ("video", "ScoreHMR (ours)"), ("video", "temporal SMPLify"),
            ("multiview 2 views (calibrated)", "ScoreHMR calibrated"),
            ("multiview 2 views (uncalibrated)", "ScoreHMR Eq. 13 (paper)"),
            ("multiview 2 views (uncalibrated)", "Eq. 13 without prior (ours)")} <= methods
    for r in speed:
        assert r["frames_per_s"] > 0 and r["peak_mb"] > 0 and r["device"] == "cpu"
    by = {(r["mode"], r["method"]): r for r in speed}
    assert by[("frame", "SMPLify")]["denoiser_evals_per_frame"] == 0
    assert by[("frame", "DPoser-style")]["denoiser_evals_per_frame"] == 15  # --quick: 15 steps, one eval each
    # Ours fits the regressor's own start (frame_fit), with the same 15 steps under --quick, and no loop.
    assert by[("frame", "ScoreHMR (ours)")]["denoiser_evals_per_frame"] == 15
    # Video: 2 outer iterations x (25 inversion + 25 guided) evaluations per frame with --quick, no early stop.
    assert 0 < by[("video", "ScoreHMR (ours)")]["denoiser_evals_per_frame"] <= 100

    parts = report["video_breakdown"]
    assert [p["part"].split(" ")[0] for p in parts] == ["denoiser", "body", "guidance", "backward", "other:"]
    assert sum(p["share"] for p in parts) == pytest.approx(1.0, abs=0.01)
    # The default video loop runs the GMM pose prior, no network (EngineOptions.video_prior): the profile sees
    # no denoiser call, and the guidance's backward passes.
    assert parts[0]["calls"] == 0 and parts[3]["calls"] > 0

    (long,) = report["long_clip"]
    assert long["frames"] == round(0.2 * 60 * 30) and long["finite"] and long["peak_mb"] > 0

    md = (tmp_path / "benchmark.md").read_text()
    for heading in ("## Single frame (paper Table 2)", "## Video (paper Table 4)", "## Multi-view (paper Table 3)",
                    "## Speed", "### Where the time goes", "### Memory on a long clip"):
        assert heading in md
    assert "| start | method | PA-MPJPE 14 | MPJPE 14 | PA-MPJPE 24 | MPJPE 24 | change | s/frame |" in md
    assert "UNTRAINED" in md
    # The detector section: BlazePose on the example shot and the committed validation detections.
    det = report["detector"]
    assert (det["example"]["frames"] == 96 and det["example"]["mean_px"] < 6
            and det["example"]["frames_per_cpu_second"] > 1)
    assert det["rendered"]["found"] > 0.95 and det["rendered"]["median_px"] < 10
    assert [r["method"] for r in det["engine"]] == ["start", "start_subset", "frame", "video"]
    assert "### The built-in detector (MediaPipe BlazePose)" in md
    # Off-centre people: the same frames centred and anywhere, naive regressor and its virtual camera.
    off = report["off_centre"]
    assert [(r["placement"], r["regressor"], r["method"]) for r in off] == [
        (p, c, m) for p in bench.PLACEMENTS for c in ("naive", "virtual") for m in ("start", "+ScoreHMR")]
    assert all(0 <= r["orient_deg"] <= 180 and np.isfinite(r["mpjpe14"]) for r in off)
    assert "## Off-centre people" in md and "| placement | regressor | method | orient (deg) |" in md
    assert engine.virtual_camera  # the section's switch is undone


def test_bench_merge_puts_a_rerun_section_into_the_committed_report():
    from pathlib import Path

    committed = json.loads((Path(bench.__file__).resolve().parents[1] / "docs/benchmark/benchmark.json").read_text())
    row = dict(placement="off-centre", regressor="virtual", method="start", frames=2, orient_deg=1.0,
               orient_in_view_deg=1.0, pa_mpjpe14=1.0, mpjpe14=2.0, pa_mpjpe24=3.0, mpjpe24=4.0, outside=0.5,
               off_axis_deg=9.0, s_per_frame=0.0)
    rerun = dict(config=dict(sections=["off_centre"]), off_centre=[row], speed=[dict(mode="off", method="x")],
                 video_breakdown=[], seconds=2.0)
    merged = bench.merge_rerun(committed, rerun, "python -m lab bench --sections off_centre")
    assert merged["single_frame"] == committed["single_frame"] and merged["off_centre"] == [row]
    assert merged["speed"] == committed["speed"] + [dict(mode="off", method="x")]
    assert merged["reruns"][:-1] == committed.get("reruns", [])
    command = "python -m lab bench --sections off_centre"
    assert merged["reruns"][-1] == dict(sections=["off_centre"], command=command, seconds=2.0)
    md = bench.markdown(merged)
    assert "off_centre (`python -m lab bench --sections off_centre`)." in md.split("\n")[3]
    assert "## Off-centre people: 2 validation frames" in md and "50% of the frames" in md


def test_bench_reports_missing_inputs(tmp_path, capsys):
    assert bench.main(["--dataset", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    assert bench.main(["--gmm", str(tmp_path / "none.npz"), "--out", str(tmp_path / "out")],
                      data=synthetic_val()) == 2
    assert "fit-gmm" in capsys.readouterr().err


def test_select_subjects_keeps_whole_clips_of_those_subjects():
    lengths, subjects = np.array([2, 3, 4]), np.array([1, 2, 1])
    n = lengths.sum()
    data = dict(global_orient=np.arange(n)[:, None] * np.ones(3), body_pose=np.zeros((n, 69)), transl=np.zeros((n, 3)),
                clip_index=np.repeat(np.arange(3), lengths),
                frame_index=np.concatenate([np.arange(k) for k in lengths]),
                clip_ids=np.array(["a", "b", "c"]), clip_start=np.array([0, 2, 5]), clip_length=lengths,
                subject=subjects, meta={})
    out = bench.select_subjects(data, (1,))
    assert out["global_orient"][:, 0].tolist() == [0, 1, 5, 6, 7, 8]
    assert out["clip_index"].tolist() == [0, 0, 1, 1, 1, 1] and out["clip_ids"].tolist() == ["a", "c"]
    assert out["clip_start"].tolist() == [0, 2] and out["clip_length"].tolist() == [2, 4]
    assert set(bench.SUBJECT_PARTS["tuning"]).isdisjoint(bench.SUBJECT_PARTS["report"])
