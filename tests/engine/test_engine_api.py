"""The engine API with the committed weights: windowed video against whole-clip processing, and
device-agnostic code paths."""
import ast
import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engine.api import Engine, EngineOptions
from backend.engine.scorehmr import LoopOptions
from backend.io.shot import load_shot
from tests.contract.test_bad_inputs import KEYPOINTS, ROOT, needs_weights

ITERATIONS = 3  # fewer outer iterations than the paper's 10 keep this fast; windows are what is tested


@pytest.fixture(scope="module")
def engine():
    return Engine.load(device="cpu")


@pytest.mark.slow
@needs_weights
def test_windowed_video_matches_the_whole_clip(engine):
    obs = load_shot(None, KEYPOINTS, (0, 48)).obs
    loop = LoopOptions(iterations=ITERATIONS)
    whole = engine.run(obs, None, "video", EngineOptions(window=48, overlap=0, loop=loop))
    windowed = engine.run(obs, None, "video", EngineOptions(window=32, overlap=16, loop=loop))
    assert np.allclose(whole["init_joints"], windowed["init_joints"])
    change = np.linalg.norm(whole["joints"] - whole["init_joints"], axis=-1).mean()
    diff = np.linalg.norm(whole["joints"] - windowed["joints"], axis=-1)
    assert change > 0.02                                    # the refinement moved the joints (> 2 cm) ...
    assert diff.mean() < 0.01 and diff.mean() < 0.15 * change   # ... and windows barely change where to
    # no seam: the windowed motion is as smooth as the whole-clip one
    accel = lambda j: np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean()
    assert accel(windowed["joints"]) < 1.2 * accel(whole["joints"])


@pytest.mark.slow
@needs_weights
@pytest.mark.parametrize("mode", ["video", "frame"])
def test_sub_pixel_input_noise_moves_no_joint_by_a_millimetre(engine, mode):
    """Refined twice with inputs that differ by 5e-7 m in the initial translation and 1.4e-5 px in the
    focal length (float32 rounding of a saved file), every output joint agrees within 1 mm.  The old
    loop gave feet up to 52 mm apart on these 32 frames (video, 'ours' weights): its foot-contact
    weights, recomputed from the current estimate, made a switch that amplified any difference."""
    obs = load_shot(None, KEYPOINTS, (0, 32)).obs
    start = engine.run(obs, None, mode, EngineOptions(loop=LoopOptions(iterations=0)))
    init = dict(global_orient=start["global_orient"], body_pose=start["body_pose"], betas=start["betas"].mean(0),
                transl=start["transl"])
    nudged_obs = dict(obs, focal_length=np.asarray(obs["focal_length"], np.float64) + 1.4e-5)
    a = engine.run(obs, init, mode)
    b = engine.run(nudged_obs, dict(init, transl=init["transl"] + 5e-7), mode)
    assert np.abs(a["joints"] - a["init_joints"]).max() > 0.01     # the refinement did move the body ...
    assert np.linalg.norm(a["joints"] - b["joints"], axis=-1).max() < 1e-3   # ... the same way both times


MULTIVIEW = ROOT / "examples" / "multiview"


def _multiview_example(frames: int, views=(0, 1, 2, 3)):
    """The 4-view example (held-out motion) cut to some frames and views, with its true camera-frame joints."""
    from backend.contract.observations import load_observations

    obs = load_observations(MULTIVIEW / "obs.npz", "multiview")
    v = list(views)
    obs = dict(obs, keypoints=obs["keypoints"][v, :frames],
               **{k: obs[k][v] for k in ("focal_length", "principal_point", "image_size", "cam_R", "cam_t")})
    return obs, np.load(MULTIVIEW / "ground_truth.npz")["joints"][v, :frames].astype(np.float64)   # (V,F,24,3)


