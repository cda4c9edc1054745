"""Picture of a refined shot in Blender for the docs: the rig over the footage, and a 3/4 view.

    .venv/bin/python scripts/result_picture.py --blend out/demo/shot.blend --frame 40 --out docs/blender_result.png

Opens a .blend written by the main job (``make demo`` / ``python -m backend demo --out out/demo``
writes ``out/demo/shot.blend``: the SMPL armature with its action, the skinned body and the footage
camera whose background is the footage as a Movie Clip), and renders scene frame N twice with the
Workbench engine (EEVEE, then Cycles, if Workbench cannot render here):

- left: through the scene's footage camera with a transparent film at the footage's resolution,
  composited over the same footage frame read with OpenCV from the camera's background clip (the
  clip's first frame shows at scene frame ``clip.frame_start``, as the importer sets it), with the
  armature's joints projected through the same camera and drawn on top, and the importer's ground
  plane (the floor Z = 0) drawn as its 1 m grid seen through that camera;
- right: the same frame from a free camera at a 3/4 angle (added for the picture, never saved),
  standing on the importer's ground plane (or, in a .blend without one, a floor put under the feet),
  the armature drawn the same way.

Both side by side in one PNG (kept under 400 KB).  Nothing is written back to the .blend.
"""

import argparse
import math
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 400_000
BODY_COLOUR = (1.0, 0.42, 0.08)      # the mesh in the renders (linear RGB): orange against the footage's blue-grey body
OVERLAY_OPACITY = 0.6                # of the mesh over the footage
OUTLINE = (40, 140, 255)             # the rendered body's outline over the footage (BGR)
BACKGROUND = (57, 57, 57)            # behind the 3/4 view (Blender's viewport grey), RGB
SIDE_COLOURS = {"left": (255, 163, 79), "right": (106, 106, 255), "": (80, 230, 255)}  # BGR for OpenCV
FONT = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


class PictureError(Exception):
    """A one-line reason the picture cannot be made, with the fix."""


# -- the scene ----------------------------------------------------------------------------------

def find_scene_parts(scene):
    """(camera object, SMPL armature, body mesh objects, footage clip) of a Refine Motion .blend."""
    cam = scene.camera
    if cam is None or cam.type != 'CAMERA':
        raise PictureError("the .blend's scene has no camera: import the result with its footage camera")
    rigs = [o for o in scene.objects if o.type == 'ARMATURE' and "pelvis" in o.data.bones]
    if not rigs:
        raise PictureError("the .blend has no SMPL armature (an armature with a 'pelvis' bone)")
    rig = rigs[0]
    bodies = [o for o in scene.objects if o.type == 'MESH' and o.parent is rig]
    clip = next((b.clip for b in cam.data.background_images if b.source == 'MOVIE_CLIP' and b.clip), None)
    if clip is None:
        raise PictureError(f"camera '{cam.name}' shows no footage (no Movie Clip background image)")
    return cam, rig, bodies, clip


