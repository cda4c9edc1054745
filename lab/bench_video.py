"""Animator measures of the video methods: the world frame, feet, jitter and gaps in the evidence.

    python -m lab bench-video [--videos N] [--video-length F] [--level medium] [--subjects report|tuning|all]
                              [--dataset DIR] [--out DIR]

Clips of held-out CMU motion with the data's own body (so the true feet stand on the floor,
y = 0), one static random camera each, simulated detections (lab.sim).  Every method's
camera-frame result goes through the same world estimate (backend.engine.world: floor and camera
from the result alone); "ScoreHMR (ours) + planted feet" adds the foot planting.  Measures
(backend.metrics), against the truth in its world frame after turning about the vertical and
sliding along the floor (the world's heading and origin are arbitrary):

* PA-MPJPE-14 (mm), acceleration error pelvis-relative and in the world (mm/frame^2);
* jitter: mean acceleration magnitude in the world (mm/frame^2), the truth's in its own row;
* foot skating: mm per frame of a foot joint in contact (true contacts from the mocap);
* penetration / floating of feet in contact (mm, means) and the share beyond 2 cm;
* root trajectory error (mm); the camera's height (m) and pitch (deg) errors.

Gaps: the same clips with 5, 10 and 24 frames without keypoints in the middle, refined without
bridging the start, with the start bridged by interpolation (backend.engine.gaps), and with the
stretch around the gap also redone by the motion prior (the default): MPJPE-14 inside vs outside
the gap and the largest frame-to-frame jump of the facing direction against the truth's.

``animator(bench)`` is the section function for lab.bench (a Bench supplies the engine, the
data, the baselines' options and the timing); ``python -m lab bench-video`` runs it alone (lab.bench.animator_main).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from backend import metrics as M
from backend.engine import baselines as bl
from backend.engine import problems
from backend.engine.modes import motion_video, video
from backend.engine import gaps as G
from backend.engine import world as W
from lab.bench_common import FPS, joints_of, table

GAP_LENGTHS = (5, 10, 24)
SEED_ANIMATOR = 606
TRUTH = "ground truth"
PLANTED = "ScoreHMR (ours) + planted feet"
MOTION = "ScoreHMR (motion prior)"   # with BenchConfig.motion_prior (docs/motion_prior.md)
# Gap rows: the start bridged by interpolation, then the loop; and the same with the stretch around the gap
# redone by the motion prior (EngineOptions.gap_motion_prior, the default).
INTERPOLATED = "bridged (interpolation)"
BY_MOTION = "bridged + motion prior"


def _true_camera(R: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Height (m) above the floor y = 0 and pitch (deg, positive looking down) of a world-to-camera (R, t)."""
    centre = -R.T @ t
    up = R @ np.array([0.0, 1.0, 0.0])
    return float(centre[1]), float(np.degrees(np.arcsin(np.clip(-up[2], -1, 1))))


def world_row(pred_world: np.ndarray, gt_world: np.ndarray, contacts: np.ndarray, offsets) -> dict:
    """World measures of one clip: pred_world, gt_world (F,24,3) metres, true contacts (F,4)."""
    aligned = M.align_on_floor(pred_world, gt_world)
    feet = aligned[:, list(W.FOOT_JOINTS)]
    floor = M.floor_contact_errors(feet, contacts, offsets)
    return dict(accel_world=float(M.accel_error(aligned, gt_world).mean()), jitter=M.jitter(aligned),
                skating=M.foot_skating(feet, contacts), penetration=floor["penetration_mm"],
                floating=floor["floating_mm"], beyond_2cm=floor["beyond_tolerance"],
                worst_floor_mm=max(floor["max_penetration_mm"], floor["max_floating_mm"]),
                root_error=M.root_trajectory_error(aligned, gt_world))


def camera_row(pred_cam: np.ndarray, gt_cam: np.ndarray) -> dict:
    """Camera-frame measures of one clip (F,24,3): PA-MPJPE-14 and pelvis-relative acceleration error."""
    lsp = list(M.SMPL24_TO_LSP14)
    rel = lambda j: j - j[:, :1]
    return dict(pa_mpjpe14=float(M.pa_mpjpe(pred_cam[:, lsp], gt_cam[:, lsp]).mean()),
                accel=float(M.accel_error(rel(pred_cam), rel(gt_cam)).mean()))


