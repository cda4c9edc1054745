"""backend.io.preview: what is drawn where, the footage underneath, and atomic writing."""
import cv2
import numpy as np
import pytest
import torch

from backend.io import preview
from backend.contract.errors import InputError
from backend.io.footage import probe

W, H, FOCAL, PP = 160, 90, 100.0, (80.0, 45.0)
FRAMES = 4


def header_height(width=W):
    return preview._header(width, "x").shape[0]


def uv(points):
    return preview.project_points(points, FOCAL, PP)


def scene(frames=FRAMES, seed=0):
    """A result and OBS with known geometry: refined COCO points on a ring at 3 m, SMPL-24 init joints
    on a smaller ring, detections off to the side of both."""
    rng = np.random.default_rng(seed)
    a = np.linspace(0, 2 * np.pi, 17, endpoint=False)
    refined = np.stack([0.9 * np.cos(a), 0.45 * np.sin(a), np.full(17, 3.0)], -1)
    b = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    init = np.stack([0.4 * np.cos(b), 0.2 * np.sin(b), np.full(24, 3.0)], -1)
    kp = np.zeros((frames, 17, 3))
    kp[:, :, 0] = 10 + 8 * np.arange(17)          # a row of detections along the top
    kp[:, :, 1] = 8
    kp[:, :, 2] = 1.0
    kp[:, 16, 2] = 0.0                             # one missing point
    result = dict(keypoints3d=np.repeat(refined[None], frames, 0) + rng.normal(0, 1e-4, (frames, 17, 3)),
                  init_joints=np.repeat(init[None], frames, 0),
                  reprojection_error_px=np.arange(frames, dtype=np.float64),
                  init_reprojection_error_px=np.full(frames, 9.0), fps=np.float64(24.0))
    obs = dict(keypoints=kp, image_size=np.array([W, H]), focal_length=np.float64(FOCAL),
               principal_point=np.array(PP), fps=24.0)
    return result, obs