@pytest.mark.slow
@needs_weights
@pytest.mark.parametrize("views", [(0, 1), (0, 1, 2), (0, 1, 2, 3)])
def test_calibrated_views_are_no_worse_than_their_triangulate_and_fit_start(engine, views):
    """Issue 12, item 4: the calibrated result's view-0 body is at least as good as the triangulation + 3D fit
    it starts from (the same run with no loop iteration), on PA-MPJPE-14 and MPJPE-14.  Measured: 2 views
    32.2 / 38.0 against 39.4 / 45.0 mm, 4 views 24.4 / 27.9 against 25.4 / 28.2 mm."""
    from dataclasses import replace

    from backend.engine.options import MODE_LOOPS
    from backend.metrics import joint_errors

    obs, truth = _multiview_example(48, views)
    error = lambda out: joint_errors(out["joints"][0].astype(np.float64), truth[0])
    ours = error(engine.run(obs, None, "multiview"))
    fit = error(engine.run(obs, None, "multiview", EngineOptions(loop=replace(MODE_LOOPS["calibrated"], iterations=0))))
    assert ours["pa_mpjpe14"] <= fit["pa_mpjpe14"] and ours["mpjpe14"] <= fit["mpjpe14"], (ours, fit)


@pytest.mark.slow
@needs_weights
def test_calibrated_views_do_not_jump_with_sub_pixel_input_noise(engine):
    """The calibrated loop runs without the curvature bound (MODE_LOOPS): keypoints moved by 1e-4 px and
    focal lengths by 1.4e-5 px move no joint by a millimetre."""
    obs, _ = _multiview_example(12)
    nudged = dict(obs, keypoints=obs["keypoints"] + np.float32(1e-4) * np.array([1, 1, 0], np.float32),
                  focal_length=np.asarray(obs["focal_length"], np.float64) + 1.4e-5)
    a, b = engine.run(obs, None, "multiview"), engine.run(nudged, None, "multiview")
    assert np.abs(a["joints"] - a["init_joints"]).max() > 0.01
    assert np.linalg.norm(a["joints"] - b["joints"], axis=-1).max() < 1e-3


@pytest.mark.slow
@needs_weights
def test_a_calibrated_result_keeps_every_view_s_camera(engine, tmp_path):
    """Issue 20, item 24: OUT.npz of calibrated views of three lenses (view 2's focal length made longer and its
    principal point moved) gives each view's intrinsics back, so an importer can build every camera; view 0's
    stay the top-level image_size / focal_length / principal_point."""
    from backend.contract.results import read_results

    obs, _ = _multiview_example(4, (0, 1, 2))
    focal = np.asarray(obs["focal_length"], np.float32).copy()
    principal = np.asarray(obs["principal_point"], np.float32).copy()
    focal[2], principal[2] = 1.5 * focal[2], principal[2] + [40.0, -25.0]
    obs = dict(obs, focal_length=focal, principal_point=principal)
    one_pass = EngineOptions(loop=LoopOptions(iterations=1))
    out = read_results(engine.run(obs, None, "multiview", one_pass).write(tmp_path / "OUT.npz"))
    np.testing.assert_array_equal(out["view_focal_length"], focal)
    np.testing.assert_array_equal(out["view_principal_point"], principal)
    np.testing.assert_array_equal(out["view_image_size"], obs["image_size"])
    assert out["focal_length"] == focal[0] and np.array_equal(out["principal_point"], principal[0])
    assert np.array_equal(out["image_size"], obs["image_size"][0])


@contextlib.contextmanager
def counted_prior(engine):
    """The engine's learned per-frame prior wrapped to record the batch size of each call: yields the list."""
    calls, prior = [], engine.prior

    def counting(x, t, c):
        calls.append(len(x))
        return prior(x, t, c)

    engine.prior = counting
    try:
        yield calls
    finally:
        engine.prior = prior


@pytest.mark.slow
@needs_weights
def test_uncalibrated_views_ours_runs_without_the_prior_and_paper_with_it(engine):
    """Uncalibrated views, variant 'ours' (MULTIVIEW_WITHOUT_PRIOR, chosen by the ablation): the prior is never
    called, and the result still improves on the per-view start (example, 4 views, 24 frames); the variant
    'paper' does call it."""
    obs, truth = _multiview_example(24)
    obs = {k: v for k, v in obs.items() if k not in ("cam_R", "cam_t")}
    with counted_prior(engine) as calls:
        ours = engine.run(obs, None, "multiview")
        assert calls == []
        engine.run(obs, None, "multiview", EngineOptions(variant="paper"))
        assert len(calls) > 0
    from backend.metrics import joint_errors
    err = lambda j: joint_errors(j.reshape(-1, 24, 3).astype(np.float64), truth.reshape(-1, 24, 3))["mpjpe14"]
    assert err(ours["joints"]) < 0.9 * err(ours["init_joints"])