def _mean_rows(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    # A clip whose world was not estimated (status not 'ok') has no world measures: left out of their means.
    out = {k: round(float(np.nanmean([r.get(k, np.nan) for r in rows])), 3) for k in keys}
    out.update({k: v for k, v in rows[0].items() if k not in keys and k != "status"})
    out["static"] = f"{sum(r.get('status') == 'ok' for r in rows)}/{len(rows)}"
    return out


def _clips(bench):
    """Observations of cfg.videos clips (the data's body, so the true feet are on the floor) and
    the true world joints (N,F,24,3)."""
    from backend.body.body_model import pose_to_rotmats
    from lab.data.dataset import window_starts
    from lab.sim.observations import video_observations

    cfg, d = bench.cfg, bench.data
    rng = np.random.default_rng(cfg.seed + SEED_ANIMATOR)
    starts = window_starts(d, cfg.video_length, cfg.video_length)
    chosen = np.sort(rng.choice(starts, min(cfg.videos, len(starts)), replace=False))
    idx = chosen[:, None] + np.arange(cfg.video_length)[None]
    betas = np.broadcast_to(d["betas"], (len(chosen), 10))
    params = dict(global_orient=d["global_orient"][idx], body_pose=d["body_pose"][idx], betas=betas,
                  transl=d["transl"][idx])
    obs = video_observations(bench.sim_body, params, torch.Generator().manual_seed(cfg.seed + SEED_ANIMATOR),
                             cfg.level, fps=FPS)
    n, f = idx.shape
    rot = pose_to_rotmats(torch.as_tensor(params["global_orient"]).reshape(-1, 3),
                          torch.as_tensor(params["body_pose"]).reshape(-1, 69))
    gt_world = bench.sim_body.joints_fast(rot.to(bench.sim_body.dtype),
                                          torch.as_tensor(d["betas"]).to(bench.sim_body.dtype).expand(n * f, 10),
                                          torch.as_tensor(params["transl"]).reshape(-1, 3).to(bench.sim_body.dtype))
    return obs, gt_world.joints.reshape(n, f, 24, 3).double().numpy()


def _sole_offsets(engine, betas) -> tuple[float, ...]:
    rest = engine.body(torch.eye(3, device=engine.device).expand(1, 24, 3, 3),
                       torch.as_tensor(np.asarray(betas), dtype=torch.float32, device=engine.device)[None])
    return W.sole_offsets(rest.joints[0].cpu().numpy(), rest.vertices[0].cpu().numpy())


def _reprojection_change(est: dict, joints_cam: np.ndarray, focal, pp) -> float:
    """Mean image distance (px) between the world joints taken back into the camera and the
    camera-frame result's joints: what the world output's changes (planting) cost in the image."""
    back = (est["joints_world"] - est["world_t"]) @ est["world_R"]
    f, c = float(focal[0]), pp[0].cpu().double().numpy()
    proj = lambda x: f * x[..., :2] / x[..., 2:3] + c
    return float(np.linalg.norm(proj(back) - proj(joints_cam), axis=-1).mean())


def planted_world(engine, res: dict, joints: np.ndarray) -> dict:
    """The engine's full world output (root shift and leg IK, world.world_result) for a result dict."""
    from backend.rotations import matrix_to_axis_angle

    aa = matrix_to_axis_angle(res["rotmats"]).reshape(len(joints), 72).cpu().double().numpy()
    betas = res["betas"].reshape(-1, 10).mean(0, keepdim=True)
    rest = engine.body(torch.eye(3, device=engine.device).expand(1, 24, 3, 3), betas)
    return W.world_result(joints, aa[:, :3], aa[:, 3:], res["transl"].cpu().double().numpy(),
                          rest.joints[0].cpu().double().numpy(), rest.vertices[0].cpu().double().numpy(), FPS)


def clip_methods(bench, obs: dict, i: int):
    """Clip i of video observations as engine tensors and the video table's methods on it:
    (clip problems.Observations (F,...), {name: (run, denoiser evaluations of its result or None)}).
    lab.bench's video table and the animator section both run exactly these."""
    e, f = bench.engine, obs["keypoints"].shape[1]
    kp = bench._t(obs["keypoints"][i])
    focal = bench._t(obs["focal_length"][i]).expand(f)
    pp = bench._t(obs["principal_point"][i]).expand(f, 2)
    size = bench._t(obs["image_size"][i]).expand(f, 2)
    clip = problems.Observations(kp, focal, pp, size, fps=float(FPS))
    reg = e.initial(kp, focal, pp)
    start = dict(rotmats=reg["rotmats"], betas=reg["betas"], transl=reg["transl"])
    ctx = e.context(kp, focal, pp)
    start_ctx = dict(start, context=ctx)
    opts_paper, loop_paper, w_paper = bench.options("video", "paper")
    opts_ours, loop_ours, w_ours = bench.options("video", "ours")
    opts_frame = bench.options("frame")[0]
    paper = replace(opts_paper.for_mode("video"), loop=loop_paper, weights=w_paper)
    ours = replace(opts_ours.for_mode("video"), loop=loop_ours, weights=w_ours)

    def filtered():
        R, tr = bl.temporal_filter(start["rotmats"], start["transl"])
        return dict(rotmats=R, transl=tr, betas=start["betas"])

    evals = lambda r: r["evaluations"]
    methods = {
        "start": (lambda: start, None),
        "start + filter": (filtered, None),
        "per-frame ScoreHMR + filter": (lambda: bl.per_frame_then_filter(e, clip, start_ctx, opts_frame),
                                        lambda r: r["denoiser_evaluations"]),
        "temporal SMPLify": (lambda: bl.temporal_smplify(e.body, bench.prior, clip, start, bench.smplify_opts), None),
        "ScoreHMR (paper)": (lambda: video.refine(e, clip, start_ctx, paper), evals),
        "ScoreHMR (ours)": (lambda: video.refine(e, clip, start_ctx, ours), evals),
    }
    if bench.cfg.motion_prior:
        opts_motion, loop_motion, w_motion = bench.options("video", "ours", motion=True)
        motion = replace(opts_motion.for_mode("video"), loop=loop_motion, weights=w_motion)
        methods[MOTION] = (lambda: motion_video.refine(e, clip, start, motion), evals)
    return clip, methods


def animator(bench) -> dict:
    """The section: rows per method (means over clips) and gap rows."""

    e = bench.engine
    obs, gt_world = _clips(bench)
    offsets = _sole_offsets(e, bench.data["betas"])
    opts_ours, loop_ours, w_ours = bench.options("video", "ours")
    per_method: dict[str, list] = {}
    gap_rows: list[dict] = []
    for i in range(len(gt_world)):
        clip, methods = clip_methods(bench, obs, i)
        gt_cam = obs["gt_joints"][i].double().numpy()
        contacts = W.foot_contacts(gt_world[i][:, list(W.FOOT_JOINTS)], FPS, offsets)
        cam_h, cam_pitch = _true_camera(obs["cam_R"][i].double().numpy(), obs["cam_t"][i].double().numpy())
        per_method.setdefault(TRUTH, []).append(dict(camera_row(gt_cam, gt_cam),
                                                     **world_row(gt_world[i], gt_world[i], contacts, offsets),
                                                     status="ok"))
        for name, (fn, _) in methods.items():
            res = fn()
            pred = joints_of(e, res)
            for label, plant in ((name, False),) + (((PLANTED, True),) if name == "ScoreHMR (ours)" else ()):
                est = planted_world(e, res, pred) if plant else W.estimate_world(pred, FPS, offsets, plant=False)
                row = dict(camera_row(pred, gt_cam), status=est["status"])
                if est["status"] == "ok":
                    row.update(world_row(est["joints_world"], gt_world[i], contacts, offsets),
                               camera_height_error=abs(est["camera_height"] - cam_h),
                               camera_pitch_error=abs(est["camera_pitch_deg"] - cam_pitch),
                               reprojection_change_px=_reprojection_change(est, pred, clip.focal, clip.principal))
                per_method.setdefault(label, []).append(row)
        up = obs["cam_R"][i].double().numpy() @ np.array([0.0, 1.0, 0.0])   # the world's up in the camera
        gap_rows += gap_measures(bench, clip, gt_cam, up, loop_ours, w_ours, opts_ours)
    rows = [dict(method=m, clips=len(r), **_mean_rows(r)) for m, r in per_method.items()]
    return dict(rows=rows, gaps=_gap_summary(gap_rows))


def gap_measures(bench, clip: problems.Observations, gt_cam, up, loop, w, opts) -> list[dict]:
    """For each gap length: ours refined from the plain start and from the bridged start (clip (F,...))."""

    e, kp = bench.engine, clip.keypoints
    f = kp.shape[0]
    lsp = list(M.SMPL24_TO_LSP14)
    true_facing = np.unwrap(M.facing_angles(gt_cam, up))
    rows = []
    for length in GAP_LENGTHS:
        if length > f - 4:  # a gap needs seen frames on both sides to be measured against
            continue
        a = (f - length) // 2
        holed = kp.clone()
        holed[a:a + length] = 0.0
        holed_clip = replace(clip, keypoints=holed)
        reg = e.initial(holed, clip.focal, clip.principal)
        plain = dict(rotmats=reg["rotmats"], betas=reg["betas"], transl=reg["transl"])
        ctx = e.context(holed, clip.focal, clip.principal)
        bridged, bridged_ctx = G.bridge(plain, ctx, holed)
        for name, start, c, o in (("fixed-pose fill (old)", plain, ctx, replace(opts, gap_motion_prior=None)),
                                  (INTERPOLATED, bridged, bridged_ctx, replace(opts, gap_motion_prior=None)),
                                  (BY_MOTION, bridged, bridged_ctx, opts)):
            if name == BY_MOTION and not opts.gap_motion_prior:
                continue
            settings = replace(o.for_mode("video"), loop=loop, weights=w)
            pred = joints_of(e, video.refine(e, holed_clip, dict(start, context=c), settings))
            err = M.mpjpe(pred[:, lsp], gt_cam[:, lsp], root=0)
            inside = np.zeros(f, bool)
            inside[a:a + length] = True
            facing = np.unwrap(M.facing_angles(pred, up))
            span = slice(max(a - 1, 0), min(a + length + 1, f))
            rows.append(dict(gap=length, start=name, in_gap=float(err[inside].mean()),
                             elsewhere=float(err[~inside].mean()),
                             facing_jump_deg=float(np.degrees(np.abs(np.diff(facing[span])).max())),
                             facing_jump_elsewhere_deg=float(np.degrees(np.abs(np.diff(facing))[
                                 np.r_[:max(a - 1, 0), min(a + length, f - 1):f - 1]].max())),
                             true_facing_jump_deg=float(np.degrees(np.abs(np.diff(true_facing[span])).max()))))
    return rows


def _gap_summary(rows: list[dict]) -> list[dict]:
    out = []
    for length in GAP_LENGTHS:
        for name in ("fixed-pose fill (old)", INTERPOLATED, BY_MOTION):
            sel = [r for r in rows if r["gap"] == length and r["start"] == name]
            if not sel:
                continue
            mean = lambda k: round(float(np.mean([r[k] for r in sel])), 2)
            out.append(dict(gap=length, start=name, clips=len(sel), in_gap=mean("in_gap"), elsewhere=mean("elsewhere"),
                            ratio=round(mean("in_gap") / max(mean("elsewhere"), 1e-9), 2),
                            facing_jump_deg=round(max(r["facing_jump_deg"] for r in sel), 1),
                            true_facing_jump_deg=round(max(r["true_facing_jump_deg"] for r in sel), 1),
                            facing_jump_elsewhere_deg=round(max(r["facing_jump_elsewhere_deg"] for r in sel), 1),
                            clips_facing_ok=sum(r["facing_jump_deg"] <= r["true_facing_jump_deg"] for r in sel)))
    return out


COLS = (("method", "method"), ("pa_mpjpe14", "PA-MPJPE 14"), ("accel", "accel"), ("accel_world", "accel world"),
        ("jitter", "jitter"), ("skating", "skating mm/frame"), ("penetration", "below mm"), ("floating", "above mm"),
        ("beyond_2cm", "share >2 cm"), ("worst_floor_mm", "worst mm"), ("root_error", "root mm"),
        ("camera_height_error", "cam height err m"), ("camera_pitch_error", "cam pitch err deg"),
        ("reprojection_change_px", "reproj change px"), ("static", "static"))
GAP_COLS = (("gap", "gap frames"), ("start", "start"), ("clips", "clips"), ("in_gap", "MPJPE-14 in gap"),
            ("elsewhere", "elsewhere"), ("ratio", "ratio"), ("facing_jump_deg", "max facing jump deg"),
            ("true_facing_jump_deg", "true max jump deg"),
            ("facing_jump_elsewhere_deg", "max jump outside the gap deg"),
            ("clips_facing_ok", "clips not jumping more"))


def markdown(section: dict, video_length: int, level: str) -> str:
    """The section's tables (lab.bench's report calls it with its config's video_length and level)."""
    return "\n".join([
        f"## Animator measures: {section['rows'][0]['clips']} clips x {video_length} frames, detector noise "
        f"`{level}`, world estimated from each result",
        "Accel / jitter in mm/frame^2; skating, below/above the floor (feet in true contact), root path in mm; "
        "world measures after turning about the vertical and sliding along the floor onto the truth.",
        "", table(section["rows"], list(COLS)), "",
        "### Gaps without keypoints (ScoreHMR ours, gap in the middle of each clip)", "",
        table(section["gaps"], list(GAP_COLS)), ""])
