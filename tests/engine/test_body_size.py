"""The body's size: a known height makes the rest body that tall and moves it in depth; one shape per clip."""
import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel
from backend.engine import body_size
from backend.engine.api import Engine, EngineOptions
from backend.engine.guidance import project
from backend.engine.scorehmr import LoopOptions
from backend.io.shot import load_shot
from backend.rotations import axis_angle_to_matrix
from tests.contract.test_bad_inputs import KEYPOINTS, needs_weights


@pytest.fixture(scope="module")
def body():
    return BodyModel.load(None)


def _mesh_height(vertices: np.ndarray) -> float:
    """(V,3) rest vertices, Y up -> height in metres."""
    return float(np.ptp(vertices[:, 1]))


@pytest.mark.parametrize("height", [1.50, 1.78, 1.95])
def test_betas_with_height_make_the_rest_body_that_tall(body, height):
    betas = torch.tensor([0.8, -1.2, 0.5, 0.0, 0.3, -0.4, 0.0, 0.2, 0.0, -0.1])
    tall = body_size.betas_with_height(body, betas, height)
    assert abs(float(body_size.rest_height(body, tall[None])[0]) - height) < 1e-3
    # the smallest change for it: only along the height's gradient, the other proportions kept
    change = tall - betas
    assert change.abs().argmax() == 0 and change[1:].abs().max() < 0.2 * change[0].abs()


def test_with_height_moves_the_start_so_its_keypoints_project_where_they_did(body):
    """A start 1.2x taller is placed 1.2x farther: its keypoints move by under 1% of the body's size on average
    (3% at most: a taller body of the shape space is not exactly a scaled one)."""
    g = torch.Generator().manual_seed(0)
    n = 4
    rotmats = axis_angle_to_matrix(0.4 * torch.randn(n, 24, 3, generator=g))
    start = dict(rotmats=rotmats, betas=torch.zeros(n, 10), transl=torch.tensor([[0.1, 0.2, 4.0]]).expand(n, 3))
    before = float(body_size.rest_height(body, start["betas"][:1])[0])
    moved = body_size.with_height(body, start, 1.2 * before)
    assert torch.equal(moved["rotmats"], rotmats) and (moved["betas"] == moved["betas"][0]).all()
    focal, centre = torch.full((n,), 1000.0), torch.full((n, 2), 500.0)
    uv = lambda s: project(body.joints_fast(s["rotmats"], s["betas"], s["transl"]).keypoints[:, :17], focal, centre)
    pelvis = lambda s: body.joints_fast(s["rotmats"], s["betas"], s["transl"]).joints[:, 0]
    assert torch.allclose(pelvis(moved) / pelvis(start), torch.tensor(1.2), rtol=0.01)
    size_px = 1000.0 * before / 4.0
    moves = (uv(moved) - uv(start)).norm(dim=-1)
    assert moves.mean() < 0.01 * size_px and moves.max() < 0.03 * size_px


@pytest.fixture(scope="module")
def engine():
    return Engine.load(device="cpu")


@pytest.mark.slow
@needs_weights
def test_a_known_height_makes_the_refined_body_that_tall_and_moves_its_depth(engine):
    obs = load_shot(None, KEYPOINTS, (0, 24)).obs
    opts = dict(loop=LoopOptions(iterations=2))
    short, tall = (engine.run(obs, None, "video", EngineOptions(height=h, **opts)) for h in (1.60, 1.90))
    for result, height in ((short, 1.60), (tall, 1.90)):
        assert abs(_mesh_height(result["rest_vertices"]) - height) < 0.01
        assert (result["betas"] == result["betas"][0]).all()           # one shape for the clip
    depth = lambda r: r["joints"][:, 0, 2].mean()
    assert abs(depth(tall) / depth(short) - 1.90 / 1.60) < 0.03       # the taller body stands farther away
    # both still fit the keypoints
    assert np.nanmean(tall["reprojection_error_px"]) < 1.2 * np.nanmean(short["reprojection_error_px"]) + 1.0


@pytest.mark.slow
@needs_weights
def test_video_refines_one_shape_for_the_whole_clip(engine):
    obs = load_shot(None, KEYPOINTS, (0, 24)).obs
    result = engine.run(obs, None, "video", EngineOptions(loop=LoopOptions(iterations=1), window=16, overlap=8))
    assert result["betas"].shape == (24, 10) and (result["betas"] == result["betas"][0]).all()
    start = engine.initial(*(engine.as_tensor(x) for x in (obs["keypoints"][0], np.repeat(obs["focal_length"], 24),
                                                     np.repeat(obs["principal_point"], 24, 0))))
    assert np.allclose(result["betas"][0], start["betas"].mean(0).numpy(), atol=1e-5)   # the frames' shapes averaged


@pytest.mark.slow
@needs_weights
@pytest.mark.parametrize("mode", ["frame", "multiview"])
def test_a_known_height_holds_for_single_frames_and_calibrated_views(engine, mode):
    from tests.engine.test_engine_api import _multiview_example

    obs = _multiview_example(4, (0, 1))[0] if mode == "multiview" else load_shot(None, KEYPOINTS, (0, 4)).obs
    result = engine.run(obs, None, mode, EngineOptions(height=1.85, loop=LoopOptions(iterations=1)))
    assert abs(_mesh_height(result["rest_vertices"]) - 1.85) < 0.01
    betas = result["betas"].reshape(-1, 10)
    assert (betas == betas[0]).all()


@pytest.mark.slow
@needs_weights
def test_refine_cli_takes_a_known_height_and_records_it(tmp_path):
    from backend import cli
    from backend.contract.results import read_results
    from tests.contract.test_bad_inputs import FOOTAGE

    out = tmp_path / "OUT.npz"
    assert cli.main(["refine", "--footage", str(FOOTAGE), "--keypoints", str(KEYPOINTS), "--frames", "0:8",
                     "--iterations", "1", "--device", "cpu", "--height", "1.9", "--out", str(out)]) == 0
    result = read_results(out)
    assert abs(_mesh_height(result["rest_vertices"]) - 1.9) < 0.01
    assert result["info"]["options"]["height"] == 1.9


def test_a_height_in_centimetres_is_refused_with_the_fix(body):
    from backend.contract.errors import InputError

    start = dict(rotmats=torch.eye(3).expand(2, 24, 3, 3), betas=torch.zeros(2, 10), transl=torch.zeros(2, 3))
    with pytest.raises(InputError, match="height 178.0 m: expected the person's height in metres"):
        body_size.with_height(body, start, 178.0)
