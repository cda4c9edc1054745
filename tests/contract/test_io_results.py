"""Tests for backend.contract.results: OUT.npz writing/reading and the per-frame JSON export."""

import json
import os
import stat

import numpy as np
import pytest

from backend.contract.layout import SMPL_JOINT_NAMES
from backend.contract import results as results_mod
from backend.contract.errors import InputError
from backend.contract.results import (
    CORE_KEYS,
    export_frames_json,
    read_results,
    validate_results,
    write_results,
)

F, V = 4, 20


def make_results(seed=0, frames=F):
    rng = np.random.default_rng(seed)
    out = {
        "global_orient": rng.normal(size=(frames, 3)),
        "body_pose": rng.normal(0, 0.2, (frames, 69)),
        "betas": rng.normal(size=10),
        "transl": np.c_[rng.normal(size=(frames, 2)), rng.uniform(2, 5, frames)],
        "joints": rng.normal(size=(frames, 24, 3)),
        "keypoints3d": rng.normal(size=(frames, 17, 3)),
        "init_joints": rng.normal(size=(frames, 24, 3)),
        "reprojection_error_px": rng.uniform(0, 5, frames),
        "info": json.dumps({"mode": "video", "iterations": 3}),
        "rest_joints": rng.normal(size=(24, 3)),
        "rest_vertices": rng.normal(size=(V, 3)),
        "faces": rng.integers(0, V, (30, 3)),
        "skin_weights": rng.dirichlet(np.ones(24), V),
        "fps": 30000 / 1001,
    }
    out["reprojection_error_px"][2] = np.nan  # a frame without keypoints
    return out


def test_write_read_round_trip(tmp_path):
    res = make_results()
    path = write_results(tmp_path / "out" / "OUT.npz", res)  # the folder is created
    assert path == tmp_path / "out" / "OUT.npz"
    assert os.listdir(tmp_path / "out") == ["OUT.npz"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    back = read_results(path)
    assert back["info"] == {"mode": "video", "iterations": 3}
    assert back["fps"] == 30000 / 1001 and back["faces"].dtype == np.int32
    for key in ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "skin_weights"):
        assert back[key].dtype == np.float32
        np.testing.assert_allclose(back[key], res[key], rtol=1e-6, atol=1e-6)
    assert np.isnan(back["reprojection_error_px"][2])
    with np.load(path, allow_pickle=False) as raw:  # the add-on reads it without pickle
        assert json.loads(str(raw["info"])) == {"iterations": 3, "mode": "video"}


