"""Bad input never loses anything: every entry point (the refine CLI, the engine API, shot pairing,
build.py's batch mode) answers with one line naming the problem and the fix, and leaves no partial
file behind.  Subprocess tests are marked slow (they start Python, torch or Blender)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel
from backend.body.smpl_files import SMPLFileError
from backend.engine.api import Engine, EngineOptions
from backend.engine.scorehmr import LoopOptions
from backend.contract.errors import InputError
from backend.contract.observations import validate_observations
from backend.contract.results import read_results, write_results
from backend.contract.frames import FrameRange, parse_frames
from backend.io.shot import load_shot
from backend.models.denoiser import Denoiser
from backend.models.regressor import KeypointRegressor
from tests.support.smpl_standin import _small_pkl

ROOT = Path(__file__).resolve().parents[2]
SHOT = ROOT / "examples" / "shot"
FOOTAGE, KEYPOINTS = SHOT / "shot.mp4", SHOT / "keypoints.npz"
SHOT_FRAMES = 96
WEIGHTS = [ROOT / "backend" / "assets" / n for n in ("regressor.pt", "prior.pt")]
needs_weights = pytest.mark.skipif(not all(p.is_file() for p in WEIGHTS),
                                   reason="trained weights (backend/assets/regressor.pt, prior.pt) not there yet")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# -- helpers -------------------------------------------------------------------------------------------
def example_keypoints() -> dict:
    with np.load(KEYPOINTS) as z:
        return {k: z[k] for k in z.files}


def obs_file(path: Path, **change) -> Path:
    """An OBS.npz of the first 12 example frames, with fields changed (None removes one)."""
    data = example_keypoints()
    data["keypoints"] = data["keypoints"][:12]
    data.update(change)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def one_line(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


def listing(folder: Path) -> dict:
    """name -> bytes of every file under ``folder`` (hidden temp files included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tiny_engine() -> Engine:
    """The real body model and loop with small untrained networks: input handling, not accuracy."""
    torch.manual_seed(0)
    return Engine(BodyModel.load(), KeypointRegressor(width=32, blocks=1, feature_dim=8),
                  Denoiser(8, hidden=32, blocks=1), torch.zeros(8), torch.ones(8), "cpu")


def smplx_like(folder: Path) -> Path:
    def mutate(d):
        d["hands_componentsl"] = np.zeros((45, 45))
        d["hands_componentsr"] = np.zeros((45, 45))

    return _small_pkl(folder, name="SMPLX_NEUTRAL.pkl", nv=80, nf=60, nj=55, mutate=mutate)[0]


def mano_like(folder: Path) -> Path:
    def mutate(d):
        d["hands_components"] = np.zeros((45, 45))
        d["hands_mean"] = np.zeros(45)

    return _small_pkl(folder, name="MANO_RIGHT.pkl", nv=778, nf=1538, nj=16, mutate=mutate)[0]


def truncated_pkl(folder: Path) -> Path:
    path, _ = _small_pkl(folder, name="full.pkl", nv=60, nf=50)
    cut = folder / "SMPL_NEUTRAL.pkl"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    path.unlink()
    return cut


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def openpose_folder(folder: Path, frames: int, people=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        doc = {"version": 1.3, "people": [{"pose_keypoints_2d": list(p)} for p in people]}
        (folder / f"shot_{i:012d}_keypoints.json").write_text(json.dumps(doc))
    return folder


# -- the refine CLI ------------------------------------------------------------------------------------
def refine_cli(*args, cwd: Path):
    return subprocess.run([sys.executable, "-m", "backend", "refine", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)


CLI_CASES = {
    "missing observations": (lambda d: d / "nowhere.npz", "nowhere.npz: file not found"),
    "not an npz": (lambda d: write(d / "obs.npz", b"not a zip"),
                   "obs.npz: holds text, not numpy arrays: expected a numpy .npz file"),
    "wrong keypoint shape": (lambda d: obs_file(d / "obs.npz", keypoints=np.zeros((12, 18, 3))),
                             r"shape \(12, 18, 3\), expected \(F, 17, 3\)"),
    "no frames": (lambda d: obs_file(d / "obs.npz", keypoints=np.zeros((0, 17, 3))), "has no frames"),
    "all-zero confidences": (lambda d: obs_file(d / "obs.npz", keypoints=example_keypoints()["keypoints"][:12]
                                                * np.array([1.0, 1.0, 0.0])), "every keypoint has confidence 0"),
    "no image size": (lambda d: obs_file(d / "obs.npz", image_size=None), "missing field 'image_size'"),
    "zero fps": (lambda d: obs_file(d / "obs.npz", fps=np.float32(0)), "'fps' must be positive"),
    "views in video mode": (lambda d: obs_file(d / "obs.npz", keypoints=np.zeros((2, 12, 17, 3))),
                            "several views need --mode multiview"),
}


SHOT_CASES = {
    "both inputs": (lambda d: ["--observations", obs_file(d / "obs.npz"), "--keypoints", KEYPOINTS],
                    "either --observations OBS.npz or --keypoints"),
    "no input": (lambda d: [], "nothing to refine: give --observations"),
    "shot flags with OBS": (lambda d: ["--observations", obs_file(d / "obs.npz"), "--frames", "0:5"],
                            "--frames go with --keypoints"),
    "frame-count mismatch": (lambda d: ["--footage", FOOTAGE, "--keypoints", save_keypoints(
        d / "kp90.npz", keypoints=example_keypoints()["keypoints"][:90])],
                             "refine the frames both cover: --frames 0:90 or --frames overlap"),
    "range outside": (lambda d: ["--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--frames", "90:120"],
                      "outside the frames with both footage and keypoints"),
    "multiview shot": (lambda d: ["--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--mode", "multiview"],
                       "--mode multiview takes --observations"),
    "fps disagrees": (lambda d: ["--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--fps", "30"],
                      "--fps says 30 fps but shot.mp4 plays at 24 fps"),
}


# Every refused command line: the OBS cases above as --observations, then the shot cases.
REFUSED = {**{k: (lambda d, m=make: ["--observations", m(d)], message) for k, (make, message) in CLI_CASES.items()},
           **SHOT_CASES}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED))
def test_refine_cli_refuses_bad_input_in_one_line(tmp_path, case):
    make, message = REFUSED[case]
    args = make(tmp_path)
    before = listing(tmp_path)
    proc = refine_cli(*args, "--out", tmp_path / "out" / "OUT.npz", cwd=tmp_path)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert line.startswith("error: ") and re.search(message, line), line
    assert listing(tmp_path) == before  # the out folder may be created, but holds nothing


@pytest.mark.slow
def test_refine_cli_never_overwrites_a_preview_without_force(tmp_path):
    preview = tmp_path / "p.mp4"
    preview.write_bytes(b"an earlier preview")
    proc = refine_cli("--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--preview", preview,
                      "--out", tmp_path / "OUT.npz", cwd=tmp_path)
    assert proc.returncode == 2 and "p.mp4: exists; pass --force" in one_line(proc.stderr)
    assert preview.read_bytes() == b"an earlier preview" and not (tmp_path / "OUT.npz").exists()


@pytest.mark.slow
def test_refine_cli_never_overwrites_without_force(tmp_path):
    obs = obs_file(tmp_path / "obs.npz")
    out = tmp_path / "OUT.npz"
    out.write_bytes(b"an earlier result")
    proc = refine_cli("--observations", obs, "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and "exists; pass --force" in one_line(proc.stderr)
    assert out.read_bytes() == b"an earlier result"


@pytest.mark.slow
def test_refine_cli_refuses_an_output_under_a_regular_file(tmp_path):
    obs = obs_file(tmp_path / "obs.npz")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    before = listing(tmp_path)
    proc = refine_cli("--observations", obs, "--out", tmp_path / "blocker" / "OUT.npz", cwd=tmp_path)
    assert proc.returncode == 2
    assert "blocker: is a file, not a folder" in one_line(proc.stderr)
    assert listing(tmp_path) == before


@pytest.mark.slow
def test_refine_cli_explains_an_init_with_other_frames(tmp_path):
    obs = obs_file(tmp_path / "obs.npz")
    init = tmp_path / "init.npz"
    np.savez(init, global_orient=np.zeros((10, 3)), body_pose=np.zeros((10, 69)), betas=np.zeros(10),
             transl=np.tile([0.0, 0.0, 4.0], (10, 1)))
    proc = refine_cli("--observations", obs, "--init", init, "--out", tmp_path / "OUT.npz", cwd=tmp_path)
    assert proc.returncode == 2
    assert "init.npz: has 10 frames but the observations have 12" in one_line(proc.stderr)
    assert not (tmp_path / "OUT.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("make", [smplx_like, mano_like, truncated_pkl, lambda d: d / "SMPL_NEUTRAL.pkl"],
                         ids=["smplx", "mano", "truncated", "missing"])
def test_refine_cli_names_a_wrong_smpl_file(tmp_path, make):
    obs = obs_file(tmp_path / "obs.npz")
    smpl = make(tmp_path)
    proc = refine_cli("--observations", obs, "--smpl", smpl, "--out", tmp_path / "OUT.npz", cwd=tmp_path)
    assert proc.returncode == 2 and smpl.name in one_line(proc.stderr)
    assert not (tmp_path / "OUT.npz").exists()


@pytest.mark.slow
@needs_weights
def test_refine_cli_treats_nan_keypoints_as_missing(tmp_path):
    kp = example_keypoints()["keypoints"][:12].copy()
    kp[3, :5] = np.nan
    kp[4, 7] = np.inf
    kp[5] = np.nan  # a whole frame without a usable point
    obs = obs_file(tmp_path / "obs.npz", keypoints=kp)
    proc = refine_cli("--observations", obs, "--out", tmp_path / "OUT.npz", "--iterations", "1", "--device", "cpu",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = read_results(tmp_path / "OUT.npz")
    assert np.isfinite(out["joints"]).all()
    assert np.isnan(out["reprojection_error_px"][5]) and np.isfinite(np.delete(out["reprojection_error_px"], 5)).all()


# -- the engine API ------------------------------------------------------------------------------------
def test_engine_treats_nan_and_inf_keypoints_as_missing_points(tmp_path):
    data = example_keypoints()
    kp = data["keypoints"][:16].astype(np.float64)
    kp[2, :4] = np.nan
    kp[3, 9, 0] = np.inf
    kp[6] = np.nan
    obs = validate_observations(dict(data, keypoints=kp), "video")
    assert obs["missing_points"] == 4 + 1 + 17
    assert (obs["keypoints"][0, 6] == 0).all() and (obs["keypoints"][0, 2, :4] == 0).all()
    result = tiny_engine().run(obs, None, "video", EngineOptions(loop=LoopOptions(iterations=1)))
    assert np.isfinite(result["joints"]).all() and np.isfinite(result["global_orient"]).all()
    err = result["reprojection_error_px"]
    assert np.isnan(err[6]) and np.isfinite(np.delete(err, 6)).all()
    write_results(tmp_path / "OUT.npz", result)
    assert read_results(tmp_path / "OUT.npz")["joints"].shape == (16, 24, 3)


@pytest.mark.parametrize("change, message", [
    (dict(keypoints=np.zeros((5, 17, 2))), r"shape \(5, 17, 2\), expected \(F, 17, 3\)"),
    (dict(keypoints=np.zeros((0, 17, 3))), "has no frames"),
    (dict(keypoints=np.zeros((5, 17, 3))), "every keypoint has confidence 0"),
    (dict(image_size=np.array([640.0, -1.0])), "'image_size' must be positive"),
    (dict(focal_length=np.float64(np.nan)), "'focal_length' must be positive"),
])
def test_engine_api_validation_names_the_field_and_the_fix(change, message):
    data = dict(example_keypoints(), **change)
    with pytest.raises(InputError, match=message) as info:
        validate_observations(data, "video", path="OBS.npz")
    assert "\n" not in str(info.value) and str(info.value).startswith("OBS.npz: ")


@pytest.mark.parametrize("make, words", [(smplx_like, ("SMPL-X", "SMPLX_NEUTRAL.pkl")),
                                         (mano_like, ("MANO", "MANO_RIGHT.pkl")),
                                         (truncated_pkl, ("truncated", "SMPL_NEUTRAL.pkl"))],
                         ids=["smplx", "mano", "truncated"])
def test_a_wrong_smpl_file_is_named_by_the_body_model_loader(tmp_path, make, words):
    # Engine.load(smpl_path) loads the body model with BodyModel.load(smpl_path).
    path = make(tmp_path)
    with pytest.raises(SMPLFileError) as info:
        BodyModel.load(path)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


@needs_weights
def test_engine_load_names_a_wrong_smpl_file(tmp_path):
    path = smplx_like(tmp_path)
    with pytest.raises(SMPLFileError, match="SMPLX_NEUTRAL.pkl"):
        Engine.load(path, device="cpu")


def test_results_are_never_overwritten_or_half_written(tmp_path):
    result = tiny_engine().run(validate_observations(dict(example_keypoints(), keypoints=example_keypoints()
                                                          ["keypoints"][:8]), "video"),
                               None, "video", EngineOptions(loop=LoopOptions(iterations=1)))
    out = tmp_path / "OUT.npz"
    out.write_bytes(b"earlier")
    with pytest.raises(InputError, match="already exists; pass --force"):
        write_results(out, result)
    assert out.read_bytes() == b"earlier"
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        write_results(tmp_path / "blocker" / "OUT.npz", result)
    bad = dict(result, joints=np.full_like(result["joints"], np.nan))
    with pytest.raises(InputError, match="NaN/inf"):
        write_results(tmp_path / "new.npz", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT.npz", "blocker"]


# -- shot pairing (footage + keypoints) ------------------------------------------------------------------
def save_keypoints(path: Path, **change) -> Path:
    data = dict(example_keypoints(), **change)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def test_the_example_shot_pairs_cleanly():
    shot = load_shot(FOOTAGE, KEYPOINTS)
    assert (shot.start, shot.stop, shot.frames) == (0, SHOT_FRAMES, SHOT_FRAMES)
    assert shot.obs["keypoints"].shape == (1, SHOT_FRAMES, 17, 3)
    assert shot.obs["fps"] == 24.0 and shot.obs["focal_source"] == "given"
    assert np.allclose(shot.obs["image_size"], [[640, 360]])


def test_a_frame_count_mismatch_is_explained_and_the_overlap_offered(tmp_path):
    kp = save_keypoints(tmp_path / "kp90.npz", keypoints=example_keypoints()["keypoints"][:90])
    with pytest.raises(InputError) as info:
        load_shot(FOOTAGE, kp)
    msg = str(info.value)
    # One convention in the message and in --frames: footage frames from 0, START:STOP with STOP excluded.
    assert "shot.mp4 has 96 frames (0:96) but the keypoints cover 90 (footage frames 0:90)" in msg
    assert "--frames 0:90" in msg and "\n" not in msg
    overlap = load_shot(FOOTAGE, kp, frames="overlap")
    assert (overlap.start, overlap.stop) == (0, 90)
    part = load_shot(FOOTAGE, kp, frames=parse_frames("10:50"))
    assert np.allclose(part.obs["keypoints"][0], example_keypoints()["keypoints"][10:50])


def test_openpose_numbering_places_keypoints_in_the_footage(tmp_path):
    person = example_keypoints()["keypoints"][0]
    body25 = np.zeros((25, 3))
    body25[[0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11]] = person
    folder = tmp_path / "json"
    for i in range(5, 15):  # footage frames 5-14
        doc = {"people": [{"pose_keypoints_2d": body25.ravel().tolist()}]}
        (folder / f"shot_{i:012d}_keypoints.json").parent.mkdir(exist_ok=True)
        (folder / f"shot_{i:012d}_keypoints.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"cover 10 \(footage frames 5:15\).*--frames 5:15"):
        load_shot(FOOTAGE, folder)
    shot = load_shot(FOOTAGE, folder, frames=(6, 9))
    assert (shot.start, shot.frames) == (6, 3)
    assert np.allclose(shot.obs["keypoints"][0, :, :, :2], person[:, :2], atol=1e-4)


@pytest.mark.parametrize("frames, message", [((10, 10), "frame range 10:10 is empty"),
                                             ((50, 20), "frame range 50:20 is empty"),
                                             ((90, 120),
                                              r"outside the frames with both footage and keypoints \(0:96\)")])
def test_bad_frame_ranges_are_refused(frames, message):
    with pytest.raises(InputError, match=message):
        load_shot(FOOTAGE, KEYPOINTS, frames=frames)


def test_parse_frames():
    assert (parse_frames("3:40") == FrameRange(3, 40) and parse_frames("overlap") == "overlap"
            and parse_frames(None) is None)
    with pytest.raises(InputError, match="not START:STOP"):
        parse_frames("3-40")


def test_an_fps_mismatch_is_refused(tmp_path):
    kp = save_keypoints(tmp_path / "kp.npz", fps=np.float32(30))
    with pytest.raises(InputError, match="the keypoint file says 30 fps but shot.mp4 plays at 24 fps"):
        load_shot(FOOTAGE, kp)
    with pytest.raises(InputError, match="fps says 25 fps but shot.mp4 plays at 24 fps.*leave the rate out"):
        load_shot(FOOTAGE, KEYPOINTS, fps=25.0)
    assert load_shot(FOOTAGE, save_keypoints(tmp_path / "ntsc.npz", fps=np.float32(24.0001))).frames == SHOT_FRAMES


def test_keypoints_from_another_resolution_are_refused(tmp_path):
    with pytest.raises(InputError, match="image is 1920x1080 but shot.mp4 is 640x360"):
        load_shot(FOOTAGE, save_keypoints(tmp_path / "a.npz", image_size=np.array([1920.0, 1080.0])))
    scaled = example_keypoints()["keypoints"] * np.array([3.0, 3.0, 1.0])
    with pytest.raises(InputError, match="lie outside the 640x360 frame"):
        load_shot(FOOTAGE, save_keypoints(tmp_path / "b.npz", keypoints=scaled, image_size=None))


def test_openpose_json_with_no_people_is_refused(tmp_path):
    folder = openpose_folder(tmp_path / "json", SHOT_FRAMES)
    with pytest.raises(InputError, match="holds no detected person in any frame"):
        load_shot(FOOTAGE, folder)


def test_nan_keypoints_in_a_shot_are_missing_points_with_a_note(tmp_path):
    kp = example_keypoints()["keypoints"].copy()
    kp[4, 2] = np.nan
    kp[9, :, 1] = np.inf
    shot = load_shot(FOOTAGE, save_keypoints(tmp_path / "kp.npz", keypoints=kp))
    assert (shot.obs["keypoints"][0, 4, 2] == 0).all() and (shot.obs["keypoints"][0, 9] == 0).all()
    assert any("18 keypoints had NaN/inf" in n for n in shot.notes)


@pytest.mark.parametrize("make, message", [
    (lambda d: (write(d / "empty.mp4", b""), KEYPOINTS), "video file is empty"),
    (lambda d: (d / "missing.mp4", KEYPOINTS), "missing.mp4: video file not found"),
    (lambda d: (FOOTAGE, d / "missing.npz"), "missing.npz: keypoint file or folder not found"),
    (lambda d: (FOOTAGE, save_keypoints(d / "k.npz", keypoints=np.zeros((96, 18, 3)))),
     r"shape \(96, 18, 3\), expected"),
    (lambda d: (FOOTAGE, save_keypoints(d / "k.npz", keypoints=example_keypoints()["keypoints"]
                                        * np.array([1.0, 1.0, 0.0]))), "no detected person"),
    (lambda d: (None, save_keypoints(d / "k.npz", image_size=None)), "no footage and the keypoint file has no"),
])
def test_shot_inputs_name_the_file_and_the_fix(tmp_path, make, message):
    footage, keypoints = make(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        load_shot(footage, keypoints)
    assert "\n" not in str(info.value)


def test_a_keypoints_only_shot_takes_the_camera_from_the_file():
    shot = load_shot(None, KEYPOINTS)
    assert shot.footage is None and shot.frames == SHOT_FRAMES and shot.obs["fps"] == 24.0


# -- build.py batch mode ---------------------------------------------------------------------------------
def build_py(*args, cwd: Path):
    return subprocess.run([sys.executable, str(ROOT / "build.py"), "--", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)


def failed_line(proc) -> str:
    """build.py's one FAILED line for a single shot (stderr), with the summary on stdout."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return one_line(proc.stderr)


@pytest.mark.slow
def test_build_py_missing_footage(tmp_path):
    proc = build_py("--footage", tmp_path / "missing.mp4", "--keypoints", KEYPOINTS, "--out", tmp_path / "a.blend",
                    cwd=tmp_path)
    assert "--footage" in failed_line(proc) and "missing.mp4: not found" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_build_py_empty_video(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    proc = build_py("--footage", tmp_path / "empty.mp4", "--keypoints", KEYPOINTS, "--out", tmp_path / "a.blend",
                    cwd=tmp_path)
    assert "cannot read empty.mp4 as a video" in failed_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4"]


@pytest.mark.slow
def test_build_py_frame_count_mismatch(tmp_path):
    kp = save_keypoints(tmp_path / "kp90.npz", keypoints=example_keypoints()["keypoints"][:90])
    proc = build_py("--footage", FOOTAGE, "--keypoints", kp, "--out", tmp_path / "a.blend", cwd=tmp_path)
    line = failed_line(proc)
    assert "shot has 96 frames (0:96) but the keypoints cover 90 (footage frames 0:90)" in line
    assert "--frames 0:90 or --frames overlap" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kp90.npz"]


@pytest.mark.slow
@needs_weights
def test_build_py_refines_the_overlap_when_asked(tmp_path):
    kp = save_keypoints(tmp_path / "kp90.npz", keypoints=example_keypoints()["keypoints"][:90])
    proc = build_py("--footage", FOOTAGE, "--keypoints", kp, "--out", tmp_path / "a.blend", "--frames", "overlap",
                    "--mode", "frame", "--iterations", "1", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "90 frames" in proc.stdout and (tmp_path / "a.blend").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("frames", ["5", "7:3", "-1:4", "a:b"])
def test_build_py_refuses_a_bad_frame_range(tmp_path, frames):
    proc = build_py("--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--out", tmp_path / "a.blend", "--frames", frames,
                    cwd=tmp_path)
    assert proc.returncode == 2 and "--frames" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_build_py_openpose_json_with_no_people(tmp_path):
    folder = openpose_folder(tmp_path / "json", SHOT_FRAMES)
    proc = build_py("--footage", FOOTAGE, "--keypoints", folder, "--out", tmp_path / "a.blend", cwd=tmp_path)
    assert "holds no detected person in any frame" in failed_line(proc)
    assert not (tmp_path / "a.blend").exists()


@pytest.mark.slow
def test_build_py_never_overwrites_without_force(tmp_path):
    blend = tmp_path / "a.blend"
    blend.write_bytes(b"someone's scene")
    proc = build_py("--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--out", blend, cwd=tmp_path)
    assert "output exists" in failed_line(proc) and "--force" in proc.stderr
    assert blend.read_bytes() == b"someone's scene"


@pytest.mark.slow
@needs_weights
@pytest.mark.parametrize("make", [smplx_like, truncated_pkl], ids=["smplx", "truncated"])
def test_build_py_names_a_wrong_smpl_file(tmp_path, make):
    smpl = make(tmp_path)
    proc = build_py("--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--smpl", smpl, "--out", tmp_path / "a.blend",
                    "--device", "cpu", "--iterations", "1", cwd=tmp_path)
    assert smpl.name in failed_line(proc)
    assert not (tmp_path / "a.blend").exists()


@pytest.mark.slow
def test_build_py_output_under_a_regular_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "blocker").write_text("x")
    proc = build_py("--footage", FOOTAGE, "--keypoints", KEYPOINTS, "--out", tmp_path / "blocker" / "a.blend",
                    cwd=tmp_path)
    assert proc.returncode == 1 and "refining" not in proc.stdout
    assert "blocker is a file, not a folder" in one_line(proc.stderr)
    assert (tmp_path / "blocker").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
