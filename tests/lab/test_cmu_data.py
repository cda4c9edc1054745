"""CMU mocap -> SMPL conversion: FK, retargeting, resampling, split and windows (fast).

Runs on the committed excerpt (tests/fixtures/cmu) always; the tests marked ``needs_full_data``
and the ``full`` cases run on the full data too when ``cmu.cmu_root()`` finds it (CI has it)."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.body.body_model import BodyModel
from lab.data import cmu, convert, dataset, retarget
from backend.rotations import axis_angle_to_matrix

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cmu"


def _full_data_root():
    """(root of the full data or None, why it is missing)."""
    try:
        return cmu.cmu_root(), ""
    except FileNotFoundError as missing:
        return None, str(missing)


FULL, FULL_MISSING = _full_data_root()
needs_full_data = pytest.mark.skipif(FULL is None, reason=f"needs the full CMU data: {FULL_MISSING}")
# The fixture always, the full data when present.
BOTH_ROOTS = pytest.mark.parametrize("root", [FIXTURE, pytest.param(FULL, marks=needs_full_data)],
                                     ids=["fixture", "full"])


def readme_fk_frame(sk, root_cm, euler_deg):
    """The README's reference FK, verbatim."""
    def rot(e):
        (cx, cy, cz), (sx, sy, sz) = (np.cos(np.radians(np.asarray(e, np.float64))),
                                      np.sin(np.radians(np.asarray(e, np.float64))))
        return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
                @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))

    eul = np.array(sk['rest_euler_deg'], np.float64)
    eul[sk['moving_joint_indices']] = euler_deg
    off = np.array(sk['offsets_cm'], np.float64)
    off[0] = root_cm
    A = rot(sk['armature']['rotation_euler_deg'])
    GR, Gp = [None] * 43, np.zeros((43, 3))
    for j, p in enumerate(sk['parents']):
        PR, Pp = (A, np.zeros(3)) if p < 0 else (GR[p], Gp[p])
        Gp[j], GR[j] = Pp + PR @ off[j], PR @ rot(eul[j])
    return Gp / 100.0


@pytest.fixture(scope="module")
def sk():
    return cmu.load_skeleton(FIXTURE)


@pytest.fixture(scope="module")
def bm():
    return BodyModel.load(None)


def clip_infos(root):
    return {c.clip_id: c for c in cmu.read_clips(root)}


def test_cmu_root_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv(cmu.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=cmu.ENV_VAR):
        cmu.cmu_root()
    monkeypatch.setenv(cmu.ENV_VAR, str(FIXTURE))
    assert cmu.cmu_root() == FIXTURE


def test_cmu_root_default_is_shared_beside_the_clone(tmp_path, monkeypatch):
    """CI's layout: the clone at X, the data at X/../shared/data/cmu."""
    monkeypatch.delenv(cmu.ENV_VAR, raising=False)
    monkeypatch.setattr(cmu, "REPO_ROOT", tmp_path / "clone")
    with pytest.raises(FileNotFoundError, match="shared/data/cmu"):
        cmu.cmu_root()
    shutil.copytree(FIXTURE, tmp_path / "shared" / "data" / "cmu")
    assert cmu.cmu_root() == tmp_path / "shared" / "data" / "cmu"


@BOTH_ROOTS
@pytest.mark.parametrize("clip", ["01_01", "33_01"])
def test_fk_matches_readme_example(sk, root, clip):
    raw = json.loads((root / "skeleton.json").read_text())
    root_cm, euler = cmu.load_subject(int(clip[:2]), root)[clip]
    frames = np.linspace(0, len(root_cm) - 1, 5).astype(int)
    ours, _ = cmu.fk_euler(sk, root_cm[frames], euler[frames])
    ref = np.stack([readme_fk_frame(raw, root_cm[f], euler[f]) for f in frames])
    assert np.abs(ours - ref).max() < 1e-6
    # World is Y up: the head is mostly well above the feet.
    assert np.median(ours[:, sk.index("head"), 1] - ours[:, sk.index("lFoot"), 1]) > 1.0


