"""Preview of a refinement: the footage (or a plain background) with the detected keypoints and the
estimated skeletons reprojected, drawn with OpenCV.

``write_preview(path, result, obs, footage=None, ...)``  writes a video (.mp4 mp4v, or .avi MJPG).
    Single view: two panels side by side, the initial estimate (left) and the refined motion
    (right), each over the footage with the detected keypoints (yellow rings, thicker when
    confident) and the estimate's COCO-17 skeleton (left limbs blue, right orange, centre green).
    Several views (multi-view results): one panel per view with the refined skeleton, up to four a row.
``preview_frame(result, obs, frame, ...)``  the same picture for one frame, a BGR array.
``preview_frame_png(path, result, obs, frame, ...)``  that picture as a PNG.

``result`` is an OUT dict (engine result or ``read_results``): ``keypoints3d`` (F,17,3) or (V,F,17,3)
camera frame, ``init_joints`` (F,24,3), ``reprojection_error_px`` / ``init_reprojection_error_px``.
``obs`` is an OBS dict (validated or raw): ``keypoints`` (F,17,3)|(V,F,17,3), ``image_size``,
optional ``focal_length``, ``principal_point``, ``fps``.  The initial estimate is drawn from
``init_keypoints3d`` (F,17,3) when given (COCO skeleton, like the refined one), else from the
result's ``init_joints`` (SMPL-24 skeleton).  ``silhouette`` adds the posed mesh as a tinted
overlay: (F,N,3) camera-frame vertices of the refined body (``posed_vertices`` makes them), with
the result's ``faces``.  ``crop=True`` shows only the region around the person (enlarged).

Outputs are written to a temp file beside the destination and renamed into place; an existing
file is kept unless ``force``.  Problems raise InputError (one line, with the fix).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.contract.layout import COCO17_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS
from backend.contract.errors import InputError
from backend.contract.results import _atomic_write, check_writable, replacing

__all__ = ["COCO17_EDGES", "SMPL24_EDGES", "Layer", "project_points", "posed_vertices", "crop_box", "preview_frame",
           "iter_preview", "write_preview", "preview_frame_png"]

_I = {n: i for i, n in enumerate(COCO17_NAMES)}
COCO17_EDGES = tuple((_I[a], _I[b]) for a, b in (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
    ("right_eye", "right_ear"), ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
))
SMPL24_EDGES = tuple((p, j) for j, p in enumerate(SMPL_PARENTS) if p >= 0)
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
BACKGROUND = (46, 46, 46)             # BGR, when there is no footage
LEFT, RIGHT, CENTRE = (235, 140, 40), (40, 150, 250), (90, 200, 90)  # BGR
DETECTION, OUTLINE = (60, 230, 255), (20, 20, 20)                      # yellow rings, dark edges
SILHOUETTE = (200, 120, 230)
SILHOUETTE_ALPHA = 0.35
SUBPIXEL = 4                           # cv2 shift bits: draw at 1/16 px
CROP_MARGIN = 0.12                     # crop=True: room around the person, fraction of their box per side
CROP_MIN_ASPECT = 0.75                 # crop=True: the region is at least 3:4 (w:h)
CROP_ZOOM = 1.5                        # crop=True: panel height / image height
MAX_COLUMNS = 4                        # panels per row


@dataclass
class Layer:
    """One estimate to draw in a panel: camera-frame points (F,K,3), K = 17 (COCO) or 24 (SMPL joints)."""
    label: str
    points3d: np.ndarray
    errors_px: np.ndarray | None = None      # (F,) mean reprojection error, shown in the label
    vertices: np.ndarray | None = None       # (F,N,3) camera frame, drawn as a silhouette with ``faces``
    faces: np.ndarray | None = None


def project_points(points: np.ndarray, focal: float, principal) -> np.ndarray:
    """Pinhole projection (OpenCV camera frame) of (..., 3) points -> (..., 2) px; NaN where z <= 1 cm."""
    p = np.asarray(points, np.float64)
    z = p[..., 2:3]
    uv = focal * p[..., :2] / np.where(z > 0.01, z, np.nan) + np.asarray(principal, np.float64)
    return uv


def posed_vertices(result: dict, body_model, chunk: int = 64) -> np.ndarray:
    """Camera-frame mesh vertices (..., N, 3) float32 of a result's SMPL parameters (leading dims (F,) or (V,F))."""
    import torch

    from backend.body.body_model import pose_to_rotmats

    lead = np.shape(result["global_orient"])[:-1]
    n = int(np.prod(lead))
    dev = body_model.joint_template.device
    t = lambda x: torch.tensor(np.asarray(x, np.float64).reshape(n, -1), dtype=body_model.dtype, device=dev)
    go, pose, transl = t(result["global_orient"]), t(result["body_pose"]), t(result["transl"])
    betas = t(np.broadcast_to(np.asarray(result["betas"]).reshape(-1, 10), (n, 10)) if np.size(result["betas"]) == 10
              else result["betas"])
    out = []
    with torch.no_grad():
        for s in range(0, n, chunk):
            sl = slice(s, s + chunk)
            verts = body_model(pose_to_rotmats(go[sl], pose[sl]), betas[sl], transl[sl]).vertices
            out.append(verts.cpu().numpy().astype(np.float32))
    return np.concatenate(out).reshape(*lead, -1, 3)


