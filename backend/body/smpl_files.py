"""Load a user's own (licensed) SMPL model file into clean numpy arrays.

We never ship SMPL files.  Users point the add-on at their own
``SMPL_NEUTRAL.pkl`` / ``SMPL_MALE.pkl`` / ``SMPL_FEMALE.pkl`` (or the original
``basicModel_*_lbs_10_207_0_v1.0.0.pkl`` names, or an ``.npz`` with the same
keys).  The original pickles were written by Python 2 and contain
``chumpy.ch.Ch`` objects and ``scipy.sparse.csc.csc_matrix`` objects.  chumpy
is unmaintained and does not import on current Python/numpy, so we never
import it: a restricted :class:`pickle.Unpickler` maps every ``chumpy.*`` class
to a stand-in that keeps the pickled state, and afterwards we rebuild plain
ndarrays from that state.

Security: the files come from users, so :class:`_RestrictedUnpickler` only
resolves a whitelist of globals (numpy array/dtype reconstruction, scipy.sparse
matrix classes, chumpy stand-ins, ``copyreg`` object reconstruction and a few
harmless builtins).  Anything else (``os.system``, ``builtins.eval``, ...) is
refused before it can be called.

Public API
----------
``SMPLFileError``           ValueError with a message naming the file.
``load_smpl_arrays(path)``  -> dict of ndarrays (see ``REQUIRED_KEYS``).
``smpl_data_struct(arrays)``-> ``smplx.utils.Struct`` for
                               ``smplx.SMPL(model_path=..., data_struct=...)``.
``gender_from_filename(path)`` -> 'neutral' | 'male' | 'female' | None.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import copyreg
import importlib
import os
import pickle
import re
import zipfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = [
    "SMPLFileError",
    "REQUIRED_KEYS",
    "NUM_SMPL_JOINTS",
    "NUM_POSE_BASIS",
    "load_smpl_arrays",
    "smpl_data_struct",
    "gender_from_filename",
]

NUM_SMPL_JOINTS = 24
NUM_POSE_BASIS = (NUM_SMPL_JOINTS - 1) * 9  # 207
MIN_SHAPE_COMPONENTS = 10

REQUIRED_KEYS: Tuple[str, ...] = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "f",
)

_FLOAT_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")
_INT_KEYS = ("kintree_table", "f")

# Keys that only exist in other model families.
_SMPLX_ONLY_KEYS = (
    "lmk_faces_idx",
    "lmk_bary_coords",
    "dynamic_lmk_faces_idx",
    "dynamic_lmk_bary_coords",
    "joint2num",
)
_HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
_MANO_KEYS = ("hands_components", "hands_mean", "hands_coeffs")

_EXPECTED = (
    "an SMPL body model file (24 joints, e.g. SMPL_NEUTRAL.pkl / "
    "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl, or an .npz with the same keys)"
)


class SMPLFileError(ValueError):
    """A user-supplied SMPL file is missing, unreadable or has the wrong layout."""


def _err(path: Any, problem: str) -> SMPLFileError:
    return SMPLFileError(f"SMPL model file {str(path)!r}: {problem}; expected {_EXPECTED}.")


# ---------------------------------------------------------------------------
# Stand-ins for pickled chumpy / scipy.sparse objects
# ---------------------------------------------------------------------------


class _PickledObject:
    """Accepts any construction and keeps the pickled state (never runs code)."""

    _pickled_path = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._args = args
        obj._state = {}
        return obj

    def __init__(self, *args, **kwargs):  # copyreg._reconstructor may call it
        pass

    def __setstate__(self, state):
        merged: Dict[str, Any] = {}
        # (dict_state, slots_state) tuples or a plain dict.
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            if isinstance(part, dict):
                for key, value in part.items():
                    merged[key.decode("latin1") if isinstance(key, bytes) else key] = value
        object.__setattr__(self, "_state", merged)

    def __repr__(self):
        return f"<pickled {self._pickled_path}>"


class _ChumpyStandIn(_PickledObject):
    """Replaces any ``chumpy.*`` class during unpickling."""


class _SparseStandIn(_PickledObject):
    """Replaces ``scipy.sparse`` matrix classes (old and new module paths)."""

    _format = "?"


_STANDIN_CACHE: Dict[Tuple[str, str], type] = {}


def _standin_class(base: type, module: str, name: str, **attrs) -> type:
    key = (module, name)
    cls = _STANDIN_CACHE.get(key)
    if cls is None:
        ns = {"_pickled_path": f"{module}.{name}", "__module__": __name__}
        ns.update(attrs)
        cls = type(f"_{base.__name__}_{name}", (base,), ns)
        _STANDIN_CACHE[key] = cls
    return cls


_SPARSE_FORMATS = {
    "csc_matrix": "csc", "csc_array": "csc",
    "csr_matrix": "csr", "csr_array": "csr",
    "coo_matrix": "coo", "coo_array": "coo",
}


def _safe_codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Python 3 protocol<3 pickles store bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "").replace("_", "") not in (
        "latin1", "iso88591", "l1", "utf8",
    ):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode(encoding, errors)


_NUMPY_MODULES = {
    "numpy", "numpy.core.multiarray", "numpy._core.multiarray",
    "numpy.core.numeric", "numpy._core.numeric",
}
_NUMPY_FUNCS = {"_reconstruct", "scalar", "_frombuffer"}
_SAFE_BUILTINS = {
    "set", "frozenset", "list", "dict", "tuple", "object", "int", "float",
    "complex", "bool", "str", "bytes", "bytearray", "slice", "range",
}
_COPYREG_NAMES = {"_reconstructor", "__newobj__", "__newobj_ex__"}


def _import_numpy_module(module: str):
    """Import a whitelisted numpy module, accepting numpy 1.x and 2.x spellings."""
    alt = module.replace("numpy._core", "numpy.core") if "._core" in module \
        else module.replace("numpy.core", "numpy._core")
    try:
        return importlib.import_module(module)
    except ImportError:
        return importlib.import_module(alt)


class _DisallowedGlobal(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted globals (see module docstring)."""

    def find_class(self, module: str, name: str):  # a flat whitelist
        orig = f"{module}.{name}"
        # Python-2 names (copy_reg, __builtin__, ...) -> Python 3 names.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]

        if module == "chumpy" or module.startswith("chumpy."):
            return _standin_class(_ChumpyStandIn, module, name)

        if module == "scipy.sparse" or module.startswith("scipy.sparse."):
            fmt = _SPARSE_FORMATS.get(name)
            if fmt is not None:
                return _standin_class(_SparseStandIn, module, name, _format=fmt)
            raise _DisallowedGlobal(
                f"unsupported scipy.sparse class {orig!r} (only csc/csr/coo matrices are read)"
            )

        if module in _NUMPY_MODULES:
            if module.startswith("numpy._core") or module.startswith("numpy.core"):
                if name in _NUMPY_FUNCS:
                    return getattr(_import_numpy_module(module), name)
            elif module == "numpy":
                if name in ("ndarray", "dtype"):
                    return getattr(np, name)
                obj = getattr(np, name, None)
                if isinstance(obj, type) and issubclass(obj, np.generic):
                    return obj
        elif module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        elif module == "copyreg" and name in _COPYREG_NAMES:
            return getattr(copyreg, name)
        elif module == "_codecs" and name == "encode":
            return _safe_codecs_encode

        raise _DisallowedGlobal(
            f"refusing to load global {orig!r}: SMPL files may only reference numpy, "
            "scipy.sparse, chumpy, copyreg and basic builtins"
        )