def write_video(path, colours, size=(W, H), fps=24.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for c in colours:
        writer.write(np.full((size[1], size[0], 3), c, np.uint8))
    writer.release()
    return path


def pixel(img, xy, panel, width=W):
    """BGR of panel ``panel`` (0 left, 1 right) at image point xy (x, y) px."""
    x, y = round(float(xy[0])), round(float(xy[1]))
    return img[header_height(width) + y, panel * width + x].astype(int)


def test_project_points_is_the_pinhole_and_hides_points_behind():
    pts = np.array([[0.3, -0.2, 2.0], [0.0, 0.0, -1.0]])
    out = preview.project_points(pts, 500.0, (320.0, 240.0))
    assert np.allclose(out[0], [320 + 500 * 0.15, 240 - 500 * 0.1])
    assert np.isnan(out[1]).all()


def test_frame_draws_both_estimates_and_the_detections_where_they_project():
    result, obs = scene()
    img = preview.preview_frame(result, obs, 1)
    assert img.shape == (H + header_height(), 2 * W, 3)
    refined_uv, init_uv = uv(result["keypoints3d"][1]), uv(result["init_joints"][1])
    outline = np.array(preview.OUTLINE)
    for j in (0, 4, 9):  # joint dots sit on the projections: refined right, initial (SMPL-24) left
        assert np.abs(pixel(img, refined_uv[j], 1) - outline).max() < 40
        assert np.abs(pixel(img, init_uv[2 * j], 0) - outline).max() < 40
    assert np.array_equal(pixel(img, refined_uv[0], 0), preview.BACKGROUND)  # each panel its own estimate
    # Detections: a ring (yellow) around each confident point, its centre left clear; none for the missing one.
    r = max(4, round(H / 70))
    for panel in (0, 1):
        for j in (0, 7):
            x, y = obs["keypoints"][1, j, :2]
            assert np.abs(pixel(img, (x, y + r), panel) - np.array(preview.DETECTION)).max() < 60
            assert np.array_equal(pixel(img, (x, y), panel), preview.BACKGROUND)
        x, y = obs["keypoints"][1, 16, :2]
        assert np.array_equal(pixel(img, (x, y + r), panel), preview.BACKGROUND)
    # Far from every drawing: the plain background.
    assert np.array_equal(pixel(img, (W - 3, H - 3), 0), preview.BACKGROUND)


def test_initial_keypoints_give_the_left_panel_the_coco_skeleton():
    result, obs = scene()
    init_kp = result["keypoints3d"] * np.array([0.5, 0.5, 1.0])
    img = preview.preview_frame(result, obs, 0, init_keypoints3d=init_kp)
    for j in (2, 11):
        assert np.abs(pixel(img, uv(init_kp[0, j]), 0) - np.array(preview.OUTLINE)).max() < 40


def test_footage_frames_are_the_background_in_order(tmp_path):
    result, obs = scene()
    colours = [(40 * i + 20, 90, 200) for i in range(FRAMES + 2)]
    video = write_video(tmp_path / "clip.mp4", colours)
    frames = list(preview.iter_preview(result, obs, video, first_frame=1))
    assert len(frames) == FRAMES
    for i, img in enumerate(frames):
        for panel in (0, 1):
            assert np.abs(pixel(img, (W - 3, H - 3), panel) - np.array(colours[i + 1])).max() < 12


def test_a_short_footage_leaves_the_plain_background_after_its_end(tmp_path):
    result, obs = scene()
    video = write_video(tmp_path / "short.mp4", [(0, 200, 0)] * 2)
    frames = list(preview.iter_preview(result, obs, video))
    assert np.abs(pixel(frames[1], (W - 3, H - 3), 1) - np.array([0, 200, 0])).max() < 12
    assert np.array_equal(pixel(frames[3], (W - 3, H - 3), 1), preview.BACKGROUND)


def test_silhouette_tints_the_inside_of_the_mesh_only():
    result, obs = scene()
    tri = np.array([[-0.5, -0.3, 3.0], [0.5, -0.3, 3.0], [0.0, 0.4, 3.0]])
    result["faces"] = np.array([[0, 1, 2]])
    img = preview.preview_frame(result, obs, 0, silhouette=np.repeat(tri[None], FRAMES, 0))
    inside, outside = uv(np.array([0.0, -0.1, 3.0])), uv(np.array([0.0, -0.8, 3.0]))
    tint = (1 - preview.SILHOUETTE_ALPHA) * np.array(preview.BACKGROUND) + \
        preview.SILHOUETTE_ALPHA * np.array(preview.SILHOUETTE)
    assert np.abs(pixel(img, inside, 1) - tint).max() <= 1
    assert np.array_equal(pixel(img, outside, 1), preview.BACKGROUND)
    assert np.array_equal(pixel(img, inside, 0), preview.BACKGROUND)  # the initial estimate has no mesh


def test_several_views_make_a_row_of_equal_width_tiles():
    result, obs = scene()
    v = 3
    obs = dict(keypoints=np.repeat(obs["keypoints"][None], v, 0), image_size=np.array([[W, H], [2 * W, 2 * H],
                                                                                         [W, 2 * H]]),
               focal_length=np.array([FOCAL, 2 * FOCAL, FOCAL]), principal_point=np.array([PP, (W, H), (W / 2, H)]))
    result = {k: np.repeat(np.asarray(x)[None], v, 0) if np.ndim(x) else x for k, x in result.items()}
    img = preview.preview_frame(result, obs, 0, max_width=None)
    tile_w = 2 * W  # the widest view sets the tile width
    tile_h = header_height(tile_w) + 2 * (2 * H)  # view 2 (W x 2H) scaled by 2
    assert img.shape == (tile_h, 3 * tile_w, 3)


def test_crop_box_frames_every_detection_with_a_margin_inside_the_image():
    kp = np.zeros((3, 17, 3))
    kp[:2, :, 2] = 1.0
    kp[0, :, :2] = (100, 50)
    kp[1, :, :2] = (120, 150)       # the clip's detections span x 100-120, y 50-150
    kp[2, :, :2] = (600, 10)        # not confident: ignored
    x0, y0, w, h = preview.crop_box(kp, (640, 360), margin=0.1, min_aspect=0.75)
    assert (w, h) == (90, 120) and (x0, y0) == (65, 40)  # 100 px tall + 10 % per side, 3:4 wide, centred
    assert preview.crop_box(kp, (640, 100), margin=0.1) == (65, 0, 90, 100)  # clamped to the image height
    assert preview.crop_box(np.zeros((2, 17, 3)), (640, 360)) == (0, 0, 640, 360)


def test_a_cropped_preview_draws_in_the_enlarged_region(tmp_path):
    result, obs = scene()
    obs["keypoints"][..., :2] = uv(result["keypoints3d"]) + 3.0  # detections near the body: the crop holds it
    video = write_video(tmp_path / "clip.mp4", [(0, 120, 0)] * FRAMES)
    img = preview.preview_frame(result, obs, 1, video, crop=True, max_width=None)
    x0, y0, w, h = preview.crop_box(obs["keypoints"], (W, H))
    s = preview.CROP_ZOOM * H / h
    pw, ph = round(w * s), round(h * s)
    head = preview._header(pw, "x").shape[0]
    assert img.shape == (head + ph, 2 * pw, 3)
    x, y = (uv(result["keypoints3d"][1, 4]) - (x0, y0)) * s
    assert np.abs(img[head + round(y), pw + round(x)].astype(int) - np.array(preview.OUTLINE)).max() < 40
    assert np.abs(img[head + ph - 2, 2].astype(int) - np.array([0, 120, 0])).max() < 12  # the footage, enlarged


def test_posed_vertices_is_the_body_model_mesh():
    from backend.body.body_model import BodyModel, pose_to_rotmats

    bm = BodyModel.load()
    g = np.random.default_rng(3)
    res = dict(global_orient=g.normal(0, 0.3, (2, 3, 3)), body_pose=g.normal(0, 0.2, (2, 3, 69)),
               betas=g.normal(0, 1, 10), transl=g.normal(0, 1, (2, 3, 3)))
    verts = preview.posed_vertices(res, bm, chunk=4)
    assert verts.shape == (2, 3, bm.smpl.v_template.shape[0], 3)
    t = lambda x: torch.as_tensor(np.asarray(x, np.float64).reshape(-1, x.shape[-1]), dtype=bm.dtype)
    with torch.no_grad():
        ref = bm(pose_to_rotmats(t(res["global_orient"]), t(res["body_pose"])), t(res["betas"]),
                 t(res["transl"])).vertices.numpy()
    assert np.allclose(verts.reshape(ref.shape), ref, atol=1e-5)


def test_write_preview_makes_a_playable_video_and_nothing_else(tmp_path):
    result, obs = scene()
    out = preview.write_preview(tmp_path / "p.mp4", result, obs, progress=False)
    info = probe(out)
    assert (info.frame_count, info.width, info.height) == (FRAMES, 2 * W, H + header_height())
    assert info.fps == 24.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mp4"]


def test_an_existing_preview_is_kept_unless_forced(tmp_path):
    result, obs = scene()
    target, png = tmp_path / "p.mp4", tmp_path / "p.png"
    target.write_bytes(b"keep me")
    png.write_bytes(b"x")
    with pytest.raises(InputError, match="already exists; pass --force"):
        preview.write_preview(target, result, obs, progress=False)
    with pytest.raises(InputError, match="already exists"):
        preview.preview_frame_png(png, result, obs, 0)
    assert target.read_bytes() == b"keep me" and png.read_bytes() == b"x"
    preview.write_preview(target, result, obs, force=True, progress=False)
    assert probe(target).frame_count == FRAMES


@pytest.mark.parametrize("name, message", [("blocker/p.mp4", "is a file, not a folder"),
                                           ("p.gif", "name the preview .mp4 or .avi")])
def test_bad_destinations_are_refused_before_anything_is_written(tmp_path, name, message):
    result, obs = scene()
    (tmp_path / "blocker").write_text("a regular file")
    with pytest.raises(InputError, match=message):
        preview.write_preview(tmp_path / name, result, obs, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_failure_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    result, obs = scene()
    draw = preview._panel
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) > 4:  # frame 2 of 4 (two panels per frame)
            raise RuntimeError("disk full")
        return draw(*args)

    monkeypatch.setattr(preview, "_panel", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        preview.write_preview(tmp_path / "p.mp4", result, obs, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_png_is_the_frame_picture(tmp_path):
    result, obs = scene()
    path = preview.preview_frame_png(tmp_path / "f.png", result, obs, 2)
    assert np.array_equal(cv2.imread(str(path)), preview.preview_frame(result, obs, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_mismatched_inputs_are_explained():
    result, obs = scene()
    short = dict(obs, keypoints=obs["keypoints"][:3])
    with pytest.raises(InputError, match="the result has 4 frames but the observations 3"):
        preview.preview_frame(result, short, 0)
    with pytest.raises(InputError, match="frame 7 is outside"):
        preview.preview_frame(result, obs, 7)
    with pytest.raises(InputError, match="no 'keypoints3d'"):
        preview.preview_frame({"init_joints": result["init_joints"]}, obs, 0)