# -- inputs ------------------------------------------------------------------------------------------
def _camera(obs: dict) -> dict:
    """OBS (validated or raw) -> keypoints (V,F,17,3), image_size (V,2), focal (V,), principal (V,2)."""
    from backend.contract.observations import focal_from_fov

    if "keypoints" not in obs or "image_size" not in obs:
        raise InputError("the preview needs the observations' 'keypoints' and 'image_size'; pass the OBS arrays")
    kp = np.asarray(obs["keypoints"], np.float64)
    kp = kp[None] if kp.ndim == 3 else kp
    v = kp.shape[0]
    size = np.broadcast_to(np.asarray(obs["image_size"], np.float64).reshape(-1, 2), (v, 2))
    focal = (np.broadcast_to(np.asarray(obs["focal_length"], np.float64).reshape(-1), (v,))
             if "focal_length" in obs else focal_from_fov(size))
    pp = (np.broadcast_to(np.asarray(obs["principal_point"], np.float64).reshape(-1, 2), (v, 2))
          if "principal_point" in obs else size / 2)
    kp = np.where(np.isfinite(kp).all(-1, keepdims=True), kp, 0.0)
    return dict(keypoints=kp, image_size=size, focal=focal, principal=pp)


def _per_view(x, v: int, tail: int) -> np.ndarray | None:
    """Result array (F,*T) or (V,F,*T) -> (V,F,*T), where T are the ``tail`` trailing dims."""
    if x is None:
        return None
    x = np.asarray(x)
    return x.reshape(v, -1, *x.shape[x.ndim - tail:])


def _layers(result: dict, v: int, init_keypoints3d, silhouette) -> list[Layer]:
    """One layer per panel: single view [initial, refined], several views the refined one per view."""
    if "keypoints3d" not in result:
        raise InputError("the result has no 'keypoints3d'; pass an OUT.npz written by the engine")
    refined = _per_view(result["keypoints3d"][..., :17, :], v, 2)
    errors = _per_view(result.get("reprojection_error_px"), v, 0)
    faces = result.get("faces")
    sil = None if silhouette is None else _per_view(silhouette, v, 2)
    if sil is not None and faces is None:
        raise InputError("a silhouette needs the result's 'faces'; pass a full OUT.npz result")
    per_view = lambda x, i: None if x is None else x[i]
    refined_layers = [Layer("refined (ScoreHMR)" if v == 1 else f"view {i}: refined", refined[i],
                            per_view(errors, i), per_view(sil, i), faces) for i in range(v)]
    if v > 1:
        return refined_layers
    init_pts = init_keypoints3d if init_keypoints3d is not None else result.get("init_joints")
    if init_pts is None:
        raise InputError("the result has no 'init_joints'; pass an OUT.npz written by the engine")
    init_err = _per_view(result.get("init_reprojection_error_px"), 1, 0)
    init = Layer("initial estimate", np.asarray(init_pts).reshape(len(refined[0]), -1, 3), per_view(init_err, 0))
    return [init, *refined_layers]


