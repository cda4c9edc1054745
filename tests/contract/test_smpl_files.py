"""Tests for backend.body.smpl_files (user SMPL file loading without chumpy).

All model files here are random stand-ins in SMPL's layout; no SMPL data is used.
"""

import importlib.util
import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from backend.body.smpl_files import (
    SMPLFileError,
    gender_from_filename,
    load_smpl_arrays,
    smpl_data_struct,
)
from tests.support.smpl_standin import (
    F_SMPL, J_SMPL, SMPL_PARENTS, V_SMPL, _chumpy_layout, _make_fake_chumpy, _random_model, _small_pkl,
    write_standin_smpl,
)


@pytest.fixture(scope="module")
def smpl_pkl(tmp_path_factory):
    """Full-size (6890 vertices) chumpy-style SMPL pickle."""
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl"
    return path, write_standin_smpl(path)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def test_chumpy_pickle_loads_without_chumpy(smpl_pkl):
    path, model = smpl_pkl
    assert "chumpy" not in sys.modules
    assert importlib.util.find_spec("chumpy") is None
    arrays = load_smpl_arrays(path)
    assert "chumpy" not in sys.modules

    assert set(arrays) == {"v_template", "shapedirs", "posedirs", "J_regressor",
                           "weights", "kintree_table", "f"}
    assert arrays["v_template"].shape == (V_SMPL, 3)
    assert arrays["shapedirs"].shape == (V_SMPL, 3, 10)
    assert arrays["posedirs"].shape == (V_SMPL, 3, 207)
    assert arrays["J_regressor"].shape == (J_SMPL, V_SMPL)
    assert isinstance(arrays["J_regressor"], np.ndarray)  # dense, not sparse
    assert arrays["weights"].shape == (V_SMPL, J_SMPL)
    assert arrays["kintree_table"].shape == (2, J_SMPL)
    assert arrays["f"].shape == (F_SMPL, 3)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        assert arrays[key].dtype in (np.float32, np.float64)
        np.testing.assert_array_equal(arrays[key], model[key])
    assert arrays["kintree_table"].dtype.kind == "i"
    assert arrays["f"].dtype.kind == "i"
    np.testing.assert_array_equal(arrays["f"], model["f"].astype(np.int64))
    assert arrays["kintree_table"][0, 0] == -1
    np.testing.assert_array_equal(arrays["kintree_table"][0, 1:], SMPL_PARENTS[1:])


def test_smplx_builds_and_runs_forward(smpl_pkl):
    torch = pytest.importorskip("torch")
    smplx = pytest.importorskip("smplx")
    path, _ = smpl_pkl
    arrays = load_smpl_arrays(path)
    model = smplx.SMPL(model_path=str(path.parent), data_struct=smpl_data_struct(arrays))
    torch.manual_seed(0)
    out = model(betas=torch.randn(2, 10) * 0.5,
                body_pose=torch.randn(2, 69) * 0.2,
                global_orient=torch.randn(2, 3) * 0.2)
    assert out.vertices.shape == (2, V_SMPL, 3)
    assert out.joints.shape[0] == 2 and out.joints.shape[1] >= 24
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.joints).all()
    # Rest pose/shape: first 24 joints are exactly J_regressor @ v_template.
    rest = model()
    expected = arrays["J_regressor"] @ arrays["v_template"]
    np.testing.assert_allclose(rest.joints[0, :24].detach().numpy(), expected, atol=1e-5)


def test_npz_round_trip(smpl_pkl, tmp_path):
    path, _ = smpl_pkl
    arrays = load_smpl_arrays(path)
    npz = tmp_path / "SMPL_FEMALE.npz"
    flat = dict(arrays)
    flat["posedirs"] = flat["posedirs"].reshape(-1, 207)  # (V*3, 207) layout is accepted
    np.savez(npz, **flat)
    again = load_smpl_arrays(npz)
    assert set(again) == set(arrays)
    assert again["posedirs"].shape == (V_SMPL * 3, 207)
    for key in arrays:
        np.testing.assert_array_equal(again[key].reshape(arrays[key].shape), arrays[key])
    assert gender_from_filename(npz) == "female"


