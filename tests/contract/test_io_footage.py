"""Tests for backend.io.footage on tiny videos written with cv2.VideoWriter.

opencv-python-headless here encodes mp4v (.mp4), MJPG and XVID (.avi); it has
no H.264 encoder (avc1 fails), so the tests use mp4v and MJPG.
"""

import struct
from fractions import Fraction

import cv2
import numpy as np
import pytest

from backend.contract.errors import InputError
from backend.io.footage import fps_fraction, is_variable_rate, iter_frames, probe

W, H = 64, 48
CODECS = [("mp4v", ".mp4"), ("MJPG", ".avi")]


def write_video(path, fourcc="MJPG", fps=24.0, frames=10, size=(W, H)):
    """Frame i is a flat grey of brightness 20 * i (so frames are identifiable after lossy coding)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"cannot write {fourcc} here"
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("fourcc,ext", CODECS)
@pytest.mark.parametrize("fps,fraction", [(24.0, "24/1"), (30000 / 1001, "30000/1001"), (30.0, "30/1")])
def test_probe_rates_and_geometry(tmp_path, fourcc, ext, fps, fraction):
    path = write_video(tmp_path / f"clip{ext}", fourcc, fps, frames=10)
    info = probe(path)
    exact = Fraction(fraction)
    assert info.fps == float(exact)  # 29.97 comes back as exactly 30000/1001
    assert info.fps_fraction == fraction
    assert info.frame_count == 10
    assert (info.width, info.height) == (W, H)
    assert info.rotation_deg == 0
    assert info.variable_rate is False
    assert info.duration_s == pytest.approx(10 / float(exact), rel=1e-12)
    assert info.frame_count_source == "counted"  # shorter than the timing window: counted while timing
    assert "30000/1001" in info.summary() or fraction in info.summary()


def test_probe_trusts_a_seek_checked_container_count(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "mp4v", 30, frames=30)
    info = probe(path, timing_frames=5)
    assert (info.frame_count, info.frame_count_source) == (30, "container")
    counted = probe(path, timing_frames=5, count_frames=True)
    assert (counted.frame_count, counted.frame_count_source) == (30, "counted")


def _patch_avi_frame_count(src, dst, value):
    """Rewrites the AVI header counts (avih dwTotalFrames, strh dwLength) to ``value``."""
    data = bytearray(src.read_bytes())
    avih, strh = data.index(b"avih"), data.index(b"strh")
    data[avih + 24:avih + 28] = struct.pack("<I", value)
    data[strh + 40:strh + 44] = struct.pack("<I", value)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("claimed", [0, 50])
def test_probe_counts_frames_when_the_container_lies(tmp_path, claimed):
    src = write_video(tmp_path / "src.avi", "MJPG", 24, frames=10)
    path = _patch_avi_frame_count(src, tmp_path / f"claims{claimed}.avi", claimed)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == claimed  # OpenCV reports the wrong number
    cap.release()
    info = probe(path, timing_frames=3)
    assert (info.frame_count, info.frame_count_source) == (10, "counted")
    assert info.duration_s == pytest.approx(10 / 24)


def _variable_rate_mp4(src, dst, entries):
    """Rewrites an mp4v file's single-entry sample-duration table (stts) to several (count, duration) runs.

    The total duration is kept, so the edit list and headers stay valid; moov
    follows mdat in OpenCV's files, so growing it moves no sample offsets.
    """
    data = bytearray(src.read_bytes())
    at = data.index(b"stts") - 4
    size, _, _, count = struct.unpack(">I4sII", data[at:at + 16])
    frames, delta = struct.unpack(">II", data[at + 16:at + 24])
    assert count == 1 and sum(c for c, _ in entries) == frames and sum(c * d for c, d in entries) == frames * delta
    assert data.index(b"mdat") < data.index(b"moov")
    table = struct.pack(">I4sII", 16 + 8 * len(entries), b"stts", 0, len(entries))
    table += b"".join(struct.pack(">II", c, d) for c, d in entries)
    for parent in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        h = data.index(parent) - 4
        struct.pack_into(">I", data, h, struct.unpack(">I", data[h:h + 4])[0] + len(table) - size)
    data[at:at + size] = table
    dst.write_bytes(bytes(data))
    return dst


def test_variable_rate_footage(tmp_path):
    src = write_video(tmp_path / "cfr.mp4", "mp4v", 30, frames=20)
    data = src.read_bytes()
    at = data.index(b"stts") - 4
    delta = struct.unpack(">I", data[at + 20:at + 24])[0]
    assert delta % 4 == 0
    # First 10 frames at 60 fps, last 10 at 20 fps: same 2/3 s in total.
    path = _variable_rate_mp4(src, tmp_path / "vfr.mp4", [(10, delta // 2), (10, 3 * delta // 2)])
    info = probe(path)
    assert info.variable_rate is True
    assert info.frame_count == 20
    assert info.fps == 30.0  # the average rate
    assert info.duration_s == pytest.approx(20 / 30)
    assert len(list(iter_frames(path))) == 20
    assert probe(src).variable_rate is False


def _rotated_mp4(src, dst, degrees):
    """Sets the track header's display matrix (the metadata phones write) to a rotation."""
    matrices = {
        90: (0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000),
        180: (0xFFFF0000, 0, 0, 0, 0xFFFF0000, 0, 0, 0, 0x40000000),
        270: (0, 0xFFFF0000, 0, 0x10000, 0, 0, 0, 0, 0x40000000),
    }
    data = bytearray(src.read_bytes())
    identity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    at = data.index(identity, data.index(b"tkhd"))
    data[at:at + 36] = struct.pack(">9I", *matrices[degrees])
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("degrees,turn", [(90, cv2.ROTATE_90_CLOCKWISE), (180, cv2.ROTATE_180),
                                          (270, cv2.ROTATE_90_COUNTERCLOCKWISE)])