# -- drawing -----------------------------------------------------------------------------------------
def _colour(a: int, b: int, k: int):
    """Bone colour by side: both ends left, both right, or else centre."""
    names = COCO17_NAMES if k == 17 else SMPL_JOINT_NAMES
    sides = {n.split("_")[0] if n.startswith(("left_", "right_")) else "centre" for n in (names[a], names[b])}
    return LEFT if sides == {"left"} else RIGHT if sides == {"right"} else CENTRE


@dataclass(frozen=True)
class _Window:
    """The image region [x0, x0 + w) x [y0, y0 + h) a panel shows, drawn ``scale`` times larger."""
    x0: int
    y0: int
    w: int
    h: int
    scale: float

    def panel(self, uv: np.ndarray) -> np.ndarray:
        """Image pixels (..., 2) -> panel pixels."""
        return (np.asarray(uv, np.float64) - (self.x0, self.y0)) * self.scale

    @property
    def size(self) -> tuple[int, int]:
        return max(1, round(self.w * self.scale)), max(1, round(self.h * self.scale))


def _pt(xy, win: _Window) -> tuple[int, int]:
    x, y = win.panel(xy) * (1 << SUBPIXEL)
    return round(float(x)), round(float(y))


def _draw_silhouette(img, uv: np.ndarray, faces: np.ndarray, win: _Window) -> None:
    import cv2

    tri = win.panel(uv)[faces]                                   # (C,3,2)
    ok = np.isfinite(tri).all((1, 2))
    if not ok.any():
        return
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, np.round(tri[ok] * (1 << SUBPIXEL)).astype(np.int32), 255, lineType=cv2.LINE_8,
                 shift=SUBPIXEL)
    sel = mask > 0
    img[sel] = (img[sel] * (1 - SILHOUETTE_ALPHA) + np.array(SILHOUETTE) * SILHOUETTE_ALPHA).astype(np.uint8)


def _draw_skeleton(img, uv: np.ndarray, win: _Window) -> None:
    import cv2

    k = uv.shape[0]
    edges = COCO17_EDGES if k == 17 else SMPL24_EDGES
    width = max(1, round(img.shape[0] / 150))  # ~2 px at 360 px high
    for a, b in edges:
        if np.isfinite(uv[[a, b]]).all():
            cv2.line(img, _pt(uv[a], win), _pt(uv[b], win), _colour(a, b, k), width, cv2.LINE_AA, SUBPIXEL)
    for j in range(k):
        if np.isfinite(uv[j]).all():
            cv2.circle(img, _pt(uv[j], win), width << SUBPIXEL, OUTLINE, -1, cv2.LINE_AA, SUBPIXEL)


def _draw_detections(img, kp: np.ndarray, win: _Window) -> None:
    """Rings at the detected points (thicker: confidence above 0.5); missing points are left out."""
    import cv2

    r = max(4, round(img.shape[0] / 70))
    for x, y, c in kp:
        if c > 0:
            centre = _pt((x, y), win)
            cv2.circle(img, centre, r << SUBPIXEL, OUTLINE, 3, cv2.LINE_AA, SUBPIXEL)
            cv2.circle(img, centre, r << SUBPIXEL, DETECTION, 1 + round(c), cv2.LINE_AA, SUBPIXEL)