def test_rotation_transfer_points_smpl_bones_along_mocap_bones(sk, bm):
    """At the mocap rest pose, every aligned SMPL bone points exactly along its mocap bone."""
    P, G = cmu.rest_pose(sk)
    seg, A = retarget.transfer_constants(sk, retarget.rest_joints(bm, np.zeros(10)))
    R = retarget.transfer_rotations(G[None], seg, A)
    J = bm.joints_fast(torch.as_tensor(R, dtype=torch.float32), torch.zeros(10)).joints[0].double().numpy()
    smpl = retarget.SMPL
    for name, (mocap, smpl_child, mocap_child) in retarget.ROTATION_MAP.items():
        if smpl_child is None or mocap_child is None:
            continue
        b_s = J[smpl[smpl_child]] - J[smpl[name]]
        b_m = P[sk.index(mocap_child)] - P[sk.index(mocap)]
        cos = b_s @ b_m / np.linalg.norm(b_s) / np.linalg.norm(b_m)
        assert cos > 1 - 1e-5, name


@BOTH_ROOTS
def test_retarget_few_frames_residual(sk, bm, root):
    """Calibrate on a few frames of other training clips, fit 48 frames of a walk.

    Threshold: the converter drops clips with mean > 15 mm or p95 > 40 mm; the full conversion
    measures ~5 mm mean.  A smaller calibration set here is allowed the same clip-level bounds."""
    infos = clip_infos(root)
    calib_clips = [infos[c] for c in ("01_01", "02_02", "07_05", "13_29")]
    calib = convert.run_calibration(bm, sk, calib_clips, root, iters=150, frames_per_clip=8)
    c = infos["02_01"]
    P, G = convert.clip_mocap(sk, *cmu.load_subject(2, root)["02_01"], c)
    P, G = P[:48], G[:48]
    targets = retarget.mocap_targets(sk, P, G, calib.offsets)
    seg, A = retarget.transfer_constants(sk, retarget.rest_joints(bm, calib.betas))
    init = retarget.transfer_rotations(G, seg, A)
    R, transl, dist = retarget.fit_clip_batch(bm, init, targets, np.ones(47, bool), calib.betas)
    _, _, dist0 = retarget.fit_clip_batch(bm, init, targets, np.ones(47, bool), calib.betas,
                                          retarget.FitConfig(iters=0))
    mm = dist * 1000
    assert mm.mean() < convert.MAX_CLIP_MEAN_MM and np.percentile(mm, 95) < convert.MAX_CLIP_P95_MM
    assert mm.mean() < 0.5 * dist0.mean() * 1000   # the fit does the work (measured ~4 mm vs ~13 mm)
    # The fit stays anatomical: close to the rotation transfer (mean joint deviation in degrees).
    rel = torch.as_tensor(np.swapaxes(init, -1, -2) @ R)
    angle = torch.arccos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)).rad2deg()
    assert angle.mean() < 5.0


def test_fit_joints_equal_joints_fast(bm):
    torch.manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(8, 24, 3) * 0.5)
    betas, transl = torch.randn(10), torch.randn(8, 3)
    ref = bm.joints_fast(R, betas, transl).joints
    torch.testing.assert_close(retarget.smpl_joints(bm, R, betas, transl), ref, atol=1e-6, rtol=0)


def test_soles_match_full_mesh(bm):
    betas = np.random.default_rng(0).normal(size=10) * 0.5
    soles = retarget.Soles.build(bm, betas)
    torch.manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(8, 24, 3) * 0.4)
    transl = torch.randn(8, 3)
    ref = bm(R, torch.as_tensor(betas, dtype=torch.float32), transl).vertices[:, soles.ids, 1].min(1).values
    assert np.abs(soles.lowest(bm, R.numpy(), transl.numpy()) - ref.numpy()).max() < 1e-5


def test_toe_rotation_lifts_the_toes():
    R = retarget.toe_rotations(torch.tensor([0.0, 0.5]))
    toe_tip = R @ torch.tensor([0.0, 0.0, 1.0], dtype=R.dtype)   # toes point along +z at rest
    torch.testing.assert_close(toe_tip[0], torch.tensor([0.0, 0.0, 1.0]))
    assert toe_tip[1, 1] > 0.4 and abs(float(toe_tip[1, 0])) < 1e-7