def test_video_ours_runs_the_gmm_prior_and_the_learned_prior_on_request():
    """Video, variant 'ours': the per-frame loop runs with the GMM pose prior (chosen on the tuning subjects,
    docs/ablation_paths.md#video-default); video_prior='learned', the paper variant and the motion prior run
    the learned one; the gaps' motion prior is learned either way."""
    from backend.engine.options import VIDEO_GMM_WEIGHT, VIDEO_LOOP

    ours = EngineOptions().for_mode("video")
    assert (ours.prior, ours.gmm_weight, ours.loop) == (False, VIDEO_GMM_WEIGHT, VIDEO_LOOP)
    assert VIDEO_GMM_WEIGHT > 0
    assert ours.gaps is None or ours.gaps.prior
    for options in (EngineOptions(video_prior="learned"), EngineOptions(variant="paper"),
                    EngineOptions(motion_prior="backend/assets/motion_prior.pt")):
        mode = options.for_mode("video")
        assert mode.prior and mode.gmm_weight == 0.0
    assert EngineOptions().for_mode("frame").prior and EngineOptions().for_mode("calibrated").prior
    with pytest.raises(ValueError, match="video_prior"):
        EngineOptions(video_prior="vposer")


@pytest.mark.slow
@needs_weights
def test_default_video_never_calls_the_learned_prior(engine):
    """The default video path (windows, gaps, final fit) on 24 frames of the example shot: the learned per-frame
    prior is not called; with video_prior='learned' it is."""
    obs = load_shot(None, KEYPOINTS, (0, 24)).obs
    with counted_prior(engine) as calls:
        engine.run(obs, None, "video", EngineOptions(loop=LoopOptions(iterations=1)))
        assert calls == []
        engine.run(obs, None, "video", EngineOptions(loop=LoopOptions(iterations=1), video_prior="learned"))
        assert len(calls) > 0


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.slow
@needs_weights
@pytest.mark.parametrize("device", DEVICES)
def test_every_device_gives_the_cpu_result(engine, device):
    """Skips nothing on a CPU-only machine: 'cpu' runs a second engine and must repeat the result."""
    obs = load_shot(None, KEYPOINTS, (0, 16)).obs
    opts = EngineOptions(loop=LoopOptions(iterations=2))
    ref = engine.run(obs, None, "video", opts)
    other = Engine.load(device=device).run(obs, None, "video", opts)
    assert other["info"] and device in str(other["info"])
    np.testing.assert_allclose(other["joints"], ref["joints"], atol=1e-3)


# Tensor factories that place a new tensor on the default (CPU) device unless told otherwise.
FACTORIES = {"tensor", "zeros", "ones", "full", "arange", "eye", "randn", "rand", "empty", "linspace",
             "zeros_like", "ones_like", "full_like", "randn_like", "empty_like"}
LIKE = {"zeros_like", "ones_like", "full_like", "randn_like", "empty_like"}


def _factory_calls_without_device(path: Path) -> list[str]:
    """torch factory calls with no device=, outside __init__ (modules are built on the CPU and moved
    with .to()) and outside lines marked '# (cpu)' (made once, moved by their user)."""
    text = path.read_text()
    lines = text.splitlines()
    construction = set()
    for fn in ast.walk(ast.parse(text)):
        if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
            construction |= set(range(fn.lineno, fn.end_lineno + 1))
    bad = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and (node.lineno in construction or "# (cpu)" in lines[node.lineno - 1]):
            continue
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr not in LIKE and not any(k.arg == "device" for k in node.keywords)):
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno} torch.{node.func.attr}")
    return bad


def test_engine_code_creates_tensors_on_the_data_device():
    """The refinement path runs where its inputs are: new tensors name their device (a CUDA run would
    otherwise mix devices)."""
    files = [ROOT / "backend" / "engine" / n for n in ("api.py", "loaded.py", "output.py", "scorehmr.py", "problems.py",
                                                       "guidance.py", "views.py", "windows.py", "polish.py")]
    files += sorted((ROOT / "backend" / "engine" / "modes").glob("*.py"))
    files += [ROOT / "backend" / "models" / n for n in ("diffusion.py", "denoiser.py", "regressor.py")]
    files += [ROOT / "backend" / "body" / "body_model.py"]
    bad = [b for f in files for b in _factory_calls_without_device(f)]
    assert not bad, "tensor created without device=: " + ", ".join(bad)
