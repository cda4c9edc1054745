"""The engine API with the committed weights: windowed video against whole-clip processing, and
device-agnostic code paths."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engine.api import Engine, EngineOptions
from backend.engine.scorehmr import LoopOptions
from backend.io.shot import load_shot
from tests.test_bad_inputs import KEYPOINTS, ROOT, needs_weights

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
    files = [ROOT / "backend" / "engine" / n for n in ("api.py", "scorehmr.py", "modes.py", "guidance.py", "views.py")]
    files += [ROOT / "backend" / "models" / n for n in ("diffusion.py", "denoiser.py", "regressor.py")]
    files += [ROOT / "backend" / "body" / "body_model.py"]
    bad = [b for f in files for b in _factory_calls_without_device(f)]
    assert not bad, "tensor created without device=: " + ", ".join(bad)