def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "OUT.npz"
    write_results(path, make_results(0))
    with pytest.raises(InputError, match="OUT.npz: already exists; pass --force"):
        write_results(path, make_results(1))
    np.testing.assert_allclose(read_results(path)["transl"], make_results(0)["transl"], rtol=1e-6)
    write_results(path, make_results(1), force=True)
    np.testing.assert_allclose(read_results(path)["transl"], make_results(1)["transl"], rtol=1e-6)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "OUT.npz"
    write_results(path, make_results(0))
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_mod.np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space"):
        write_results(path, make_results(1), force=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["OUT.npz"]


def test_output_folder_problems(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="cannot be created.*--out"):
        write_results(tmp_path / "afile" / "sub" / "OUT.npz", make_results())
    with pytest.raises(InputError, match="is a folder"):
        write_results(tmp_path, make_results())
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root ignores permission bits, so fake them
    with pytest.raises(InputError, match="not writable; choose another --out"):
        write_results(tmp_path / "OUT.npz", make_results())


@pytest.mark.parametrize("change,match", [
    ({"joints": None}, "has no field 'joints'"),
    ({"joints": np.zeros((3, 24, 3))}, r"field 'joints' has shape \(3, 24, 3\), expected \(F, 24, 3\) with F=4"),
    ({"betas": np.zeros(16)}, r"field 'betas' has shape \(16,\), expected \(F, 10\) or \(10,\)"),
    ({"transl": np.full((F, 3), np.nan)}, "field 'transl' has 12 NaN/inf"),
    ({"faces": np.full((30, 3), V)}, "field 'faces' must hold integer vertex indices below the vertex count 20"),
    ({"faces": np.zeros((30, 3))}, "field 'faces' must hold integer"),
    ({"skin_weights": np.zeros((V + 1, 24))}, r"field 'skin_weights' has shape \(21, 24\)"),
    ({"info": "not json"}, "field 'info' is not a JSON object"),
    ({"fps": 0.0}, "field 'fps' is 0.0"),
    ({"keypoints3d": np.zeros((F, 18, 3))}, "field 'keypoints3d'"),
])
def test_validation_names_the_field(tmp_path, change, match):
    res = {k: v for k, v in {**make_results(), **change}.items() if v is not None}
    with pytest.raises(InputError, match=match):
        write_results(tmp_path / "OUT.npz", res)
    assert not (tmp_path / "OUT.npz").exists()


def test_read_checks_the_file(tmp_path):
    with pytest.raises(InputError, match="none.npz: file not found"):
        read_results(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(InputError, match="holds text, not numpy arrays"):
        read_results(tmp_path / "junk.npz")
    core = {k: v for k, v in make_results().items() if k not in results_mod.ADDON_KEYS}
    np.savez(tmp_path / "core.npz", **core)
    with pytest.raises(InputError, match="has no field 'rest_joints'"):
        read_results(tmp_path / "core.npz")
    assert read_results(tmp_path / "core.npz", required=CORE_KEYS)["global_orient"].shape == (F, 3)
    assert validate_results(dict(make_results(), keypoints3d=np.zeros((F, 23, 3))))["keypoints3d"].shape == (F, 23, 3)


def test_export_frames_json(tmp_path):
    res = make_results()
    out = write_results(tmp_path / "OUT.npz", res)
    path = export_frames_json(out, tmp_path / "frames.json")
    text = path.read_text()
    assert "NaN" not in text
    doc = json.loads(text)
    assert doc["format"] == "scorehmr-frames/1" and doc["fps"] == pytest.approx(30000 / 1001)
    assert doc["joint_names"] == list(SMPL_JOINT_NAMES) and len(doc["keypoint_names"]) == 17
    assert doc["info"]["mode"] == "video"
    frames = doc["frames"]
    assert [fr["frame"] for fr in frames] == list(range(F))
    assert frames[3]["time_s"] == pytest.approx(3 * 1001 / 30000, abs=1e-6)
    for f, fr in enumerate(frames):
        np.testing.assert_allclose(fr["global_orient"], res["global_orient"][f], atol=1e-6)
        np.testing.assert_allclose(fr["body_pose"], res["body_pose"][f], atol=1e-6)
        np.testing.assert_allclose(fr["betas"], res["betas"], atol=1e-6)
        np.testing.assert_allclose(fr["transl"], res["transl"][f], atol=1e-6)
        np.testing.assert_allclose(fr["joints"], res["joints"][f], atol=1e-6)
        assert np.asarray(fr["keypoints3d"]).shape == (17, 3)
    assert frames[2]["reprojection_error_px"] is None
    assert frames[0]["reprojection_error_px"] == pytest.approx(res["reprojection_error_px"][0], abs=1e-6)
    with pytest.raises(InputError, match="already exists; pass --force"):
        export_frames_json(out, path)
    # From an in-memory dict, per-frame betas and no fps.
    res2 = {k: v for k, v in make_results(1).items() if k not in results_mod.ADDON_KEYS}
    res2["betas"] = np.tile(np.arange(10.0), (F, 1))
    doc2 = json.loads(export_frames_json(res2, path, force=True).read_text())
    assert doc2["fps"] is None and doc2["frames"][1]["time_s"] is None
    assert doc2["frames"][1]["betas"] == list(np.arange(10.0))