def test_toe_heights_match_the_full_mesh(bm):
    betas = np.random.default_rng(1).normal(size=10) * 0.5
    soles = retarget.Soles.build(bm, betas)
    torch.manual_seed(1)
    R = axis_angle_to_matrix(torch.randn(6, 24, 3) * 0.3).to(bm.dtype)
    transl = torch.randn(6, 3).to(bm.dtype)
    toes = retarget.toe_rotations(torch.rand(6, 2).to(bm.dtype))
    parts = soles.toe_parts(bm, R, transl)
    R_bent = R.clone()
    R_bent[:, retarget.TOES] = toes
    ref = bm(R_bent.float(), torch.as_tensor(betas, dtype=torch.float32), transl.float()).vertices[:, soles.ids, 1]
    assert (soles.heights_with_toes(parts, toes).float() - ref).abs().max() < 1e-5


def test_fit_toes_keeps_the_soles_above_the_floor(bm):
    """Feet pitched toes-down (as at toe-off): straight toes dip under the floor, bending lifts them."""
    betas = np.zeros(10)
    soles = retarget.Soles.build(bm, betas)
    n = 40
    R = np.tile(np.eye(3), (n, 24, 1, 1))
    lean = torch.zeros(n, dtype=torch.float64)
    lean[-1] = 0.5                                   # the last frame pitches the feet toes-down
    ankles = axis_angle_to_matrix(torch.stack([lean, 0 * lean, 0 * lean], -1)).numpy()
    R[:, retarget.SMPL["left_ankle"]] = R[:, retarget.SMPL["right_ankle"]] = ankles
    transl = np.zeros((n, 3))
    same = np.ones(n - 1, bool)
    straight = soles.lowest(bm, R, transl)
    R_fit, floor = retarget.fit_toes(bm, R, transl, same, soles)
    bent = soles.lowest(bm, R_fit, transl)
    assert np.allclose(floor, floor[0])
    assert floor[-1] - straight[-1] > 0.05                 # straight toes go > 5 cm under the floor
    assert bent[-1] - straight[-1] > 0.02                  # bent toes lift the lowest point by > 2 cm
    assert (bent >= straight - 1e-9).all()                 # and lower no frame
    keep = [j for j in range(24) if j not in retarget.TOES]
    np.testing.assert_array_equal(R_fit[:, keep], R[:, keep])     # nothing but the toes moves


def test_calibration_json_round_trip():
    calib = retarget.Calibration(np.linspace(-1, 1, 10), np.full((len(retarget.FIT_JOINTS), 3), 0.0123), 2.5)
    back = retarget.Calibration.from_json(json.loads(json.dumps(calib.to_json())))
    np.testing.assert_allclose(back.betas, calib.betas, atol=1e-5)
    np.testing.assert_allclose(back.offsets, calib.offsets, atol=1e-4)