# ---------------------------------------------------------------------------
# Turning stand-ins into ndarrays
# ---------------------------------------------------------------------------

_MAX_DEPTH = 64


def _sparse_to_dense(obj: _SparseStandIn) -> np.ndarray:
    import scipy.sparse as sp

    st = obj._state
    shape = st.get("_shape", st.get("shape"))
    if shape is None:
        raise ValueError(f"{obj._pickled_path} has no shape in its pickled state")
    shape = tuple(int(s) for s in shape)
    fmt = obj._format
    if fmt in ("csc", "csr"):
        cls = sp.csc_matrix if fmt == "csc" else sp.csr_matrix
        mat = cls((np.asarray(st["data"]), np.asarray(st["indices"]),
                   np.asarray(st["indptr"])), shape=shape)
    else:  # coo
        if "coords" in st:
            row, col = (np.asarray(c) for c in st["coords"])
        else:
            row, col = np.asarray(st["row"]), np.asarray(st["col"])
        mat = sp.coo_matrix((np.asarray(st["data"]), (row, col)), shape=shape)
    return np.asarray(mat.toarray())


def _find_single_array(state: Dict[str, Any]) -> Optional[np.ndarray]:
    cands = [v for k, v in state.items()
             if isinstance(v, np.ndarray) and not k.startswith("_")
             and v.dtype.kind in "fiu" and v.size > 0]
    return cands[0] if len(cands) == 1 else None


