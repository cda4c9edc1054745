"""backend.contract: importable without the engine's heavy packages; its rotation helpers' guards;
frame ranges."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backend.contract import rotations
from backend.contract.errors import InputError
from backend.contract.frames import FrameRange, from_scene, parse_frames, to_scene

ROOT = Path(__file__).resolve().parents[2]

BLOCKED_IMPORT = textwrap.dedent('''
    import importlib, pkgutil, sys
    BLOCKED = ("torch", "scipy", "cv2", "smplx")

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not available to the contract")

    sys.meta_path.insert(0, Refuse())
    import backend.contract
    names = [m.name for m in pkgutil.iter_modules(backend.contract.__path__)]
    for name in names:
        importlib.import_module(f"backend.contract.{name}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("OK", len(names), loaded)
''')


def test_the_whole_contract_imports_where_torch_scipy_cv2_and_smplx_cannot():
    proc = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "OK" and int(proc.stdout.split()[1]) >= 10, proc.stdout
    assert proc.stdout.strip().endswith("[]"), proc.stdout


def test_the_blocker_does_block():
    """The check above could pass vacuously if the blocker let imports through: it must not."""
    proc = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT.replace("import backend.contract\n",
                                                                        "import backend.contract\nimport torch\n")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "torch is not available to the contract" in proc.stderr


def angle_between(u, v):
    return np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


@pytest.mark.parametrize("a, b", [
    ((0, 1, 0), (0, 0, 1)),
    ((1, 2, 3), (-1, 0.5, 2)),
    ((0, 1, 0), (0, -1, 0)),                 # opposite: 1 + cos = 0
    ((1, 1, 0), (-1, -1, 1e-12)),            # opposite up to rounding
    ((0.3, -0.2, 0.9), (0.3, -0.2, 0.9)),    # the same: identity
])
def test_rotation_between_takes_a_to_b_with_a_proper_rotation(a, b):
    R = rotations.rotation_between(np.array(a, float), np.array(b, float))
    assert np.all(np.isfinite(R))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-9)
    assert angle_between(R @ np.array(a, float), np.array(b, float)) < 1e-5


def test_rotation_between_a_zero_direction_is_the_identity():
    np.testing.assert_array_equal(rotations.rotation_between(np.zeros(3), np.array([0, 0, 1.0])), np.eye(3))


def test_matrix_to_axis_angle_round_trips_near_zero_and_half_turns():
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(50, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    for angle in (0.0, 1e-9, 1.0, np.pi - 1e-7):
        R = rotations.axis_angle_to_matrix(axes * angle)
        np.testing.assert_allclose(rotations.axis_angle_to_matrix(rotations.matrix_to_axis_angle(R)), R, atol=1e-8)


def test_frame_ranges_parse_and_convert_to_scene_frames():
    assert parse_frames("3:40") == FrameRange(3, 40) and str(FrameRange(3, 40)) == "3:40"
    assert parse_frames("overlap") == "overlap" and parse_frames(None) is None
    with pytest.raises(InputError, match="is not START:STOP"):
        parse_frames("3-40")
    # Footage frame 0 at scene frame 11: scene frames 12..14 are footage frames 1:4, and back.
    assert from_scene(12, 14, 11) == FrameRange(1, 4)
    assert to_scene(FrameRange(1, 4), 11) == (12, 14)