def _header(width: int, text: str) -> np.ndarray:
    """A dark label strip as wide as its panel; its height follows the panel's width."""
    import cv2

    h = int(np.clip(round(width / 30), 16, 32))
    strip = np.full((h, width, 3), 24, np.uint8)
    cv2.putText(strip, text, (6, h - h // 4), cv2.FONT_HERSHEY_SIMPLEX, h / 40, (235, 235, 235), 1, cv2.LINE_AA)
    return strip


def _panel(background: np.ndarray, detected: np.ndarray, layer: Layer, f: int, cam: dict, v: int,
           win: _Window, first_frame: int = 0) -> np.ndarray:
    """One view's picture of result frame f; the header names the footage frame (f + first_frame)."""
    img = background.copy()
    focal, pp = cam["focal"][v], cam["principal"][v]
    if layer.vertices is not None:
        _draw_silhouette(img, project_points(layer.vertices[f], focal, pp), layer.faces, win)
    _draw_detections(img, detected, win)
    _draw_skeleton(img, project_points(layer.points3d[f], focal, pp), win)
    err = "" if layer.errors_px is None or not np.isfinite(layer.errors_px[f]) else \
        f"  {float(layer.errors_px[f]):.1f} px"
    return np.vstack([_header(img.shape[1], f"{layer.label}{err}   frame {f + first_frame}"), img])


def _columns(panels: int) -> int:
    return min(panels, MAX_COLUMNS)


def _grid(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in rows of up to MAX_COLUMNS, each padded to the largest tile."""
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    pad = lambda t: np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0)))
    cols = _columns(len(tiles))
    tiles = [pad(t) for t in tiles] + [np.zeros((h, w, 3), np.uint8)] * (-len(tiles) % cols)
    return np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])


def _backgrounds(windows: list[_Window], frames: int, footage, first_frame: int) -> Iterator[list[np.ndarray]]:
    """Per frame, per view the background at panel size: the footage's window (view 0 only) or plain."""
    import cv2

    from backend.io.footage import iter_frames

    plain = [np.full((w.size[1], w.size[0], 3), BACKGROUND, np.uint8) for w in windows]
    video = iter_frames(footage, first_frame, first_frame + frames) if footage is not None else (x for x in ())
    win = windows[0]
    try:
        for _ in range(frames):
            got = next(video, None)
            views = list(plain)
            if got is not None:
                crop = got[1][win.y0:win.y0 + win.h, win.x0:win.x0 + win.w]
                views[0] = crop if crop.shape[1::-1] == win.size else \
                    cv2.resize(crop, win.size, interpolation=cv2.INTER_AREA if win.scale < 1 else cv2.INTER_LINEAR)
            yield views
    finally:
        video.close()


def crop_box(keypoints: np.ndarray, image_size, margin: float = CROP_MARGIN,
             min_aspect: float = CROP_MIN_ASPECT) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) integer image region around every confident keypoint (F,17,3) of the clip: their box
    grown by ``margin`` of its size per side, at least ``min_aspect`` wide (w/h), inside the image."""
    W, H = (float(x) for x in image_size)
    seen = keypoints[..., 2] > 0
    if not seen.any():
        return 0, 0, int(W), int(H)
    pts = keypoints[..., :2][seen]
    lo, hi = pts.min(0), pts.max(0)
    w, h = np.maximum((hi - lo) * (1 + 2 * margin), 16.0)
    w = max(w, min_aspect * h)
    w, h = min(w, W), min(h, H)
    cx, cy = (lo + hi) / 2
    x0, y0 = np.clip(cx - w / 2, 0, W - w), np.clip(cy - h / 2, 0, H - h)
    return int(np.floor(x0)), int(np.floor(y0)), round(float(w)), round(float(h))


def _windows(cam: dict, panels: int, max_width: int | None, crop: bool) -> list[_Window]:
    """Per view the region shown and its scale.  Whole images: every panel as wide as the widest view.
    ``crop``: the region around the person, CROP_ZOOM x the image height tall.  The grid fits max_width."""
    sizes = cam["image_size"]
    cols = _columns(panels)
    if crop:
        boxes = [crop_box(cam["keypoints"][v], sizes[v]) for v in range(len(sizes))]
        scales = np.array([CROP_ZOOM * sizes[:, 1].max() / h for _, _, _, h in boxes])
    else:
        boxes = [(0, 0, int(w), int(h)) for w, h in sizes]
        scales = sizes[:, 0].max() / sizes[:, 0]
    widest = max(w * s for (_, _, w, _), s in zip(boxes, scales))
    if max_width and cols * widest > max_width:
        scales = scales * max_width / (cols * widest)
    return [_Window(x0, y0, w, h, float(s)) for (x0, y0, w, h), s in zip(boxes, scales)]


def iter_preview(result: dict, obs: dict, footage=None, *, init_keypoints3d=None, silhouette=None,
                 first_frame: int = 0, frames=None, max_width: int | None = 1920,
                 crop: bool = False) -> Iterator[np.ndarray]:
    """Yields the preview picture (BGR uint8) of each frame in ``frames`` (default all), in frame order.

    ``crop``: show only the region around the person (every detection of the clip, see ``crop_box``),
    enlarged to CROP_ZOOM x the image height."""
    cam = _camera(obs)
    v, f = cam["keypoints"].shape[:2]
    layers = _layers(result, v, init_keypoints3d, silhouette)
    for layer in layers:
        if len(layer.points3d) != f:
            raise InputError(f"the result has {len(layer.points3d)} frames but the observations {f}; pass the "
                             f"observations the result was refined from")
    windows = _windows(cam, len(layers), max_width, crop)
    wanted = set(range(f) if frames is None else frames)
    bad = sorted(i for i in wanted if not 0 <= i < f)
    if bad:
        raise InputError(f"frame {bad[0]} is outside the result's frames 0..{f - 1}; pick a frame in that range")
    stop = max(wanted) + 1 if wanted else 0
    view_of = [0] * len(layers) if v == 1 else list(range(v))  # each panel's view
    for i, views in enumerate(_backgrounds(windows, stop, footage, first_frame)):
        if i in wanted:
            yield _grid([_panel(views[j], cam["keypoints"][j, i], layer, i, cam, j, windows[j], first_frame)
                         for j, layer in zip(view_of, layers)])


def preview_frame(result: dict, obs: dict, frame: int, footage=None, **kw) -> np.ndarray:
    """The preview picture (BGR uint8) of one frame."""
    return next(iter_preview(result, obs, footage, frames=[frame], **kw))


# -- writing -----------------------------------------------------------------------------------------
def _target(path, force: bool) -> Path:
    path = Path(path)
    if path.suffix.lower() not in CODECS:
        raise InputError(f"unsupported video type '{path.suffix}'; name the preview .mp4 or .avi", path)
    if path.is_dir():
        raise InputError("is a folder; give a file name for the preview, e.g. out/preview.mp4", path)
    if path.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it, or choose another preview path", path)
    check_writable(path.parent)
    return path


def write_preview(path, result: dict, obs: dict, footage=None, *, fps: float | None = None, force: bool = False,
                  progress: bool = True, **kw) -> Path:
    """Writes the preview video (see module docstring) atomically; returns its path.

    ``fps``: default the observations' ``fps``, else the result's, else 30.  Other keywords as
    :func:`iter_preview` (init_keypoints3d, silhouette, first_frame, max_width, crop)."""
    import cv2
    from tqdm import tqdm

    path = _target(path, force)
    fps = float(fps or obs.get("fps") or result.get("fps") or 30.0)
    frames = iter_preview(result, obs, footage, **kw)
    first = next(frames)  # checks the inputs before any file is created
    total = _camera(obs)["keypoints"].shape[1]
    with replacing(path, suffix=path.suffix) as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*CODECS[path.suffix.lower()]), fps,
                                 (first.shape[1], first.shape[0]))
        if not writer.isOpened():
            raise InputError(f"OpenCV cannot write {path.suffix} video here (no encoder); name the preview "
                             f".avi instead", path)
        try:
            with tqdm(total=total, desc="preview", unit="frame", disable=not progress, mininterval=1.0) as bar:
                for img in _chain(first, frames):
                    writer.write(img)
                    bar.update(1)
        finally:
            writer.release()
    return path


def _chain(first, rest):
    yield first
    yield from rest


def preview_frame_png(path, result: dict, obs: dict, frame: int, footage=None, *, force: bool = False,
                      **kw) -> Path:
    """Writes one frame's preview picture as a PNG (atomically); returns its path."""
    import cv2

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError("the frame picture is written as PNG; name it .png", path)
    if path.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it, or choose another path", path)
    ok, buf = cv2.imencode(".png", preview_frame(result, obs, frame, footage, **kw))
    if not ok:
        raise InputError("OpenCV could not encode the picture as PNG", path)
    return _atomic_write(path, lambda fh: fh.write(buf.tobytes()), force)
