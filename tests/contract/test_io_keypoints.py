"""Tests for backend.contract.keypoints on detector outputs generated in tmp_path."""

import json
import re

import numpy as np
import pytest

from backend.contract.layout import COCO17_NAMES, FOOT6_NAMES
from backend.contract.errors import InputError
from backend.contract.keypoints import _boxes, detect_format, load_keypoints, select_track

# OpenPose's own point names (output doc, BODY_25 and COCO-18 models).
BODY25_NAMES = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"]
COCO18_NAMES = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar"]


def our_name(openpose_name):
    """'LBigToe' -> 'left_big_toe', 'RShoulder' -> 'right_shoulder' (Neck/MidHip have no COCO twin)."""
    side = {"L": "left_", "R": "right_"}.get(openpose_name[0]) if openpose_name[1].isupper() else None
    rest = openpose_name[1:] if side else openpose_name
    return (side or "") + re.sub(r"(?<!^)(?=[A-Z])", "_", rest).lower()


def person(rng, center=(300.0, 250.0), height=300.0, conf=0.9):
    """(23, 3) COCO-17 + FOOT6 points spread over a box of the given height around center."""
    pts = np.empty((23, 3))
    pts[:, 0] = center[0] + rng.uniform(-0.25, 0.25, 23) * height
    pts[:, 1] = center[1] + rng.uniform(-0.5, 0.5, 23) * height
    pts[:, 2] = conf
    return pts


def to_openpose(pts, names=BODY25_NAMES):
    """Our (23, 3) COCO-17 + FOOT6 -> OpenPose flat list in ``names`` order (unknown points zero)."""
    ours = dict(zip(COCO17_NAMES + FOOT6_NAMES, pts))
    out = [ours.get(our_name(n), np.zeros(3)) for n in names]
    return np.concatenate(out).tolist()