def test_plain_pickle_and_pathlike(tmp_path):
    """A chumpy-free pickle (e.g. smplx's cleaned files) loads as well."""
    rng = np.random.default_rng(3)
    model = _random_model(rng, nv=50, nf=40)
    model["J_regressor"] = sp.csr_matrix(model["J_regressor"])
    path = tmp_path / "clean.pkl"
    path.write_bytes(pickle.dumps(model, protocol=4))
    arrays = load_smpl_arrays(path)
    np.testing.assert_array_equal(arrays["J_regressor"], model["J_regressor"].toarray())


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_missing_file(tmp_path):
    missing = tmp_path / "SMPL_MALE.pkl"
    with pytest.raises(SMPLFileError, match="not found") as info:
        load_smpl_arrays(missing)
    assert "SMPL_MALE.pkl" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_pickle(tmp_path):
    path, _ = _small_pkl(tmp_path, nv=60, nf=50)
    data = path.read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SMPLFileError) as info:
        load_smpl_arrays(cut)
    assert "cut.pkl" in str(info.value)
    assert "truncated" in str(info.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(SMPLFileError, match="junk.pkl"):
        load_smpl_arrays(path)


def test_smplx_like_layout(tmp_path):
    def mutate(d):
        d["hands_componentsl"] = np.zeros((45, 45))
        d["hands_componentsr"] = np.zeros((45, 45))

    path, _ = _small_pkl(tmp_path, name="SMPLX_NEUTRAL.pkl", nv=80, nf=60, nj=55,
                         mutate=mutate)
    with pytest.raises(SMPLFileError) as info:
        load_smpl_arrays(path)
    msg = str(info.value)
    assert "SMPL-X" in msg and "24-joint" in msg and "SMPLX_NEUTRAL.pkl" in msg


def test_mano_like_layout(tmp_path):
    def mutate(d):
        d["hands_components"] = np.zeros((45, 45))
        d["hands_mean"] = np.zeros(45)

    path, _ = _small_pkl(tmp_path, name="MANO_RIGHT.pkl", nv=778, nf=1538, nj=16,
                         mutate=mutate)
    with pytest.raises(SMPLFileError) as info:
        load_smpl_arrays(path)
    msg = str(info.value)
    assert "MANO" in msg and "24-joint" in msg and "MANO_RIGHT.pkl" in msg


def test_missing_key(tmp_path):
    def mutate(d):
        del d["weights"]
        del d["f"]

    path, _ = _small_pkl(tmp_path, nv=60, nf=50, mutate=mutate)
    with pytest.raises(SMPLFileError) as info:
        load_smpl_arrays(path)
    msg = str(info.value)
    assert "'weights'" in msg and "'f'" in msg and "missing" in msg


def test_wrong_shape(tmp_path):
    def mutate(d):
        d["shapedirs"] = d["shapedirs"].x[:, :, :5]

    path, _ = _small_pkl(tmp_path, nv=60, nf=50, mutate=mutate)
    with pytest.raises(SMPLFileError, match="shapedirs"):
        load_smpl_arrays(path)


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(SMPLFileError, match="not a dictionary"):
        load_smpl_arrays(path)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_disallowed_global_is_refused(tmp_path, kind):
    sentinel = tmp_path / "pwned"
    evil = _Evil(sentinel) if kind == "os.system" else _EvilEval()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": evil}, protocol=2))
    with pytest.raises(SMPLFileError) as info:
        load_smpl_arrays(path)
    msg = str(info.value)
    assert "refus" in msg and "evil.pkl" in msg
    assert ("system" in msg) if kind == "os.system" else ("eval" in msg)
    assert not sentinel.exists()


def test_npz_with_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, v_template=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SMPLFileError, match="obj.npz"):
        load_smpl_arrays(path)


def test_smpl_data_struct_rejects_incomplete():
    with pytest.raises(SMPLFileError, match="J_regressor"):
        smpl_data_struct({"v_template": np.zeros((3, 3))})


@pytest.mark.parametrize("name, expected", [
    ("SMPL_NEUTRAL.pkl", "neutral"),
    ("SMPL_MALE.pkl", "male"),
    ("SMPL_FEMALE.pkl", "female"),
    ("smpl_female.npz", "female"),
    ("basicModel_f_lbs_10_207_0_v1.0.0.pkl", "female"),
    ("basicmodel_m_lbs_10_207_0_v1.1.0.pkl", "male"),
    ("basicModel_neutral_lbs_10_207_0_v1.0.0.pkl", "neutral"),
    ("/some/dir/SMPL_MALE.pkl", "male"),
    ("model.pkl", None),
])
def test_gender_from_filename(name, expected):
    assert gender_from_filename(name) == expected


class _Py2StylePickler(pickle._Pickler):
    """Writes bytes as Python-2 ``str`` (BINSTRING), like the original SMPL pickles."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_bytes_py2(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_bytes_py2


@pytest.mark.parametrize("style", ["py2-binstring", "protocol-0", "protocol-1"])
def test_old_pickle_styles(tmp_path, style):
    rng = np.random.default_rng(7)
    model = _random_model(rng, nv=120, nf=90)
    mods = _make_fake_chumpy()
    sys.modules.update(mods)
    try:
        data = _chumpy_layout(model, mods["chumpy.ch"].Ch, mods["chumpy.reordering"].Reshape)
        if style == "py2-binstring":
            import io
            buf = io.BytesIO()
            _Py2StylePickler(buf, protocol=2).dump(data)
            payload = buf.getvalue()
            assert b"_codecs" not in payload
        else:
            payload = pickle.dumps(data, protocol=int(style[-1]))
            assert b"copy_reg" in payload
    finally:
        for k in mods:
            sys.modules.pop(k, None)
    path = tmp_path / "old.pkl"
    path.write_bytes(payload)
    arrays = load_smpl_arrays(path)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        np.testing.assert_array_equal(arrays[key], model[key])
    np.testing.assert_array_equal(arrays["f"], model["f"])
