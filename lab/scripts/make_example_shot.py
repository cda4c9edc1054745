"""Make the embedded example shots (``examples/shot`` and ``examples/multiview``) from the shared CMU data.

    python lab/scripts/make_example_shot.py [--clip 115_08] [--start 0] [--frames 96] [--seed 0]
                                        [--samples 16] [--out examples] [--force]

What it does (seeded: the same arguments give the same camera, noise and body; the converter's
float32 fit can differ between runs by well under a millimetre, and the video's pixels between
Blender builds):

1. Motion: one clip of a *validation* subject (``lab.data.dataset.VAL_SUBJECTS``, never seen
   in training), converted to SMPL parameters of the free body model exactly as the dataset
   converter does it (``lab.data.convert``: 24 real frames/s, rotation transfer + fit, feet
   grounded at y = 0), with the retargeting calibration (betas, torso offsets) fitted on this clip.
   The default, ``115_08`` "Picking box up, bending knees" (subject 115), is 4 s of a deep knee bend
   with reaching arms: hard for a single-frame regressor, easy to judge by eye.
2. Camera (``lab.sim.cameras``): 640x360, principal point at the centre, focal length
   ``focal_from_fov(55 deg)`` = 614.7 px, which is also the engine's and the add-on's estimate when
   no focal length is given, so footage-only tools (``build.py -- --footage``) see the true camera.
   It stands 30 deg to the side of the person's mean facing direction, 5-10 deg above, and frames
   the whole motion.
3. Footage: the free body model's mesh (``BodyModel`` full path) per frame, rendered by Blender
   (the ``bpy`` module, in a subprocess so its memory is freed) with Cycles on the CPU: a plain
   light-grey studio, a floor, a sun, 4 samples plus OpenImageDenoise (fast mode); frames go into
   ``shot.mp4`` (OpenCV ``mp4v``).  About 3.5 CPU-minutes for the 96 frames on 2 cores.
4. Keypoints: COCO-17 of the body model projected into that camera, through the detector model of
   ``lab.sim.detector_noise`` (preset "medium": AR(1)-correlated jitter, outliers, left/right
   swaps, occlusions, confidences) -> ``keypoints.npz``: ``keypoints`` (F,17,3) [x_px, y_px, conf]
   plus the OBS fields ``image_size``, ``focal_length``, ``principal_point``, ``fps`` (so it is
   also a valid ``--observations`` file).
5. Ground truth -> ``ground_truth.npz``: SMPL parameters in the camera frame (OpenCV, metres,
   axis-angle) ``global_orient`` (F,3), ``body_pose`` (F,69), ``betas`` (10,), ``transl`` (F,3);
   ``joints`` (F,24,3), ``keypoints3d`` (F,17,3), ``keypoints2d`` (F,17,2) clean projections,
   ``status`` (F,17) detector status codes; the camera ``cam_R``, ``cam_t`` (world to camera);
   the world-frame parameters ``world_global_orient``, ``world_transl``; ``meta`` (JSON).
6. Multi-view (``examples/multiview``): 4 calibrated cameras around the same person for 48 frames of
   the same clip (keypoints only): ``obs.npz`` in the OBS layout ((V,F,17,3) keypoints,
   ``image_size`` (V,2), ``focal_length`` (V,), ``principal_point`` (V,2), ``cam_R`` (V,3,3),
   ``cam_t`` (V,3), ``fps``) and ``ground_truth.npz`` (``joints_world`` (F,24,3), per view
   ``joints`` (V,F,24,3), world parameters, ``meta``).

Data credit: the motion comes from the CMU Graphics Lab Motion Capture Database.
"The data used in this project was obtained from mocap.cs.cmu.edu. The database was created with
funding from NSF EIA-0196217."  Free to use, not to be resold, even in converted form.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

CMU_CREDIT = ("The data used in this project was obtained from mocap.cs.cmu.edu. "
              "The database was created with funding from NSF EIA-0196217.")
IMAGE_SIZE = (640, 360)
FOV_DEG = 55.0                 # = backend.contract.observations.DEFAULT_FOV_DEG (checked in main)
CAMERA_SIDE_DEG = 30.0         # camera yaw from the person's mean facing direction
PITCH_DEG = (5.0, 10.0)
FILL = (0.62, 0.66)            # the motion's projected height / frame height
NOISE_LEVEL = "medium"
MULTIVIEW = dict(views=4, start=24, frames=48)
# HD cameras only: pixel errors of a 4K view would dominate the averages the demo prints.
MULTIVIEW_RESOLUTIONS = ((1280, 720), (1920, 1080), (960, 720), (1440, 1080))
# Blender (Z up) from the body model's frame (Y up): (x, y, z) -> (x, -z, y).
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# -- motion ------------------------------------------------------------------------------------------
def convert_clip(clip_id: str) -> dict:
    """One CMU clip -> world-frame SMPL parameters of the free body model, as the dataset converter does.

    Returns global_orient (N,3), body_pose (N,69), transl (N,3), betas (10,) float64, fps, info."""
    from backend.body.body_model import BodyModel
    from lab.data import cmu, convert, dataset, retarget

    root = cmu.cmu_root()
    clips = {c.clip_id: c for c in cmu.read_clips(root)}
    if clip_id not in clips:
        raise SystemExit(f"clip {clip_id} is not in {root / 'clips.tsv'}")
    clip = clips[clip_id]
    if dataset.split_of(clip.subject) != "val":
        raise SystemExit(f"clip {clip_id} is from training subject {clip.subject}; pick a clip of a validation "
                         f"subject {dataset.VAL_SUBJECTS} so the example is held out")
    sk, bm = cmu.load_skeleton(root), BodyModel.load(None)
    calib = convert.run_calibration(bm, sk, [clip], root)
    (fit,) = convert.ClipFitter(root, calib, retarget.FitConfig()).fit_job([clip])
    pose = fit["pose"].astype(np.float64)
    return dict(global_orient=pose[:, :3], body_pose=pose[:, 3:], transl=fit["transl"].astype(np.float64),
                betas=calib.betas.astype(np.float64), fps=float(dataset.FPS),
                info=dict(clip=clip_id, subject=clip.subject, description=clip.description,
                          fit_residual_mm=round(float(fit["residual"].mean() * 1000), 2),
                          calibration_residual_mm=round(calib.residual_mm, 2)))


def cut(motion: dict, start: int, frames: int) -> dict:
    n = len(motion["transl"])
    if not (0 <= start and frames >= 2 and start + frames <= n):
        raise SystemExit(f"frames {start}..{start + frames - 1} are outside the clip ({n} frames)")
    out = {k: motion[k][start:start + frames] for k in ("global_orient", "body_pose", "transl")}
    return dict(out, betas=motion["betas"])


def facing_yaw(global_orient: np.ndarray) -> float:
    """Mean facing direction (radians, yaw 0 = +Z) of world-frame orientations (N,3)."""
    import torch

    from backend.rotations import axis_angle_to_matrix

    fwd = axis_angle_to_matrix(torch.as_tensor(global_orient))[:, :, 2].mean(0).numpy()  # body +Z in the world
    return math.atan2(fwd[0], fwd[2])


# -- observations -------------------------------------------------------------------------------------
def camera_kwargs(yaw, fill=FILL, focal_px=None, resolutions=None, pitch=PITCH_DEG) -> dict:
    """lab.sim.cameras.sample_cameras options: given yaw(s), no roll; a fixed 640x360 camera of
    ``focal_px`` when given, else random focal lengths at ``resolutions`` (default: the sampler's)."""
    import torch

    from lab.sim.cameras import SENSOR_WIDTH_MM

    kw = dict(fill_range=fill, pitch_deg_range=pitch, roll_deg_max=0.0,
              yaw=torch.as_tensor(yaw, dtype=torch.float64))
    if resolutions is not None:
        kw["resolutions"] = resolutions
    if focal_px is not None:
        mm = focal_px / IMAGE_SIZE[0] * SENSOR_WIDTH_MM
        kw.update(resolutions=(IMAGE_SIZE,), focal_mm_range=(mm, mm))
    return kw


def observe(bm, motion: dict, views_yaw, seed: int, fps: float, focal_px=None, fill=FILL,
            resolutions=None) -> dict:
    """Simulated detections of ``motion`` seen by one static camera per yaw; numpy, leading (V,F)."""
    import torch

    from lab.sim.observations import video_observations

    v = len(views_yaw)
    params = {k: np.broadcast_to(motion[k], (v,) + motion[k].shape).copy()
              for k in ("global_orient", "body_pose", "transl")}
    params["betas"] = motion["betas"]
    return video_observations(bm, params, torch.Generator().manual_seed(seed), NOISE_LEVEL, fps=fps,
                              camera_kwargs=camera_kwargs(views_yaw, fill, focal_px, resolutions), as_numpy=True)


def world_vertices(bm, motion: dict):
    """(F,V,3) float32 mesh vertices in the world (model) frame."""
    import torch

    from backend.body.body_model import pose_to_rotmats

    t = lambda x: torch.as_tensor(x, dtype=bm.dtype)
    with torch.no_grad():
        out = bm(pose_to_rotmats(t(motion["global_orient"]), t(motion["body_pose"])), t(motion["betas"]),
                 t(motion["transl"]))
    return out.vertices.numpy().astype(np.float32)


def blender_camera(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World-to-camera (OpenCV, model frame) -> Blender camera matrix_world (4,4) in Blender's Z-up world.

    Blender cameras look down their local -Z with +Y up: OpenCV's axes with y and z flipped."""
    cam_to_world = R.T @ np.diag([1.0, -1.0, -1.0])
    M = np.eye(4)
    M[:3, :3] = MODEL_TO_BLENDER @ cam_to_world
    M[:3, 3] = MODEL_TO_BLENDER @ (-R.T @ t)
    return M


# -- rendering (runs in a subprocess with bpy) ----------------------------------------------------------
def render_worker(job_path: str, frames_dir: str) -> int:
    """Renders job.npz (vertices (F,V,3) Blender frame, faces, camera, lens, size, samples) to PNGs."""
    import bpy

    job = np.load(job_path)
    verts, faces = job["vertices"], job["faces"]
    w, h = (int(x) for x in job["image_size"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(job["samples"])
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = int(job["seed"])
    scene.cycles.use_denoising = bool(job["denoise"])
    scene.cycles.denoising_quality = "FAST"        # OIDN's fast mode: most of the quality at a third of the time
    scene.cycles.denoising_prefilter = "NONE"
    scene.cycles.denoising_input_passes = "RGB"
    scene.cycles.max_bounces = 3
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = w, h, 100
    scene.render.threads_mode = "FIXED"
    scene.render.threads = int(job["threads"])
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"  # plain colours, no filmic grey-out

    world = bpy.data.worlds.new("studio")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.62, 0.64, 0.68, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.9
    scene.world = world

    def material(name, rgb, roughness):
        mat = bpy.data.materials.new(name)
        mat.use_nodes = True
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
        bsdf.inputs["Roughness"].default_value = roughness
        return mat

    floor_mesh = bpy.data.meshes.new("floor")
    s = 30.0
    floor_mesh.from_pydata([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], [], [(0, 1, 2, 3)])
    floor_mesh.materials.append(material("floor", (0.55, 0.55, 0.56), 0.9))
    scene.collection.objects.link(bpy.data.objects.new("floor", floor_mesh))

    body_mesh = bpy.data.meshes.new("body")
    body_mesh.from_pydata(verts[0].tolist(), [], faces.tolist())
    body_mesh.polygons.foreach_set("use_smooth", [True] * len(body_mesh.polygons))
    body_mesh.materials.append(material("body", (0.25, 0.42, 0.70), 0.55))
    scene.collection.objects.link(bpy.data.objects.new("body", body_mesh))

    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy, sun.angle = 3.0, math.radians(12.0)
    sun_obj = bpy.data.objects.new("sun", sun)
    sun_obj.rotation_euler = (math.radians(40), math.radians(15), math.radians(35))
    scene.collection.objects.link(sun_obj)

    cam = bpy.data.cameras.new("camera")
    cam.sensor_fit, cam.sensor_width = "HORIZONTAL", 36.0
    cam.lens = float(job["focal_px"]) / w * 36.0  # the principal point is the image centre (no shift)
    cam.clip_start, cam.clip_end = 0.05, 100.0
    cam_obj = bpy.data.objects.new("camera", cam)
    from mathutils import Matrix

    cam_obj.matrix_world = Matrix(job["camera_matrix"].tolist())
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj

    out = Path(frames_dir)
    for i in range(len(verts)):
        body_mesh.vertices.foreach_set("co", verts[i].ravel())
        body_mesh.update()
        scene.render.filepath = str(out / f"{i:05d}.png")
        bpy.ops.render.render(write_still=True)
        print(f"RENDERED {i + 1}/{len(verts)}", flush=True)
    return 0


def render(vertices_blender: np.ndarray, faces: np.ndarray, camera_matrix: np.ndarray, focal_px: float,
           samples: int, seed: int, frames_dir: Path, denoise: bool = True) -> float:
    """Renders every frame in a bpy subprocess (Blender's memory goes with it); returns seconds."""
    from tqdm import tqdm

    job = frames_dir / "job.npz"
    np.savez(job, vertices=vertices_blender, faces=faces.astype(np.int32), camera_matrix=camera_matrix,
             focal_px=focal_px, image_size=np.array(IMAGE_SIZE), samples=samples, seed=seed, threads=2,
             denoise=denoise)
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--render-worker", str(job),
                             str(frames_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    with tqdm(total=len(vertices_blender), desc="render (Cycles CPU)", unit="frame") as bar:
        for line in proc.stdout:
            log.append(line)
            if line.startswith("RENDERED"):
                bar.update(1)
    if proc.wait() != 0:
        raise SystemExit("Blender rendering failed:\n" + "".join(log[-30:]))
    job.unlink()
    return time.time() - t0


def write_video(frames_dir: Path, n: int, fps: float, path: Path) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, IMAGE_SIZE)
    try:
        for i in range(n):
            frame = cv2.imread(str(frames_dir / f"{i:05d}.png"), cv2.IMREAD_COLOR)
            if frame is None or frame.shape[1::-1] != IMAGE_SIZE:
                raise SystemExit(f"rendered frame {i} is missing or has the wrong size")
            writer.write(frame)
    finally:
        writer.release()


# -- assembling the files ------------------------------------------------------------------------------
def meta(motion_info: dict, args, start: int, frames: int, **extra) -> np.ndarray:
    return np.array(json.dumps(dict(
        motion_info, first_frame=start, frames=frames, fps=24, noise_level=NOISE_LEVEL, seed=args.seed,
        command="python lab/scripts/make_example_shot.py " + " ".join(sys.argv[1:]),
        body_model="free default (backend/assets/free_body_model.npz)",
        credit="CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu). " + CMU_CREDIT, **extra)))


def shot_files(obs: dict, motion: dict, info: np.ndarray) -> tuple[dict, dict]:
    """(keypoints.npz arrays, ground_truth.npz arrays) of view 0 of ``observe``'s output."""
    f32 = lambda x: np.asarray(x, np.float32)
    keypoints = dict(keypoints=f32(obs["keypoints"][0]), image_size=f32(obs["image_size"][0]),
                     focal_length=f32(obs["focal_length"][0]), principal_point=f32(obs["principal_point"][0]),
                     fps=f32(obs["fps"]))
    truth = dict(global_orient=f32(obs["gt_global_orient"][0]), body_pose=f32(obs["gt_body_pose"][0]),
                 betas=f32(motion["betas"]), transl=f32(obs["gt_transl"][0]), joints=f32(obs["gt_joints"][0]),
                 keypoints3d=f32(obs["gt_keypoints3d"][0]), keypoints2d=f32(obs["gt_keypoints2d"][0]),
                 status=obs["status"][0].astype(np.int8), cam_R=f32(obs["cam_R"][0]), cam_t=f32(obs["cam_t"][0]),
                 world_global_orient=f32(motion["global_orient"]), world_transl=f32(motion["transl"]), meta=info)
    return keypoints, truth


def multiview_files(obs: dict, motion: dict, world_joints: np.ndarray, info: np.ndarray) -> tuple[dict, dict]:
    f32 = lambda x: np.asarray(x, np.float32)
    views = obs["keypoints"].shape[0]
    arrays = dict(keypoints=f32(obs["keypoints"]), image_size=f32(obs["image_size"]),
                  focal_length=f32(obs["focal_length"]), principal_point=f32(obs["principal_point"]),
                  cam_R=f32(obs["cam_R"]), cam_t=f32(obs["cam_t"]), fps=f32(obs["fps"]))
    truth = dict(joints_world=f32(world_joints), joints=f32(obs["gt_joints"]),
                 global_orient=f32(obs["gt_global_orient"]), body_pose=f32(obs["gt_body_pose"][0]),
                 betas=f32(motion["betas"]), transl=f32(obs["gt_transl"]),
                 world_global_orient=f32(motion["global_orient"]), world_transl=f32(motion["transl"]),
                 status=obs["status"].astype(np.int8), views=np.int32(views), meta=info)
    return arrays, truth


def save(path: Path, arrays: dict, force: bool) -> None:
    """Compressed npz, written beside and renamed into place; refuses to overwrite without --force."""
    if path.exists() and not force:
        raise SystemExit(f"{path} exists; pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def make_shot(args, clip: dict, bm, shot_dir: Path) -> None:
    """examples/shot: the rendered footage, its keypoints and ground truth."""
    from backend.contract.observations import focal_from_fov
    from backend.io.footage import probe

    motion = cut(clip, args.start, args.frames)
    yaw = facing_yaw(motion["global_orient"]) + math.radians(CAMERA_SIDE_DEG)
    focal = float(focal_from_fov(np.array([IMAGE_SIZE], np.float64), FOV_DEG)[0])
    obs = observe(bm, motion, [yaw], args.seed, clip["fps"], focal_px=focal)
    info = meta(clip["info"], args, args.start, args.frames, camera="640x360, 55 deg horizontal field of view")
    keypoints, truth = shot_files(obs, motion, info)
    shot_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_render:
        vertices = world_vertices(bm, motion) @ MODEL_TO_BLENDER.T.astype(np.float32)
        cam = blender_camera(obs["cam_R"][0].astype(np.float64), obs["cam_t"][0].astype(np.float64))
        assert np.allclose(obs["principal_point"][0], np.array(IMAGE_SIZE) / 2)
        with tempfile.TemporaryDirectory(prefix="example_shot_") as tmp:
            seconds = render(vertices, bm.faces, cam, focal, args.samples, args.seed, Path(tmp))
            video_tmp = shot_dir / ".shot.tmp.mp4"
            write_video(Path(tmp), args.frames, clip["fps"], video_tmp)
            video_tmp.replace(shot_dir / "shot.mp4")
        info_v = probe(shot_dir / "shot.mp4")
        if info_v.frame_count != args.frames:
            raise SystemExit(f"shot.mp4 has {info_v.frame_count} frames, expected {args.frames}")
        print(f"rendered {args.frames} frames in {seconds:.0f} s: {info_v.summary()}")
    save(shot_dir / "keypoints.npz", keypoints, args.force)
    save(shot_dir / "ground_truth.npz", truth, args.force)


def make_multiview(args, clip: dict, bm, mv_dir: Path) -> None:
    """examples/multiview: calibrated views around the person (keypoints only) and the ground truth."""
    import torch

    from backend.body.body_model import pose_to_rotmats

    mv = cut(clip, MULTIVIEW["start"], MULTIVIEW["frames"])
    spacing = 2 * math.pi / MULTIVIEW["views"]
    yaws = facing_yaw(mv["global_orient"]) + math.radians(20.0) + spacing * np.arange(MULTIVIEW["views"])
    mv_obs = observe(bm, mv, yaws, args.seed + 1, clip["fps"], fill=(0.5, 0.8),
                     resolutions=MULTIVIEW_RESOLUTIONS)
    mv_info = meta(clip["info"], args, MULTIVIEW["start"], MULTIVIEW["frames"], views=MULTIVIEW["views"],
                   camera="random HD resolutions and focal lengths (lab.sim.cameras), calibrated")
    t = lambda x: torch.as_tensor(x, dtype=bm.dtype)
    with torch.no_grad():
        world_joints = bm.joints_fast(pose_to_rotmats(t(mv["global_orient"]), t(mv["body_pose"])), t(mv["betas"]),
                                      t(mv["transl"])).joints.numpy()
    mv_arrays, mv_truth = multiview_files(mv_obs, mv, world_joints, mv_info)
    mv_dir.mkdir(parents=True, exist_ok=True)
    save(mv_dir / "obs.npz", mv_arrays, args.force)
    save(mv_dir / "ground_truth.npz", mv_truth, args.force)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python lab/scripts/make_example_shot.py",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="115_08", help="CMU clip of a validation subject (default 115_08)")
    ap.add_argument("--start", type=int, default=0, help="first frame of the clip (24 fps frames)")
    ap.add_argument("--frames", type=int, default=96, help="shot length in frames (default 96 = 4 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=4, help="Cycles samples per pixel (then denoised)")
    ap.add_argument("--out", type=Path, default=ROOT / "examples")
    ap.add_argument("--only", choices=("shot", "multiview"), help="make only this example")
    ap.add_argument("--force", action="store_true", help="overwrite existing example files")
    ap.add_argument("--no-render", action="store_true",
                    help="keypoints and ground truth only (an existing shot.mp4 is left as it is)")
    ap.add_argument("--render-worker", nargs=2, metavar=("JOB", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.render_worker:
        return render_worker(*args.render_worker)

    import torch

    from backend.body.body_model import BodyModel
    from backend.contract.observations import DEFAULT_FOV_DEG

    torch.set_num_threads(1)
    assert FOV_DEG == DEFAULT_FOV_DEG
    t0 = time.time()
    shot_dir, mv_dir = args.out / "shot", args.out / "multiview"
    outputs = ([shot_dir / n for n in ("shot.mp4", "keypoints.npz", "ground_truth.npz")] if args.only != "multiview"
               else []) + ([mv_dir / n for n in ("obs.npz", "ground_truth.npz")] if args.only != "shot" else [])
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.force:
        raise SystemExit(f"{', '.join(existing)} exist; pass --force to overwrite them")

    print(f"converting CMU clip {args.clip} (rotation transfer + fit, as lab.data.convert)", flush=True)
    clip = convert_clip(args.clip)
    bm = BodyModel.load(None, dtype=torch.float64)
    if args.only != "multiview":
        make_shot(args, clip, bm, shot_dir)
    if args.only != "shot":
        make_multiview(args, clip, bm, mv_dir)
    sizes = ", ".join(f"{p.relative_to(args.out)} {p.stat().st_size / 1024:.0f} KB" for p in outputs if p.exists())
    print(f"wrote {sizes} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
