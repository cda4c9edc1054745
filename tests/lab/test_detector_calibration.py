"""The BlazePose calibration of the detector simulator (lab/sim/calibrate.py, docs/detector_calibration.md)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lab.sim import calibrate
from lab.sim.detector_noise import CALIBRATION_PATH, KEYPOINT_NAMES, NoiseLevel, simulate_detections

HELDOUT_PATH = CALIBRATION_PATH.with_name("detector_calibration_heldout.npz")
needs_calibration = pytest.mark.skipif(not (CALIBRATION_PATH.is_file() and HELDOUT_PATH.is_file()),
                                       reason="run `python -m lab calibrate-detector stats` first")


def _standing_truth(excerpts: int = 64, frames: int = 8, seed: int = 0) -> dict:
    """Projected COCO-17 + FOOT6 points of the rest pose seen by random cameras (video windows)."""
    from backend.body.body_model import BodyModel
    from lab.sim.observations import video_observations

    bm = BodyModel.load(None, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    params = dict(global_orient=np.zeros((excerpts, frames, 3)),
                  body_pose=0.1 * rng.standard_normal((excerpts, frames, 69)),
                  betas=np.zeros(10))
    obs = video_observations(bm, params, torch.Generator().manual_seed(seed), "clean", foot_points=True,
                             as_numpy=True)
    return dict(uv=obs["gt_keypoints2d"], depth=obs["gt_keypoints3d"][..., 2], image_size=obs["image_size"])


def test_statistics_recover_the_simulated_bias_spread_and_swaps():
    truth = _standing_truth()
    k = len(KEYPOINT_NAMES)
    sigma = tuple(0.004 + 0.0005 * i for i in range(k))
    bias = tuple((0.01 * ((i % 3) - 1), -0.02 if "hip" in n else 0.0) for i, n in enumerate(KEYPOINT_NAMES))
    level = NoiseLevel(temporal_rho=0.5, conf_logit0=3.0, conf_noise=0.3, swap_rate=0.05, swap_run=2.0,
                       joint_sigma=sigma, joint_bias=bias, always_missing=("left_small_toe", "right_small_toe"))
    stats = calibrate.simulated_statistics(truth, level)
    seen = [i for i, n in enumerate(KEYPOINT_NAMES) if "small_toe" not in n]
    assert np.array(stats["sigma"])[seen] == pytest.approx(np.array(sigma)[seen], rel=0.2)
    assert np.array(stats["bias"])[seen] == pytest.approx(np.array(bias)[seen], abs=0.004)
    assert np.array(stats["missed_rate"])[[19, 20]] == pytest.approx(1.0)
    assert np.mean(stats["swap_rate"]) == pytest.approx(0.05, abs=0.03)
    assert stats["lag1_correlation"] == pytest.approx(0.5, abs=0.1)
    assert stats["confidence_fit"]["logit0"] == pytest.approx(3.0, abs=0.3)

    fitted = calibrate.fit_noise_level(stats)
    assert fitted.always_missing == ("left_small_toe", "right_small_toe")
    assert np.array(fitted.joint_sigma)[seen] == pytest.approx(np.array(sigma)[seen], rel=0.2)


def test_old_presets_draw_the_same_noise_as_before_the_calibration():
    """The new NoiseLevel fields are neutral by default: "medium" keeps its exact draws (values from main)."""
    g = torch.Generator().manual_seed(0)
    uv = 100 + 200 * torch.rand(2, 5, 17, 2, generator=g, dtype=torch.float64)
    depth = 3 + torch.rand(2, 5, 17, generator=g, dtype=torch.float64)
    det = simulate_detections(uv, depth, torch.tensor([[640.0, 480.0]] * 2), "medium", torch.Generator().manual_seed(1))
    assert float(det.keypoints.sum()) == pytest.approx(REFERENCE_MEDIUM_SUM, rel=1e-12)


REFERENCE_MEDIUM_SUM = 55400.10271934934  # main (before the calibration), same inputs and seeds


@needs_calibration
def test_blazepose_preset_reproduces_the_heldout_statistics_and_the_old_presets_do_not():
    report = json.loads(CALIBRATION_PATH.read_text())
    heldout = dict(np.load(HELDOUT_PATH))
    measured = report["heldout_part"]
    ok = calibrate.within_tolerance(calibrate.compare(measured, calibrate.simulated_statistics(heldout, "blazepose")))
    assert all(ok.values()), ok
    for old in ("low", "medium", "high"):
        ok = calibrate.within_tolerance(calibrate.compare(measured, calibrate.simulated_statistics(heldout, old)))
        assert not all(ok.values()), old


@needs_calibration
def test_blazepose_preset_is_the_committed_fit():
    preset = NoiseLevel.preset("blazepose")
    fitted = json.loads(CALIBRATION_PATH.read_text())["preset"]
    assert preset.joint_sigma == tuple(fitted["joint_sigma"])
    assert preset != NoiseLevel.preset("medium")
    assert dataclasses.replace(preset, joint_bias=None) != preset


def test_choose_excerpts_is_seeded_and_keeps_to_the_split():
    from lab.data import cmu, dataset

    try:
        clips = {c.clip_id: c for c in cmu.read_clips(cmu.cmu_root())}
    except (FileNotFoundError, SystemExit, OSError):
        pytest.skip("no CMU data")
    for split in ("train", "val"):
        picked = calibrate.choose_excerpts(split, 20, 8, seed=3)
        assert picked == calibrate.choose_excerpts(split, 20, 8, seed=3)
        assert all(dataset.split_of(clips[c].subject) == split for c, _ in picked)
    assert calibrate.choose_excerpts("train", 20, 8, seed=3) != calibrate.choose_excerpts("train", 20, 8, seed=4)


def test_blender_render_lines_up_with_the_projected_truth(tmp_path):
    """The Workbench worker (real bpy) draws the body where the chunk's truth projects it: with a white
    body on a black floor, the torso's keypoints fall on bright pixels and points half a person
    size beside the body do not."""
    import cv2

    from backend.body.body_model import BodyModel

    pytest.importorskip("bpy")
    bm = BodyModel.load(None, dtype=torch.float64)
    rng = np.random.default_rng(0)
    motion = dict(global_orient=np.zeros((1, 2, 3)), body_pose=0.05 * rng.standard_normal((1, 2, 69)),
                  transl=np.zeros((1, 2, 3)))
    job, _ = calibrate.make_chunk(bm, motion, np.random.default_rng(1), seed=0)
    motion["transl"][..., 1] = -job["vertices"][..., 2].min()  # feet on the floor (Blender's z = model's y)
    job, truth = calibrate.make_chunk(bm, motion, np.random.default_rng(1), seed=0)
    job.update(vertex_colors=np.ones_like(job["vertex_colors"]), floor_color=np.zeros_like(job["floor_color"]))
    calibrate.render_frames(job, tmp_path)
    torso = [KEYPOINT_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
    for f in range(2):
        rgba = cv2.imread(str(tmp_path / f"000_{f:03d}.png"), cv2.IMREAD_UNCHANGED).astype(float)
        assert rgba.shape[1::-1] == tuple(int(x) for x in truth["image_size"][0])
        bright = rgba[..., :3].mean(-1) * rgba[..., 3] / 255 > 100               # body, not floor or sky
        uv = truth["uv"][0, f]
        width = uv[:, 0].max() - uv[:, 0].min()
        for dx, expected in ((0.0, True), (-0.5, False), (0.5, False)):
            x = np.round(uv[torso, 0] + dx * width + np.sign(dx) * width).astype(int)
            y = np.round(uv[torso, 1]).astype(int)
            ok = (x >= 0) & (x < bright.shape[1])
            assert (bright[y[ok], x[ok]] == expected).all(), (f, dx)


def test_stats_command_fits_a_preset_that_passes_its_own_heldout_check(tmp_path):
    """`calibrate-detector stats` on chunks of a known simulated detector: the written preset is close to
    it and within tolerance on the held-out (odd) chunks."""
    truth = _standing_truth(excerpts=96, frames=8, seed=1)
    k = len(KEYPOINT_NAMES)
    level = NoiseLevel(temporal_rho=0.8, conf_logit0=4.0, conf_noise=1.0, dropout_rate=0.05, occlusion_run=4.0,
                       joint_sigma=(0.01,) * k, joint_bias=((0.0, 0.01),) * k,
                       always_missing=("left_small_toe", "right_small_toe"))
    det = simulate_detections(torch.as_tensor(truth["uv"]), torch.as_tensor(truth["depth"]),
                              torch.as_tensor(truth["image_size"]), level, torch.Generator().manual_seed(2))
    folder = tmp_path / "renders"
    folder.mkdir()
    for c in range(4):
        part = slice(24 * c, 24 * (c + 1))
        np.savez(folder / f"chunk_{c:04d}.npz", detected=det.keypoints.numpy()[part], seconds=np.ones(3),
                 **{key: truth[key][part] for key in ("uv", "depth", "image_size")})
    out = tmp_path / "calibration.json"
    assert calibrate.main(["stats", str(folder), "--json", str(out), "--heldout", str(tmp_path / "h.npz")]) == 0
    report = json.loads(out.read_text())
    assert all(report["heldout_within_tolerance"]["blazepose"].values()), report["heldout_discrepancy"]
    assert np.median(report["preset"]["joint_sigma"]) == pytest.approx(0.01, rel=0.15)
    assert report["preset"]["temporal_rho"] == pytest.approx(0.8, abs=0.1)
