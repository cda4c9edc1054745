"""Stand-in SMPL model files in SMPL's pickle layout (random arrays, chumpy-style objects).

No SMPL data: every array is random, only the shapes and the pickle layout are SMPL's.
"""
import pickle
import sys
import types

import numpy as np
import scipy.sparse as sp

SMPL_PARENTS = [4294967295, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14,
                16, 17, 18, 19, 20, 21]
V_SMPL, F_SMPL, J_SMPL = 6890, 13776, 24


# --------------------------------------------------------------------------
# Fake chumpy, registered only while pickling
# --------------------------------------------------------------------------

def _make_fake_chumpy():
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:
        """Pickles like chumpy.ch.Ch: NEWOBJ + a __dict__ state holding 'x'."""

        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

        def __getstate__(self):
            return dict(self.__dict__)

        def __setstate__(self, d):
            self.__dict__.update(d)

    class Reshape:
        def __init__(self, a, newshape):
            self.a = a
            self.newshape = newshape
            self._dirty_vars = {"a"}

        def __getstate__(self):
            return dict(self.__dict__)

        def __setstate__(self, d):
            self.__dict__.update(d)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Reshape.__module__, Reshape.__qualname__ = "chumpy.reordering", "Reshape"
    ch.Ch = Ch
    reordering.Reshape = Reshape
    chumpy.ch = ch
    chumpy.reordering = reordering
    chumpy.Ch = Ch
    return {"chumpy": chumpy, "chumpy.ch": ch, "chumpy.reordering": reordering}


def _dump_with_fake_chumpy(build, path):
    """build(Ch, Reshape) -> dict; pickle it (protocol 2) with the fake chumpy."""
    mods = _make_fake_chumpy()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        data = build(mods["chumpy.ch"].Ch, mods["chumpy.reordering"].Reshape)
        payload = pickle.dumps(data, protocol=2)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    # Old scipy wrote 'scipy.sparse.csc'; protocol 2 GLOBALs are plain text lines.
    payload = payload.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")
    with open(path, "wb") as fh:
        fh.write(payload)
    return payload


def _random_model(rng, nv=V_SMPL, nf=F_SMPL, nj=J_SMPL, parents=None, n_betas=10):
    v_template = rng.uniform(-0.5, 0.5, size=(nv, 3))
    shapedirs = rng.normal(scale=0.01, size=(nv, 3, n_betas))
    posedirs = rng.normal(scale=0.001, size=(nv, 3, (nj - 1) * 9))
    jreg = np.zeros((nj, nv))
    for j in range(nj):
        idx = rng.choice(nv, size=8, replace=False)
        jreg[j, idx] = rng.dirichlet(np.ones(8))
    weights = rng.dirichlet(np.ones(nj) * 0.3, size=nv)
    if parents is None:
        parents = [4294967295] + [int(rng.integers(0, j)) for j in range(1, nj)]
    kintree = np.array([parents, np.arange(nj)], dtype=np.uint32)
    f = rng.integers(0, nv, size=(nf, 3)).astype(np.uint32)
    return dict(v_template=v_template, shapedirs=shapedirs, posedirs=posedirs,
                J_regressor=jreg, weights=weights, kintree_table=kintree, f=f)


def _chumpy_layout(model, Ch, Reshape):
    """SMPL's pkl layout: chumpy objects, sparse J_regressor, extra keys."""
    nv = model["v_template"].shape[0]
    return {
        "v_template": Ch(model["v_template"]),
        "shapedirs": Ch(model["shapedirs"]),
        # posedirs as a chumpy expression over a flat Ch, to exercise reordering.
        "posedirs": Reshape(Ch(model["posedirs"].ravel()), model["posedirs"].shape),
        "J_regressor": sp.csc_matrix(model["J_regressor"]),
        "J_regressor_prior": sp.csc_matrix(model["J_regressor"]),
        "J": Ch(model["J_regressor"] @ model["v_template"]),
        "weights": model["weights"],
        "weights_prior": model["weights"],
        "kintree_table": model["kintree_table"],
        "f": model["f"],
        "vert_sym_idxs": np.arange(nv),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def _small_pkl(tmp_path, name="small.pkl", seed=1, mutate=None, **kw):
    rng = np.random.default_rng(seed)
    model = _random_model(rng, **kw)

    def build(Ch, R):
        data = _chumpy_layout(model, Ch, R)
        if mutate:
            mutate(data)
        return data

    path = tmp_path / name
    _dump_with_fake_chumpy(build, path)
    return path, model


def write_standin_smpl(path, seed=0):
    """Full-size (6890 vertices) chumpy-style SMPL pickle at ``path``; returns the arrays."""
    model = _random_model(np.random.default_rng(seed), parents=SMPL_PARENTS)
    payload = _dump_with_fake_chumpy(lambda Ch, R: _chumpy_layout(model, Ch, R), path)
    assert b"chumpy.ch" in payload and b"scipy.sparse.csc\n" in payload
    return model