def _chumpy_to_array(obj: _ChumpyStandIn, depth: int) -> np.ndarray:
    st = obj._state
    name = obj._pickled_path.rsplit(".", 1)[-1]

    def ev(key):
        if key not in st:
            raise ValueError(f"{obj._pickled_path}: pickled state lacks {key!r}")
        return _as_array(st[key], depth + 1)

    # Plain chumpy.Ch (and anything else that carries its value under 'x').
    if "x" in st and name not in ("AtleastNd",):
        return ev("x")
    if name == "Reshape":
        return ev("a").reshape(st["newshape"])
    if name == "transpose":
        return np.ascontiguousarray(np.transpose(ev("a"), axes=st.get("axes")))
    if name == "swapaxes":
        return np.swapaxes(ev("a"), st["axis1"], st["axis2"])
    if name == "rollaxis":
        return np.rollaxis(ev("a"), st["axis"], st.get("start", 0))
    if name == "Select":
        res = ev("a").ravel()[np.asarray(st["idxs"])].copy()
        if "preferred_shape" in st and st["preferred_shape"] is not None:
            res = res.reshape(st["preferred_shape"])
        return res
    if name == "AtleastNd":
        x = ev("x")
        nd = int(st.get("ndims", 1))
        return {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[nd](x)
    if name == "Concatenate":
        terms = st.get("dterms") or sorted(
            (k for k in st if re.fullmatch(r"m\d+", k)), key=lambda k: int(k[1:]))
        return np.concatenate([ev(k) for k in terms], axis=st.get("axis", 0))
    single = _find_single_array(st)
    if single is not None:
        return np.asarray(single)
    raise ValueError(f"cannot rebuild an array from pickled chumpy object {obj._pickled_path}")


def _as_array(value: Any, depth: int = 0) -> np.ndarray:
    if depth > _MAX_DEPTH:
        raise ValueError("chumpy expression nested too deeply")
    if isinstance(value, _ChumpyStandIn):
        return _chumpy_to_array(value, depth)
    if isinstance(value, _SparseStandIn):
        return _sparse_to_dense(value)
    if isinstance(value, _PickledObject):
        raise ValueError(f"unexpected pickled object {value._pickled_path}")
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError("object arrays are not supported")
        return value
    if isinstance(value, (list, tuple, int, float)):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError("ragged or object data")
        return arr
    raise ValueError(f"unsupported value of type {type(value).__name__}")


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------


def _read_raw(path: str) -> Dict[str, Any]:
    """Read the top-level mapping of a .pkl or .npz file (no conversion yet)."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise _err(path, f"could not be read ({exc})") from exc
    if is_zip:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except Exception as exc:  # anything wrong with the archive
            raise _err(path, f"is not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    try:
        with open(path, "rb") as fh:
            data = _RestrictedUnpickler(fh, encoding="latin1").load()
    except _DisallowedGlobal as exc:
        raise _err(path, f"was refused: {exc}") from exc
    except MemoryError as exc:
        raise _err(path, "could not be unpickled (out of memory; is the file corrupt?)") from exc
    except Exception as exc:  # truncated/corrupt pickles raise many types
        raise _err(path, f"could not be unpickled; the file is truncated or not a pickle "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise _err(path, f"contains a {type(data).__name__}, not a dictionary of model arrays")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in data.items()}


def _num_joints(arrs: Dict[str, np.ndarray]) -> Optional[int]:
    if "kintree_table" in arrs and arrs["kintree_table"].ndim == 2:
        return int(arrs["kintree_table"].shape[1])
    if "weights" in arrs and arrs["weights"].ndim == 2:
        return int(arrs["weights"].shape[1])
    if "J_regressor" in arrs and arrs["J_regressor"].ndim == 2:
        return int(arrs["J_regressor"].shape[0])
    return None


def _num_verts(arrs: Dict[str, np.ndarray]) -> Optional[int]:
    for key in ("v_template", "weights", "shapedirs"):
        if key in arrs and arrs[key].ndim >= 1:
            return int(arrs[key].shape[0])
    return None


def _check_family(path, raw_keys, arrs) -> None:
    """Raise if the file looks like SMPL-X / SMPL-H / MANO / FLAME instead of SMPL."""
    nj = _num_joints(arrs)
    nv = _num_verts(arrs)
    keys = set(raw_keys)
    want = "an SMPL (24-joint) file is expected"
    if nj == 55 or keys.intersection(_SMPLX_ONLY_KEYS) or nv == 10475:
        raise _err(path, f"looks like an SMPL-X model ({nj} joints, {nv} vertices), "
                         f"but {want}")
    if nj == 52 or keys.intersection(_HAND_KEYS):
        raise _err(path, f"looks like an SMPL-H / SMPL+H model ({nj} joints, {nv} vertices), "
                         f"but {want}")
    if nj == 16 or nv == 778 or keys.intersection(_MANO_KEYS):
        raise _err(path, f"looks like a MANO hand model ({nj} joints, {nv} vertices), "
                         f"but {want}")
    if nj == 5 or nv == 5023:
        raise _err(path, f"looks like a FLAME head model ({nj} joints, {nv} vertices), "
                         f"but {want}")
    if nj is not None and nj != NUM_SMPL_JOINTS:
        raise _err(path, f"has {nj} joints, but {want}")


def _clean(path, raw: Dict[str, Any]) -> Dict[str, np.ndarray]:
    arrs: Dict[str, np.ndarray] = {}
    problems = []
    for key in REQUIRED_KEYS:
        if key not in raw:
            continue
        try:
            arrs[key] = np.asarray(_as_array(raw[key]))
        except Exception as exc:  # any unreadable field is reported by name
            problems.append(f"{key!r} ({exc})")
    _check_family(path, raw.keys(), arrs)
    if problems:
        raise _err(path, "could not convert " + ", ".join(problems))
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise _err(path, "is missing the required key(s) " + ", ".join(repr(k) for k in missing))
    return _validate(path, arrs)


def _validate(path, arrs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    for key in _FLOAT_KEYS:
        a = np.asarray(arrs[key])
        if a.dtype.kind not in "fiub":
            raise _err(path, f"{key!r} has non-numeric dtype {a.dtype}")
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float64)
        out[key] = np.ascontiguousarray(a)
    for key in _INT_KEYS:
        a = np.asarray(arrs[key])
        if a.dtype.kind not in "iu" and not (
            a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a))
        ):
            raise _err(path, f"{key!r} must hold integers, got dtype {a.dtype}")
        out[key] = np.ascontiguousarray(a.astype(np.int64))

    v_t = out["v_template"]
    if v_t.ndim != 2 or v_t.shape[1] != 3 or v_t.shape[0] < 1:
        raise _err(path, f"'v_template' has shape {v_t.shape}, expected (V, 3)")
    nv = v_t.shape[0]
    nj = NUM_SMPL_JOINTS

    sd = out["shapedirs"]
    if sd.ndim != 3 or sd.shape[:2] != (nv, 3) or sd.shape[2] < MIN_SHAPE_COMPONENTS:
        raise _err(path, f"'shapedirs' has shape {sd.shape}, expected ({nv}, 3, S) "
                         f"with S >= {MIN_SHAPE_COMPONENTS}")
    pd = out["posedirs"]
    if pd.shape not in ((nv, 3, NUM_POSE_BASIS), (nv * 3, NUM_POSE_BASIS)):
        raise _err(path, f"'posedirs' has shape {pd.shape}, expected ({nv}, 3, "
                         f"{NUM_POSE_BASIS}) or ({nv * 3}, {NUM_POSE_BASIS})")
    jr = out["J_regressor"]
    if jr.shape != (nj, nv):
        raise _err(path, f"'J_regressor' has shape {jr.shape}, expected ({nj}, {nv})")
    w = out["weights"]
    if w.shape != (nv, nj):
        raise _err(path, f"'weights' has shape {w.shape}, expected ({nv}, {nj})")
    for key in _FLOAT_KEYS:
        if not np.all(np.isfinite(out[key])):
            raise _err(path, f"{key!r} contains NaN or infinite values")

    kt = out["kintree_table"]
    if kt.shape != (2, nj):
        raise _err(path, f"'kintree_table' has shape {kt.shape}, expected (2, {nj})")
    kt = kt.copy()
    # The root's parent is stored as 4294967295 (uint32 -1) in the original files.
    kt[0, 0] = -1
    parents = kt[0, 1:]
    if np.any(parents < 0) or np.any(parents >= np.arange(1, nj)):
        raise _err(path, "'kintree_table' parents are not topologically ordered "
                         f"(got {kt[0].tolist()})")
    out["kintree_table"] = kt

    f = out["f"]
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
        raise _err(path, f"'f' has shape {f.shape}, expected (F, 3)")
    if f.min() < 0 or f.max() >= nv:
        raise _err(path, f"'f' indexes vertices outside [0, {nv})")
    return out


def load_smpl_arrays(path) -> Dict[str, np.ndarray]:
    """Load an SMPL model file (.pkl, chumpy-era or clean, or .npz) into ndarrays.

    Returns a new dict with exactly the keys of :data:`REQUIRED_KEYS`:

    - ``v_template`` (V, 3) float64/float32
    - ``shapedirs`` (V, 3, S), S >= 10
    - ``posedirs`` (V, 3, 207) or (V*3, 207), as stored in the file
    - ``J_regressor`` (24, V) dense (sparse matrices are densified)
    - ``weights`` (V, 24)
    - ``kintree_table`` (2, 24) int64, root parent normalised to -1
    - ``f`` (F, 3) int64

    Raises :class:`SMPLFileError` (a ValueError) naming the file if it is
    missing, unreadable, truncated, refers to disallowed globals, is an
    SMPL-X / SMPL-H / MANO / FLAME file, lacks keys, or has wrong shapes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _err(path, "not found")
    if os.path.isdir(path):
        raise _err(path, "is a directory, not a model file")
    raw = _read_raw(path)
    return _clean(path, raw)


def smpl_data_struct(arrays: Dict[str, np.ndarray]):
    """Wrap :func:`load_smpl_arrays` output as an ``smplx.utils.Struct``.

    Use as ``smplx.SMPL(model_path=<dir or file>, data_struct=smpl_data_struct(arrays))``;
    with ``data_struct`` given, smplx does not open ``model_path``.
    """
    from smplx.utils import Struct

    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise SMPLFileError("SMPL arrays are missing the required key(s) "
                            + ", ".join(repr(k) for k in missing)
                            + "; expected the output of load_smpl_arrays()")
    clean = _validate("<arrays>", {k: arrays[k] for k in REQUIRED_KEYS})
    return Struct(**clean)


_GENDER_TOKENS = {
    "female": "female", "f": "female", "fem": "female", "woman": "female",
    "male": "male", "m": "male", "man": "male",
    "neutral": "neutral", "n": "neutral", "neu": "neutral", "neutr": "neutral",
}


def gender_from_filename(path) -> Optional[str]:
    """'neutral' | 'male' | 'female' from an SMPL file name, or None if unclear.

    Handles ``SMPL_NEUTRAL.pkl``, ``SMPL_FEMALE.npz``,
    ``basicModel_f_lbs_10_207_0_v1.0.0.pkl``, ``basicmodel_m_lbs_...``,
    ``basicModel_neutral_lbs_...``.
    """
    stem = os.path.basename(os.fspath(path))
    stem = re.sub(r"\.(pkl|npz|pickle)$", "", stem, flags=re.IGNORECASE)
    tokens = [t for t in re.split(r"[^a-z0-9]+|_", stem.lower()) if t]
    found = {_GENDER_TOKENS[t] for t in tokens if t in _GENDER_TOKENS}
    return found.pop() if len(found) == 1 else None