def footage_frame(clip, scene_frame):
    """The footage image (BGR) Blender shows behind the camera at ``scene_frame``: clip frame
    ``scene_frame - clip.frame_start + clip.frame_offset`` (0-based), read with OpenCV."""
    import cv2

    path = Path(bpy.path.abspath(clip.filepath))
    index = scene_frame - clip.frame_start + clip.frame_offset
    if not 0 <= index < clip.frame_duration:
        raise PictureError(f"scene frame {scene_frame} is outside the footage (clip frames start at scene "
                           f"frame {clip.frame_start}, {clip.frame_duration} frames)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise PictureError(f"cannot read the footage {path}")
    try:
        for _ in range(index):  # decode up to the frame: exact for any codec (seeking may not be)
            if not cap.grab():
                raise PictureError(f"{path} ends before frame {index}")
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok:
        raise PictureError(f"{path} ends before frame {index}")
    return image


# -- rendering ----------------------------------------------------------------------------------

def _engines():
    """The render engines this Blender has, Workbench first (the engine enum is dynamic: try each)."""
    render = bpy.context.scene.render
    before, found = render.engine, []
    for engine in ('BLENDER_WORKBENCH', 'BLENDER_EEVEE', 'BLENDER_EEVEE_NEXT', 'CYCLES'):
        try:
            render.engine = engine
            found.append(engine)
        except TypeError:
            pass
    render.engine = before
    return found


def set_up_render(scene, width, height):
    render = scene.render
    render.resolution_x, render.resolution_y = width, height
    render.resolution_percentage = 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    render.film_transparent = True
    render.use_compositing = False
    render.use_sequencer = False
    render.image_settings.file_format = 'PNG'
    render.image_settings.color_mode = 'RGBA'
    render.image_settings.color_depth = '8'
    scene.view_settings.view_transform = 'Standard'
    scene.view_settings.look = 'None'
    shading = scene.display.shading
    shading.light = 'STUDIO'
    shading.color_type = 'OBJECT'
    shading.show_cavity = True
    shading.show_shadows = False
    if hasattr(scene, "cycles"):
        scene.cycles.samples = 16
        scene.cycles.device = 'CPU'
    if hasattr(scene, "eevee"):
        scene.eevee.taa_render_samples = 16


def render(scene, camera, path, engines):
    """Renders the current frame through ``camera`` to ``path``; returns the engine that worked."""
    scene.camera = camera
    scene.render.filepath = str(path)
    errors = []
    for engine in engines:
        try:
            scene.render.engine = engine
            bpy.ops.render.render(write_still=True)
            if Path(path).is_file():
                return engine
            errors.append(f"{engine}: no image written")
        except (RuntimeError, TypeError) as ex:
            errors.append(f"{engine}: {ex}")
    raise PictureError("no render engine could render here: " + "; ".join(errors))


def read_rgba(path):
    import cv2
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.shape[2] != 4:
        raise PictureError(f"the render {path} is not an RGBA image")
    return image[..., :3].astype(np.float32), image[..., 3:].astype(np.float32) / 255.0


# -- the armature, drawn --------------------------------------------------------------------------

def project(scene, camera, points):
    """Pixel coordinates (x right, y down) of world ``points`` seen through ``camera``; None behind it."""
    from bpy_extras.object_utils import world_to_camera_view

    width, height = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in points:
        ndc = world_to_camera_view(scene, camera, Vector(p))
        out.append(None if ndc.z <= 0 else (ndc.x * width, (1.0 - ndc.y) * height))
    return out


def skeleton(rig):
    """[(bone name, joint position, parent joint position or None)] of the posed rig (world)."""
    m = rig.matrix_world
    return [(pb.name, m @ pb.head, (m @ pb.parent.head) if pb.parent else None) for pb in rig.pose.bones]


def draw_skeleton(image, scene, camera, rig):
    """The armature's joints and the links to their parents, projected through ``camera``."""
    import cv2

    bones = skeleton(rig)
    joints = project(scene, camera, [b[1] for b in bones])
    parents = project(scene, camera, [b[2] if b[2] is not None else b[1] for b in bones])
    scale = 16  # sub-pixel precision (shift=4) for anti-aliased lines

    def pt(p):
        return int(round(p[0] * scale)), int(round(p[1] * scale))

    for (name, _, parent), a, b in zip(bones, joints, parents):
        if parent is None or a is None or b is None:
            continue
        side = "left" if name.startswith("left") else "right" if name.startswith("right") else ""
        cv2.line(image, pt(a), pt(b), (20, 20, 20), 4, cv2.LINE_AA, shift=4)
        cv2.line(image, pt(a), pt(b), SIDE_COLOURS[side], 2, cv2.LINE_AA, shift=4)
    for (name, _, _), a in zip(bones, joints):
        if a is not None:
            cv2.circle(image, pt(a), 3 * scale, (20, 20, 20), -1, cv2.LINE_AA, shift=4)
            cv2.circle(image, pt(a), 2 * scale, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return image


def draw_outline(image, alpha):
    """The rendered body's silhouette outline (so the footage's body shows where they differ)."""
    import cv2

    mask = (alpha[..., 0] > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    image = np.ascontiguousarray(image)
    cv2.drawContours(image, contours, -1, OUTLINE, 1, cv2.LINE_AA)
    return image


# -- the free 3/4 camera ----------------------------------------------------------------------------

def body_points(bodies):
    """World positions of the posed bodies' vertices (the evaluated, skinned meshes)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    chunks = []
    for obj in bodies:
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        evaluated.to_mesh_clear()
        m = np.array(obj.matrix_world)
        co = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
        chunks.append(co)
    return np.concatenate(chunks)


GRID_COLOUR = (120, 255, 160)      # the floor's grid drawn over the footage (BGR)


def draw_floor_grid(image, scene, camera, ground, samples=40):
    """The ground plane's edges (its 1 m grid, world Z = 0) projected through ``camera``: each edge
    sampled, drawn where the samples are in front of the camera."""
    import cv2

    mesh, m = ground.data, ground.matrix_world
    for edge in mesh.edges:
        a, b = (m @ mesh.vertices[i].co for i in edge.vertices)
        pts = project(scene, camera, [a.lerp(b, t) for t in np.linspace(0.0, 1.0, samples)])
        for p, q in zip(pts, pts[1:]):
            if p is not None and q is not None:
                cv2.line(image, (int(round(p[0] * 16)), int(round(p[1] * 16))),
                         (int(round(q[0] * 16)), int(round(q[1] * 16))), GRID_COLOUR, 1, cv2.LINE_AA, shift=4)
    return image


def add_floor(scene, points, size=4.0):
    """A square floor under the body's lowest vertex (for the 3/4 view only)."""
    centre = points.mean(axis=0)
    z = points[:, 2].min()
    h = size / 2
    verts = [(centre[0] - h, centre[1] - h, z), (centre[0] + h, centre[1] - h, z),
             (centre[0] + h, centre[1] + h, z), (centre[0] - h, centre[1] + h, z)]
    mesh = bpy.data.meshes.new("docs_floor")
    mesh.from_pydata(verts, [], [(0, 1, 2, 3)])
    floor = bpy.data.objects.new("docs_floor", mesh)
    floor.color = (0.32, 0.32, 0.32, 1.0)
    scene.collection.objects.link(floor)
    return floor


def facing(rig):
    """The posed body's horizontal facing direction: (left hip - right hip) x up."""
    m = rig.matrix_world
    bones = rig.pose.bones
    if "left_hip" in bones and "right_hip" in bones:
        across = (m @ bones["left_hip"].head) - (m @ bones["right_hip"].head)
        ahead = across.cross(Vector((0.0, 0.0, 1.0)))
        ahead.z = 0.0
        if ahead.length > 1e-6:
            return ahead.normalized()
    return Vector((0.0, -1.0, 0.0))  # the rest pose faces -Y


def add_three_quarter_camera(scene, footage_camera, rig, points, azimuth_deg=45.0, elevation_deg=14.0, fill=0.8):
    """A camera looking at the body from ``azimuth_deg`` to the side of where it faces (the side
    away from the footage camera, for a view the footage does not give) and ``elevation_deg``
    above, as close as lets the body's box fill ``fill`` of the frame."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = Vector(((low + high) / 2).tolist())
    ahead = facing(rig)
    to_footage = footage_camera.matrix_world.translation - centre
    to_footage.z = 0.0

    def turned(deg):
        a = math.radians(deg)
        return Vector((ahead.x * math.cos(a) - ahead.y * math.sin(a), ahead.x * math.sin(a) + ahead.y * math.cos(a), 0))
    side = min((turned(azimuth_deg), turned(-azimuth_deg)), key=lambda v: v.dot(to_footage))
    el = math.radians(elevation_deg)
    direction = Vector((side.x * math.cos(el), side.y * math.cos(el), math.sin(el)))

    data = bpy.data.cameras.new("docs_three_quarter")
    data.lens, data.sensor_width, data.sensor_fit = 50.0, 36.0, 'HORIZONTAL'
    cam = bpy.data.objects.new("docs_three_quarter", data)
    scene.collection.objects.link(cam)
    corners = [(x, y, z) for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    width, height = scene.render.resolution_x, scene.render.resolution_y
    distance = 2.0
    for _ in range(40):  # back off until the body's box fills at most ``fill`` of the frame
        cam.location = centre + direction * distance
        cam.rotation_euler = (-direction).to_track_quat('-Z', 'Y').to_euler()
        bpy.context.view_layer.update()
        pts = [p for p in project(scene, cam, corners) if p is not None]
        extent = max(max(abs(x - width / 2) / (width / 2), abs(y - height / 2) / (height / 2)) for x, y in pts) \
            if len(pts) == len(corners) else 2.0
        if extent <= fill:
            break
        distance *= 1.08
    return cam


# -- the picture ----------------------------------------------------------------------------------

def titled(image_bgr, title, font_size=15):
    """The image with a title strip above it (PIL)."""
    from PIL import Image, ImageDraw, ImageFont

    strip = 30
    image = Image.fromarray(image_bgr[..., ::-1])
    out = Image.new("RGB", (image.width, image.height + strip), (29, 29, 29))
    out.paste(image, (0, strip))
    font = ImageFont.truetype(str(FONT), font_size)
    ImageDraw.Draw(out).text((8, strip / 2), title, fill=(230, 230, 230), font=font, anchor="lm")
    return out


def save_small(image, path, max_bytes=MAX_BYTES):
    """PNG under ``max_bytes``: as is if it fits, else with a 256-colour palette."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    if path.stat().st_size > max_bytes:
        from PIL import Image
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG) \
            .save(path, optimize=True)
    return path.stat().st_size


def ground_plane():
    """(the importer's ground plane object or None, its collection or None) (scene_setup.GROUND_NAME)."""
    sys.path.insert(0, str(ROOT))
    from scorehmr_blender.scene_setup import GROUND_NAME

    return bpy.data.objects.get(GROUND_NAME), bpy.data.collections.get(GROUND_NAME)


def make_picture(blend, frame, out):
    blend = Path(blend)
    if not blend.is_file():
        raise PictureError(f"{blend} not found: run `make demo` (or python -m backend demo --out out/demo) first")
    bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()))
    scene = bpy.context.scene
    cam, rig, bodies, clip = find_scene_parts(scene)
    ground, ground_collection = ground_plane()
    if ground_collection is not None:
        ground_collection.hide_render = True  # it would cover the footage in the left picture
    width, height = clip.size
    set_up_render(scene, width, height)
    scene.frame_set(frame)
    for body in bodies:
        body.color = (*BODY_COLOUR, 1.0)
    engines = _engines()

    with tempfile.TemporaryDirectory() as tmp:
        # left: through the footage camera, over the footage
        engine = render(scene, cam, Path(tmp) / "camera.png", engines)
        rgb, alpha = read_rgba(Path(tmp) / "camera.png")
        footage = footage_frame(clip, frame).astype(np.float32)
        if footage.shape[:2] != rgb.shape[:2]:
            raise PictureError(f"footage frame {footage.shape[1]}x{footage.shape[0]} differs from the render "
                               f"{rgb.shape[1]}x{rgb.shape[0]}")
        a = alpha * OVERLAY_OPACITY
        left = (footage * (1 - a) + rgb * a).clip(0, 255).astype(np.uint8)
        left = draw_outline(left, alpha)
        if ground is not None:
            left = draw_floor_grid(np.ascontiguousarray(left), scene, cam, ground)
        left = draw_skeleton(np.ascontiguousarray(left), scene, cam, rig)

        # right: a free camera at 3/4, on the importer's floor Z = 0 (else a floor under the feet)
        points = body_points(bodies)
        lowest = float(points[:, 2].min())
        if ground is not None:
            ground_collection.hide_render = False
            ground.display_type = 'SOLID'
            ground.color = (0.32, 0.32, 0.32, 1.0)
        else:
            add_floor(scene, points)
        scene.display.shading.show_shadows = True
        free = add_three_quarter_camera(scene, cam, rig, points)
        render(scene, free, Path(tmp) / "free.png", [engine] + [e for e in engines if e != engine])
        rgb, alpha = read_rgba(Path(tmp) / "free.png")
        ramp = np.linspace(1.12, 0.82, height, dtype=np.float32)[:, None, None]  # a soft vertical gradient
        background = (np.array(BACKGROUND[::-1], np.float32) * ramp) * np.ones_like(rgb)
        right = (background * (1 - alpha) + rgb * alpha).clip(0, 255).astype(np.uint8)
        right = draw_skeleton(np.ascontiguousarray(right), scene, free, rig)

    from PIL import Image

    engine_name = {"BLENDER_WORKBENCH": "Workbench", "CYCLES": "Cycles"}.get(engine, "EEVEE")
    where = f"the placed camera ({cam.location.z:.2f} m high; floor grid)" if ground is not None \
        else "the footage camera"
    floor = f"on the floor Z = 0 (lowest vertex {lowest * 100:+.1f} cm)" if ground is not None else "over a floor"
    panels = [titled(left, f"Frame {frame}, {engine_name} through {where}"),
              titled(right, f"Free 3/4 view: armature and skinned body {floor}")]
    gap, strip = 6, 24
    height = max(p.height for p in panels)
    picture = Image.new("RGB", (sum(p.width for p in panels) + gap, height + strip), (29, 29, 29))
    x = 0
    for p in panels:
        picture.paste(p, (x, 0))
        x += p.width + gap
    from PIL import ImageDraw, ImageFont
    caption = (f"{blend.name} (written by the main job, opened with bpy {bpy.app.version_string}): orange = the "
               f"imported skinned SMPL body ({OVERLAY_OPACITY:.0%} opaque, with its outline), lines = its armature's "
               "joints (blue left, red right, yellow spine)")
    ImageDraw.Draw(picture).text((8, height + strip / 2), caption, fill=(160, 160, 160),
                                 font=ImageFont.truetype(str(FONT), 12), anchor="lm")
    size = save_small(picture, out)
    return picture.size, size, engine


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blend", default="out/demo/shot.blend",
                        help="the main job's .blend (default out/demo/shot.blend)")
    parser.add_argument("--frame", type=int, default=40, help="scene frame to show (1-based, default 40)")
    parser.add_argument("--out", default="docs/blender_result.png", help="PNG to write")
    args = parser.parse_args(argv)
    try:
        (w, h), size, engine = make_picture(args.blend, args.frame, args.out)
    except PictureError as ex:
        print(f"result_picture: {ex}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({w}x{h}, {size / 1000:.0f} KB, {engine})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