def test_resampling_a_2x_clip_doubles_frames(sk):
    c = next(c for c in clip_infos(FIXTURE).values() if c.real_time_scale == 2.0)
    root_cm, euler = cmu.load_subject(c.subject, FIXTURE)[c.clip_id]
    local = cmu.local_rotations(sk, euler)
    root2, local2 = cmu.resample(root_cm, local, 2.0)
    n = len(root_cm)
    assert len(root2) == 2 * n - 1 == convert.resampled_length(c)
    # Original frames are kept; in-between frames are the translation midpoint and the rotation halfway.
    np.testing.assert_allclose(root2[::2], root_cm, atol=1e-9)
    np.testing.assert_allclose(local2[::2], local, atol=1e-9)
    np.testing.assert_allclose(root2[1::2], (root_cm[:-1] + root_cm[1:]) / 2, atol=1e-9)
    def angle(a, b):
        return np.arccos(np.clip((np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    np.testing.assert_allclose(angle(local[:-1], local2[1::2]), angle(local2[1::2], local[1:]), atol=1e-6)
    # Real-time clips are untouched.
    assert cmu.resample(root_cm, local, 1.0)[0] is root_cm


@needs_full_data
def test_split_deterministic_and_subject_disjoint():
    infos = clip_infos(FULL)
    subjects = sorted({c.subject for c in infos.values()})
    first = {s: dataset.split_of(s) for s in subjects}
    assert first == {s: dataset.split_of(s) for s in reversed(subjects)}
    val = {s for s, v in first.items() if v == "val"}
    train = {s for s, v in first.items() if v == "train"}
    assert val == set(dataset.VAL_SUBJECTS) and not val & train
    assert 0.05 < len(val) / len(subjects) < 0.15
    clips = convert.select_clips(list(infos.values()))[0]
    assert all(dataset.split_of(c.subject) == "train" for c in convert.calibration_subset(clips))


def test_windows_never_cross_clips():
    lengths = np.array([10, 3, 25, 8])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n = lengths.sum()
    clip_index = np.repeat(np.arange(4), lengths)
    data = {"clip_start": starts, "clip_length": lengths, "clip_index": clip_index,
            "frame_index": np.concatenate([np.arange(k) for k in lengths]),
            "global_orient": np.zeros((n, 3)), "body_pose": np.zeros((n, 69)),
            "transl": np.arange(n)[:, None] * np.ones(3)}
    windows = list(dataset.iter_windows(data, length=8, stride=4))
    # 10 -> starts 0; 3 -> none; 25 -> 0,4,8,12,16; 8 -> 0.
    assert len(windows) == 1 + 0 + 5 + 1
    for w in windows:
        assert len(w["clip_index"]) == 8 and (w["clip_index"] == w["clip_index"][0]).all()
        assert (np.diff(w["frame_index"]) == 1).all()
        assert w["transl"][0, 0] == w["start"]


def test_select_clips_skips_unknown_rates_and_glitches():
    usable, skipped = convert.select_clips(cmu.read_clips(FIXTURE))
    assert skipped == {"unknown capture rate": ["63_13"], "glitch=1": ["90_03"]}
    assert [c.clip_id for c in usable] == ["01_01", "02_01", "02_02", "07_05", "13_29", "33_01", "08_01"]


def test_convert_command_on_the_fixture(tmp_path, monkeypatch):
    """`python -m lab.data.convert` end to end: both splits written, clips resampled, fits kept."""
    monkeypatch.setenv(cmu.ENV_VAR, str(FIXTURE))
    assert convert.main(["--out", str(tmp_path), "--workers", "1", "--quiet"]) == 0
    train, val = dataset.load_split("train", tmp_path), dataset.load_split("val", tmp_path)
    assert list(val["clip_ids"]) == ["08_01"]
    assert list(train["clip_ids"]) == ["01_01", "02_01", "02_02", "07_05", "13_29", "33_01"]
    infos = clip_infos(FIXTURE)
    assert list(train["clip_length"]) == [convert.resampled_length(infos[c]) for c in train["clip_ids"]]
    assert train["clip_length"][-1] == 2 * 60 - 1                  # the 60 Hz clip, resampled
    assert (train["residual_mm"] < convert.MAX_CLIP_MEAN_MM).all()
    assert train["body_pose"].shape == (train["clip_length"].sum(), 69)
    assert np.isfinite(train["body_pose"]).all() and np.abs(train["body_pose"]).max() > 0.1


def _tsv_rows(root):
    with open(root / "clips.tsv", newline="") as fh:
        return {r["clip_id"]: r for r in csv.DictReader(fh, delimiter="\t")}


@needs_full_data
def test_fixture_is_an_excerpt_of_the_full_data():
    assert (FIXTURE / "skeleton.json").read_bytes() == (FULL / "skeleton.json").read_bytes()
    full_rows = _tsv_rows(FULL)
    changed = {"frames", "duration_s_24fps", "real_duration_s"}
    for clip, row in _tsv_rows(FIXTURE).items():
        start, n = int(row.pop("excerpt_start")), int(row["frames"])
        assert {k: v for k, v in row.items() if k not in changed} == \
            {k: v for k, v in full_rows[clip].items() if k not in changed}
        ours = cmu.load_subject(int(row["subject"]), FIXTURE)[clip]
        theirs = cmu.load_subject(int(row["subject"]), FULL)[clip]
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b[start:start + n])