def test_rotation_metadata(tmp_path, degrees, turn):
    src = tmp_path / "src.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 24, (W, H))
    # Dark left half, bright right half, dark top band: every rotation looks different.
    img = np.zeros((H, W, 3), np.uint8)
    img[:, W // 2:] = 200
    img[: H // 4] = 0
    for _ in range(3):
        writer.write(img)
    writer.release()
    coded = next(iter_frames(src))[1]
    path = _rotated_mp4(src, tmp_path / f"rot{degrees}.mp4", degrees)
    info = probe(path)
    assert info.rotation_deg == degrees
    expected = cv2.rotate(coded, turn)
    assert (info.height, info.width) == expected.shape[:2]
    frame = next(iter_frames(path))[1]
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(int) - expected).mean() < 3  # the same picture, turned clockwise by `degrees`


def test_iter_frames_is_lazy_and_in_order(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", 24, frames=10)
    frames = list(iter_frames(path))
    assert [i for i, _ in frames] == list(range(10))
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for _, f in frames)
    assert np.allclose([f.mean() for _, f in frames], 20 * np.arange(10), atol=3)
    part = [(i, round(f.mean() / 20)) for i, f in iter_frames(path, start=3, stop=6)]
    assert part == [(3, 3), (4, 4), (5, 5)]
    assert [i for i, _ in iter_frames(path, start=8, stop=100)] == [8, 9]
    gen = iter_frames(path)
    assert next(gen)[0] == 0
    gen.close()  # releases the capture


def test_iter_frames_checks_at_call_time(tmp_path):
    with pytest.raises(InputError, match="not found"):
        iter_frames(tmp_path / "missing.mp4")
    path = write_video(tmp_path / "clip.avi")
    with pytest.raises(InputError, match="start=5, stop=2"):
        iter_frames(path, start=5, stop=2)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        probe(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty") as exc:
        probe(tmp_path / "empty.mp4")
    assert "\n" not in str(exc.value) and "empty.mp4" in str(exc.value)
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="cannot open.*ffmpeg -i"):
        probe(tmp_path / "notes.mp4")
    with pytest.raises(InputError, match="not a file"):
        probe(tmp_path)
    # A valid container without a single frame.
    write_video(tmp_path / "noframes.avi", frames=0)
    with pytest.raises(InputError, match="no decodable frames"):
        probe(tmp_path / "noframes.avi")


def test_fps_fraction():
    assert fps_fraction(29.97) == Fraction(30000, 1001)
    assert fps_fraction(23.976) == Fraction(24000, 1001)
    assert fps_fraction(59.94) == Fraction(60000, 1001)
    assert fps_fraction(30000 / 1001) == Fraction(30000, 1001)
    assert fps_fraction(25.0) == 25
    assert fps_fraction(12.5) == Fraction(25, 2)
    with pytest.raises(ValueError):
        fps_fraction(0.0)


def test_is_variable_rate():
    rng = np.random.default_rng(0)
    regular = np.arange(100) * 1000 / (30000 / 1001)
    assert is_variable_rate(regular) is False
    # Time-base rounding (to whole ms) is jitter, not variable rate.
    assert is_variable_rate(np.round(regular)) is False
    phone = np.cumsum(rng.choice([33.3, 16.7, 41.7], size=100))
    assert is_variable_rate(phone) is True
    one_hiccup = regular.copy()
    one_hiccup[50:] += 20.0  # a single dropped/late frame
    assert is_variable_rate(one_hiccup) is True
    assert is_variable_rate([0.0, 33.3]) is None
    assert is_variable_rate(np.zeros(10)) is None  # streams without timestamps