def write_openpose(folder, frames, names=BODY25_NAMES, stem="clip", first=0):
    """frames: list over frames of lists of (23, 3) people, or None for a missing file."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, people in enumerate(frames):
        if people is None:
            continue
        doc = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": to_openpose(p, names),
                                           "face_keypoints_2d": [], "hand_left_keypoints_2d": []} for p in people]}
        (folder / f"{stem}_{first + i:012d}_keypoints.json").write_text(json.dumps(doc))
    return folder


def test_name_mapping_helper_matches_the_spec():
    assert our_name("LShoulder") == "left_shoulder" and our_name("RBigToe") == "right_big_toe"
    assert our_name("Nose") == "nose" and our_name("REar") == "right_ear" and our_name("LSmallToe") == "left_small_toe"
    assert {our_name(n) for n in BODY25_NAMES} >= set(COCO17_NAMES) | set(FOOT6_NAMES)


def test_openpose_folder_with_0_1_2_people(tmp_path):
    rng = np.random.default_rng(0)
    main = [person(rng, center=(300 + 5 * f, 250)) for f in range(6)]
    small = [person(rng, center=(600, 300), height=120, conf=0.6) for _ in range(6)]
    frames = [[main[0]], [small[1], main[1]], [], None, [main[4], small[4]], [main[5]]]
    folder = write_openpose(tmp_path / "op", frames, first=10)
    assert detect_format(folder) == "openpose"
    seq = load_keypoints(folder)
    rep = seq.report
    assert seq.keypoints.shape == (6, 17, 3) and seq.keypoints.dtype == np.float32
    assert seq.feet.shape == (6, 6, 3)
    assert (rep.frames, rep.first_frame, rep.format) == (6, 10, "openpose")
    assert rep.people_per_frame.tolist() == [1, 2, 0, 0, 2, 1]
    assert (rep.track, rep.num_tracks) == (0, 2)
    assert rep.missing_fraction == pytest.approx(2 / 6)
    for f in (0, 1, 4, 5):
        np.testing.assert_allclose(seq.keypoints[f], main[f][:17], atol=1e-4)
        np.testing.assert_allclose(seq.feet[f], main[f][17:], atol=1e-4)
    assert not seq.keypoints[2:4].any() and not seq.feet[2:4].any()  # no detection -> zero rows
    other = load_keypoints(folder, track=1)
    np.testing.assert_allclose(other.keypoints[[1, 4]], np.stack([small[1], small[4]])[:, :17], atol=1e-4)
    assert other.report.missing_fraction == pytest.approx(4 / 6)
    with pytest.raises(InputError, match="track 2 does not exist.*--track between 0 and 1"):
        load_keypoints(folder, track=2)
    assert "6 frames" in rep.summary()


def test_openpose_single_file_and_coco18(tmp_path):
    rng = np.random.default_rng(1)
    p = person(rng)
    write_openpose(tmp_path / "c18", [[p], [p]], names=COCO18_NAMES)
    seq = load_keypoints(tmp_path / "c18")
    assert seq.feet is None
    np.testing.assert_allclose(seq.keypoints[1], p[:17], atol=1e-4)
    single = tmp_path / "c18" / "clip_000000000001_keypoints.json"
    assert detect_format(single) == "openpose"
    assert load_keypoints(single).keypoints.shape == (1, 17, 3)


def test_openpose_all_empty_is_not_a_crash(tmp_path):
    folder = write_openpose(tmp_path / "op", [[], [], []])
    seq = load_keypoints(folder)
    assert seq.keypoints.shape == (3, 17, 3) and not seq.keypoints.any()
    assert (seq.report.missing_fraction, seq.report.num_tracks) == (1.0, 0)


def test_openpose_bad_inputs(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x_000000000000_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 30}]}))
    with pytest.raises(InputError, match="pose_keypoints_2d.*shape"):
        load_keypoints(folder)
    (folder / "x_000000000000_keypoints.json").write_text(json.dumps({"people": [{"face_keypoints_2d": []}]}))
    with pytest.raises(InputError, match="pose_keypoints_2d"):
        load_keypoints(folder)
    (folder / "x_000000000000_keypoints.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_keypoints(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no \*_keypoints.json"):
        load_keypoints(empty)


def test_track_stays_on_the_same_person_through_swaps_and_gaps():
    rng = np.random.default_rng(2)
    frames = 30
    # Two people of similar size walking towards each other's side but never overlapping much;
    # detector order shuffles every frame, and A vanishes for frames 10-14.
    a = [person(rng, center=(200 + 3 * f, 250), height=320) for f in range(frames)]
    b = [person(rng, center=(700 - 3 * f, 260), height=280) for f in range(frames)]
    people = []
    for f in range(frames):
        here = [b[f]] + ([] if 10 <= f < 15 else [a[f]])
        rng.shuffle(here)
        people.append(np.stack(here))
    sel = select_track(people)
    assert sel.num_tracks == 2
    centers = [people[f][i, :17, 0].mean() if i >= 0 else np.nan for f, i in enumerate(sel.person_index)]
    expected = [a[f][:17, 0].mean() if not 10 <= f < 15 else np.nan for f in range(frames)]
    np.testing.assert_allclose(centers, expected)  # track 0 = A (bigger, in every frame it has), gap kept
    other = select_track(people, track=1)
    assert all(people[f][i, 0, 0] == b[f][0, 0] for f, i in enumerate(other.person_index))


def test_track_order_is_total_size_times_confidence():
    rng = np.random.default_rng(3)
    # B is larger per frame but present in 2 frames; A in 10: A has the larger total.
    a = [person(rng, center=(200, 250), height=200) for _ in range(10)]
    b = [person(rng, center=(700, 250), height=300) for _ in range(10)]
    people = [np.stack([a[f], b[f]]) if f < 2 else a[f][None] for f in range(10)]
    sel = select_track(people)
    assert sel.person_index.tolist() == [0] * 10
    # Same box sizes, both always present, A less confident: B wins.
    a2 = [person(rng, center=(200, 250), height=300, conf=0.3) for _ in range(3)]
    b2 = [person(rng, center=(700, 250), height=300, conf=0.9) for _ in range(3)]
    _, w, _ = _boxes(np.stack([a2[0], b2[0]]))
    assert w[0] < w[1]
    assert select_track([np.stack([a2[f], b2[f]]) for f in range(3)]).person_index.tolist() == [1, 1, 1]


def test_select_track_empty_and_single_points():
    assert select_track([np.zeros((0, 17, 3))] * 3).person_index.tolist() == [-1, -1, -1]
    lone = np.zeros((1, 17, 3))
    lone[0, 0] = [10, 10, 0.9]  # one confident point: no box, never chosen
    pair = lone.copy()
    pair[0, 5] = [40, 90, 0.9]
    assert select_track([lone, pair, lone]).person_index.tolist() == [-1, 0, -1]
    with pytest.raises(InputError, match="track 1 does not exist"):
        select_track([np.zeros((0, 17, 3))], track=1)


def coco_result(pts, image_id, score=0.9, **extra):
    return {"image_id": image_id, "category_id": 1, "keypoints": np.asarray(pts[:17]).ravel().tolist(),
            "score": score, **extra}


def test_coco_results_json(tmp_path):
    rng = np.random.default_rng(4)
    ps = [person(rng, center=(300 + 4 * f, 250)) for f in range(4)]
    ps[2][:, 2] = 2.0  # ground-truth style visibility flag -> confidence 1
    ps[2][3, 2] = 0.0
    results = [coco_result(ps[f], image_id=100 + 2 * f) for f in (3, 0, 2, 1)]
    results.append(coco_result(person(rng, center=(900, 100), height=50), 102) | {"category_id": 2})  # not a person
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert detect_format(path) == "coco"
    seq = load_keypoints(path)
    assert seq.keypoints.shape == (4, 17, 3) and seq.feet is None
    np.testing.assert_allclose(seq.keypoints[:, :, :2], np.stack(ps)[:, :17, :2], atol=1e-4)
    assert seq.keypoints[2, 3, 2] == 0.0 and seq.keypoints[2, 0, 2] == 1.0
    assert seq.report.people_per_frame.tolist() == [1, 1, 1, 1]
    assert any("image_ids='frame'" in n for n in seq.report.notes)  # ids 100, 102, ... have gaps

    by_frame = load_keypoints(path, image_ids="frame")
    assert (by_frame.report.frames, by_frame.report.first_frame) == (7, 100)
    assert by_frame.report.missing_fraction == pytest.approx(3 / 7)
    np.testing.assert_allclose(by_frame.keypoints[6, :, :2], ps[3][:17, :2], atol=1e-4)

    mapped = load_keypoints(path, image_ids={100: 0, "102": 1, 104: 5, 106: 9})
    assert mapped.report.frames == 10
    np.testing.assert_allclose(mapped.keypoints[9, :, :2], ps[3][:17, :2], atol=1e-4)
    with pytest.raises(InputError, match="'image_id' value 106"):
        load_keypoints(path, image_ids={100: 0, 102: 1, 104: 2})


def test_coco_results_string_ids_sort_naturally(tmp_path):
    rng = np.random.default_rng(5)
    ps = [person(rng, center=(300 + 10 * f, 250)) for f in range(11)]
    results = [coco_result(ps[f], image_id=f"frame_{f}.jpg") for f in range(11)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results[::-1]))
    seq = load_keypoints(path)
    np.testing.assert_allclose(seq.keypoints[10, :, :2], ps[10][:17, :2], atol=1e-4)  # frame_10 after frame_9


def test_coco_results_bad_fields(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"image_id": 1, "keypoints": [0.0] * 50}]))
    with pytest.raises(InputError, match="result 0 field 'keypoints' has shape"):
        load_keypoints(path)
    path.write_text(json.dumps([{"image_id": 1, "score": 1.0}, {"image_id": 2}]))
    with pytest.raises(InputError, match="no field 'keypoints'"):
        load_keypoints(path, format="coco")


def test_plain_json_layouts(tmp_path):
    rng = np.random.default_rng(6)
    a, b, c = (person(rng, center=(300 + 3 * i, 250))[:17] for i in range(3))
    path = tmp_path / "kp.json"
    path.write_text(json.dumps({"keypoints": [a.tolist(), [], [b.tolist(), (b * 0.2).tolist()], None,
                                              c.ravel().tolist()]}))
    assert detect_format(path) == "json"
    seq = load_keypoints(path)
    assert seq.keypoints.shape == (5, 17, 3)
    np.testing.assert_allclose(seq.keypoints[[0, 2, 4]], np.stack([a, b, c]), atol=1e-4)
    assert seq.report.people_per_frame.tolist() == [1, 0, 2, 0, 1]
    assert seq.report.missing_fraction == pytest.approx(2 / 5)

    listed = tmp_path / "frames.json"
    listed.write_text(json.dumps([{"frame": 0, "keypoints": a.tolist()}, {"frame": 3, "keypoints": c.tolist()}]))
    seq = load_keypoints(listed)
    assert seq.report.frames == 4
    np.testing.assert_allclose(seq.keypoints[3], c, atol=1e-4)

    path.write_text(json.dumps({"keypoints": [a[:, :2].tolist()]}))
    with pytest.raises(InputError, match="frame 0 field 'keypoints' has shape \\(17, 2\\).*confidence column"):
        load_keypoints(path)
    path.write_text(json.dumps({"points": []}))
    with pytest.raises(InputError, match="no field 'keypoints'"):
        load_keypoints(path)


def test_arrays_npz_npy(tmp_path):
    rng = np.random.default_rng(7)
    kp = np.stack([person(rng, center=(300 + f, 250))[:17] for f in range(8)]).astype(np.float32)
    kp[3, :, 2] = 0.0  # undetected frame
    kp[5, 4, 0] = np.nan
    kp[6, 7, 1] = np.inf
    np.savez(tmp_path / "kp.npz", keypoints=kp, other=np.zeros(3))
    seq = load_keypoints(tmp_path / "kp.npz")
    assert seq.report.format == "array" and seq.report.frames == 8
    assert seq.report.nonfinite_count == 2 and any("NaN/inf" in n for n in seq.report.notes)
    assert np.all(np.isfinite(seq.keypoints))
    assert seq.keypoints[5, 4].tolist() == [0, 0, 0] and seq.keypoints[6, 7, 2] == 0
    assert seq.report.missing_fraction == pytest.approx(1 / 8)
    np.testing.assert_allclose(seq.keypoints[0], kp[0])

    np.save(tmp_path / "kp.npy", kp[:, None].repeat(2, axis=1) * np.array([1, 1, 0.5], np.float32))
    multi = load_keypoints(tmp_path / "kp.npy")  # (F, P, 17, 3): two identical people
    assert multi.report.people_per_frame.tolist() == [2, 2, 2, 0, 2, 2, 2, 2]

    np.savez(tmp_path / "single.npz", poses2d=kp)
    assert load_keypoints(tmp_path / "single.npz").keypoints.shape == (8, 17, 3)


def test_array_shape_errors_name_the_field_and_fix(tmp_path):
    np.savez(tmp_path / "k18.npz", keypoints=np.zeros((10, 18, 3)))
    with pytest.raises(InputError) as exc:
        load_keypoints(tmp_path / "k18.npz")
    msg = str(exc.value)
    assert "k18.npz: field 'keypoints' has shape (10, 18, 3)" in msg
    assert "expected (F, 17, 3) COCO-17 [x, y, confidence]" in msg and "--keypoint-format openpose" in msg
    np.savez(tmp_path / "k2.npz", keypoints=np.zeros((10, 17, 2)))
    with pytest.raises(InputError, match="'keypoints' has shape \\(10, 17, 2\\).*confidence column"):
        load_keypoints(tmp_path / "k2.npz")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 17, 3)), b=np.zeros(2))
    with pytest.raises(InputError, match="no field 'keypoints' \\(fields: a, b\\)"):
        load_keypoints(tmp_path / "two.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="text.npz: holds text, not numpy arrays"):
        load_keypoints(tmp_path / "text.npz")


def test_openpose_arrays_with_format_override(tmp_path):
    rng = np.random.default_rng(8)
    ps = [person(rng) for _ in range(3)]
    body25 = np.stack([np.asarray(to_openpose(p)).reshape(25, 3) for p in ps])
    np.savez(tmp_path / "b25.npz", keypoints=body25)
    seq = load_keypoints(tmp_path / "b25.npz", format="openpose")
    np.testing.assert_allclose(seq.keypoints, np.stack(ps)[:, :17], atol=1e-6)
    np.testing.assert_allclose(seq.feet, np.stack(ps)[:, 17:], atol=1e-6)
    with pytest.raises(InputError, match="--keypoint-format openpose"):
        load_keypoints(tmp_path / "b25.npz")


def test_detection_and_path_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_keypoints(tmp_path / "nope.json")
    (tmp_path / "kp.txt").write_text("1 2 3")
    with pytest.raises(InputError, match="unknown keypoint file type '.txt'.*--keypoint-format"):
        load_keypoints(tmp_path / "kp.txt")
    with pytest.raises(InputError, match="unknown keypoint format 'mmpose'"):
        load_keypoints(tmp_path / "kp.txt", format="mmpose")
