"""Training of the two learned models on converted CMU motion with simulated detections.

    python -m lab train regressor --seed 0     # 8000 steps
    python -m lab train prior --seed 0         # 12000 steps, on the frozen regressor
    python -m lab train regressor --init backend/assets/regressor.pt --levels blazepose --trainable head \
        --steps 1500 --lr 3e-4 --checkpoint cache/train/regressor_ft.state --resume   # fine-tuning

Long runs are resumable: ``--checkpoint PATH`` writes the whole training state (weights, optimiser,
random generators, curve) every ``--checkpoint-every`` steps and ``--resume`` continues from it; an
interrupted and resumed run ends with the same weights as an uninterrupted one.

Prior variants (issue 12): ``--t-max 200`` trains on the timesteps the refinement loop visits
(``--full-fraction`` of them still over 0..999), ``--width 1024`` is the paper's width,
``--context features+camera`` adds where the person's box sits in the camera (backend.models.context;
the checkpoint records the layout and the engine builds the same context).  On a GPU machine:

    python -m lab train pack --out out/pack_train.npz --stride 4 --float16   # ~19 MiB, travels
    python -m lab train prior --dataset out/pack_train.npz --device cuda --batch 1024 --max-seconds 400 ...

(lab/scripts/device_train_prior.sh trains several variants side by side.)

Every batch is made on the fly: motion frames from the training subjects, a random body shape
(betas ~ N(0, I)), a random camera and detector noise (lab.sim).  Weights are written with
the command, seed, data version and validation numbers that produced them.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.metrics import joint_errors
from backend.models.checkpoints import ASSETS, PRIOR_PATH, REGRESSOR_PATH, load_regressor
from backend.models.context import LAYOUTS, assemble, build_context, context_dim, raw_parts
from backend.models.denoiser import Denoiser
from backend.models.diffusion import cosine_alphas_cumprod, diffusion_loss
from backend.models.regressor import KeypointRegressor, normalise_keypoints
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix
from lab.sim.observations import single_view_observations

TRAIN_LEVELS = ("low", "medium", "high")
VAL_LEVELS = ("clean", "low", "medium", "high", "blazepose")
TRAINABLE = ("all", "head")  # fine-tune everything, or only the layers after the features (the prior's context)
CONTEXT_DROPOUT = 0.1  # also trains the unconditional prior eps(x, t, 0)


def _observe(bm: BodyModel, data: dict, idx: np.ndarray, g: torch.Generator, level: str) -> dict:
    """Simulated single-view observations of the frames ``idx`` with random body shapes."""
    n = len(idx)
    params = dict(global_orient=data["global_orient"][idx], body_pose=data["body_pose"][idx],
                  transl=np.zeros((n, 3), np.float32),
                  betas=torch.randn(n, 10, generator=g, dtype=torch.float64).numpy())
    return single_view_observations(bm, params, g, level)


def _gt_rotmats(obs: dict) -> torch.Tensor:
    return pose_to_rotmats(obs["gt_global_orient"], obs["gt_body_pose"]).float()


def regressor_loss(reg: KeypointRegressor, bm: BodyModel, obs: dict) -> tuple[torch.Tensor, dict]:
    out = reg(normalise_keypoints(obs["keypoints"].float()))
    R = rot6d_to_matrix(out["pose6d"].reshape(-1, 24, 6))
    R_gt = _gt_rotmats(obs)
    betas_gt = obs["gt_betas"].float()
    joints = bm.joints_fast(R, out["betas"]).joints
    joints_gt = bm.joints_fast(R_gt, betas_gt).joints
    rel = lambda j: j - j[:, :1]
    terms = dict(rot=(R - R_gt).pow(2).sum((-1, -2)).mean(),
                 joints=(rel(joints) - rel(joints_gt)).norm(dim=-1).mean(),
                 betas=(out["betas"] - betas_gt).pow(2).mean())
    return terms["rot"] + 10.0 * terms["joints"] + 0.05 * terms["betas"], terms


VAL_BATCH_PATH = Path(__file__).resolve().parents[1] / "assets" / "val_batch.npz"  # lab/assets


def make_val_batch(val: dict, n: int = 512, seed: int = 1234) -> dict:
    """A fixed, small set of validation frames (committed, so tests can re-check the reported numbers)."""
    if len(val["global_orient"]) == 0:
        raise ValueError("the validation split is empty: convert the whole dataset (no --limit)")
    n = min(n, len(val["global_orient"]))
    idx = np.sort(np.random.default_rng(seed).choice(len(val["global_orient"]), size=n, replace=False))
    return dict(global_orient=val["global_orient"][idx].astype(np.float32),
                body_pose=val["body_pose"][idx].astype(np.float32))


def evaluate_regressor(reg: KeypointRegressor, bm: BodyModel, batch: dict, seed: int = 1234) -> dict:
    """MPJPE / PA-MPJPE (mm, 24 and 14 joints) of the regressor on ``batch`` per noise level."""
    reg.eval()
    idx = np.arange(len(batch["global_orient"]))
    results = {}
    with torch.no_grad():
        for level in VAL_LEVELS:
            obs = _observe(bm, batch, idx, torch.Generator().manual_seed(seed), level)
            out = reg(normalise_keypoints(obs["keypoints"].float()))
            R = rot6d_to_matrix(out["pose6d"].reshape(-1, 24, 6))
            pred = bm.joints_fast(R, out["betas"]).joints.numpy()
            gt = bm.joints_fast(_gt_rotmats(obs), obs["gt_betas"].float()).joints.numpy()
            results[level] = joint_errors(pred, gt)
    reg.train()
    return results


def _prior_context(reg, obs: dict, mean, std, layout: str) -> torch.Tensor:
    """The context the engine would build for simulated single-view observations (see backend.models.context)."""
    return build_context(reg, obs["keypoints"].float(), obs["focal_length"].float(), obs["principal_point"].float(),
                         mean, std, layout)


def evaluate_prior(model: Denoiser, reg: KeypointRegressor, mean, std, bm: BodyModel, batch: dict,
                   seed: int = 1234, layout: str = "features", loop_t_max: int = 100) -> dict:
    """Validation diffusion loss (eps-MSE, fixed noise) over all timesteps and over the loop's t <= loop_t_max,
    and the DDIM inversion -> sampling round-trip error."""
    from backend.models.diffusion import ddim_invert, ddim_sample, q_sample

    g = torch.Generator().manual_seed(seed)
    idx = np.arange(len(batch["global_orient"]))
    alphas = cosine_alphas_cumprod().float()
    model.eval()
    with torch.no_grad():
        obs = _observe(bm, batch, idx, g, "medium")
        c = _prior_context(reg, obs, mean, std, layout)
        x0 = matrix_to_rot6d(_gt_rotmats(obs)).reshape(len(idx), 144)
        t = torch.randint(0, len(alphas), (len(idx),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        # Drawn last: the reported val_loss is unchanged.
        t_loop = torch.randint(0, loop_t_max + 1, (len(idx),), generator=g)
        eps_mse = lambda tt: float((model(q_sample(x0, tt, noise, alphas), tt, c) - noise).pow(2).mean())
        loss, loss_loop = eps_mse(t), eps_mse(t_loop)
        x = ddim_sample(model, ddim_invert(model, x0[:64], c[:64], alphas, 50, 2), c[:64], alphas, 50, 2)
    return {"val_loss": loss, f"val_loss_t{loop_t_max}": loss_loop,
            "roundtrip_max_abs": float((x - x0[:64]).abs().max()),
            "roundtrip_mean_abs": float((x - x0[:64]).abs().mean())}


def _cosine_lr(opt, step, total, base, warmup=500):
    warmup = min(warmup, max(total // 10, 1))  # short fine-tuning runs warm up over their first tenth
    lr = base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
    for group in opt.param_groups:
        group["lr"] = lr


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stdout, mininterval=2.0, dynamic_ncols=True)


def trainable_parameters(reg: KeypointRegressor, trainable: str) -> list[torch.nn.Parameter]:
    """All parameters, or only the heads after the features ("head": the prior's context stays as it is)."""
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
    return list(reg.parameters()) if trainable == "all" else [*reg.pose_head.parameters(),
                                                               *reg.betas_head.parameters()]


def save_training_state(path: Path, step: int, model, opt, g: torch.Generator, rng: np.random.Generator,
                        curve: list) -> None:
    """Everything a resumed run needs to continue exactly (written beside, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(step=step, model=model.state_dict(), optimizer=opt.state_dict(), generator=g.get_state(),
                    rng=json.dumps(rng.bit_generator.state), torch_rng=torch.get_rng_state(),
                    curve=json.dumps(curve)), tmp)
    os.replace(tmp, path)


def load_training_state(path: Path, model, opt, g: torch.Generator, rng: np.random.Generator) -> tuple[int, list]:
    """Restores ``save_training_state``'s state in place; returns (next step, curve)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    g.set_state(state["generator"])
    rng.bit_generator.state = json.loads(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), json.loads(state["curve"])


def train_regressor(train: dict, val_batch: dict, steps: int, seed: int, batch: int = 256, lr: float = 1e-3,
                    log_every: int = 250, *, levels: tuple[str, ...] = TRAIN_LEVELS,
                    init: KeypointRegressor | None = None, trainable: str = "all", checkpoint: Path | None = None,
                    checkpoint_every: int = 500, resume: bool = False) -> tuple[KeypointRegressor, dict]:
    """Trains from scratch, or fine-tunes ``init`` (a copy) on ``levels``; see the module doc for resuming."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    bm = BodyModel.load()
    reg = KeypointRegressor() if init is None else copy.deepcopy(init).train()
    params = trainable_parameters(reg, trainable)
    reg.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    curve, start = [], 0
    if resume and checkpoint is not None and checkpoint.is_file():
        start, curve = load_training_state(checkpoint, reg, opt, g, rng)
        print(f"resuming from step {start} ({checkpoint})", flush=True)
    bar = _progress(steps, "regressor")
    bar.update(start)
    for step in range(start, steps):
        idx = rng.integers(0, len(train["global_orient"]), batch)
        obs = _observe(bm, train, idx, g, levels[step % len(levels)])
        loss, terms = regressor_loss(reg, bm, obs)
        _cosine_lr(opt, step, steps, lr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            curve.append(dict(step=step, loss=float(loss), **{k: float(v) for k, v in terms.items()}))
            bar.set_postfix(loss=f"{float(loss):.3f}", joints_mm=f"{1000 * float(terms['joints']):.0f}")
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            save_training_state(checkpoint, step + 1, reg, opt, g, rng, curve)
        bar.update(1)
    bar.close()
    reg.requires_grad_(True)
    return reg, dict(curve=curve, val=evaluate_regressor(reg, bm, val_batch))


def context_stats(reg: KeypointRegressor, bm: BodyModel, data: dict, seed: int, n: int = 20000,
                  layout: str = "features") -> tuple:
    """Mean and std of the unstandardised context parts over simulated training observations."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    parts = []
    with torch.no_grad():
        for level in TRAIN_LEVELS:
            obs = _observe(bm, data, rng.integers(0, len(data["global_orient"]), n // 3), g, level)
            parts.append(raw_parts(reg, obs["keypoints"].float(), obs["focal_length"].float(),
                                   obs["principal_point"].float(), layout))
    parts = torch.cat(parts)
    return parts.mean(0), parts.std(0).clamp_min(1e-4)


def train_prior(reg: KeypointRegressor, train: dict, steps: int, seed: int, batch: int = 128, lr: float = 3e-4,
                log_every: int = 250, hidden: int = 512, parameterisation: str = "v", *, layout: str = "features",
                t_max: int | None = None, full_fraction: float = 0.0, device: str = "cpu", amp: bool = False,
                checkpoint: Path | None = None, checkpoint_every: int = 500, resume: bool = False,
                max_seconds: float | None = None) -> tuple[Denoiser, dict]:
    """Conditional epsilon model on camera-frame 6D poses; context from ``backend.models.context``.

    Observations are simulated on the CPU; the denoiser trains on ``device`` (bf16 autocast with ``amp``).
    ``t_max`` concentrates the timesteps on the loop's range (see ``sample_timesteps``).  ``max_seconds``
    bounds the wall time: the learning-rate schedule follows whichever of steps and time is further
    along, so a run cut by time still ends with a decayed rate (its step count is then the machine's)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 1)
    bm = BodyModel.load()
    reg.eval()
    mean, std = context_stats(reg, bm, train, seed, layout=layout)
    model = Denoiser(context_dim=context_dim(mean.shape[0], layout), hidden=hidden,
                     parameterisation=parameterisation).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    both = torch.nn.ModuleDict(dict(model=model, ema=ema))  # the training state holds both
    alphas = cosine_alphas_cumprod().float().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    curve, running, start = [], [], 0
    if resume and checkpoint is not None and checkpoint.is_file():
        start, curve = load_training_state(checkpoint, both, opt, g, rng)
        print(f"resuming from step {start} ({checkpoint})", flush=True)
    bar = _progress(steps, "prior")
    bar.update(start)
    t0, done = time.time(), start
    for step in range(start, steps):
        elapsed = (time.time() - t0) / max_seconds if max_seconds else 0.0
        if elapsed >= 1.0:
            print(f"stopping at step {step}: --max-seconds reached", flush=True)
            break
        idx = rng.integers(0, len(train["global_orient"]), batch)
        obs = _observe(bm, train, idx, g, TRAIN_LEVELS[step % len(TRAIN_LEVELS)])
        with torch.no_grad():
            raw = raw_parts(reg, obs["keypoints"].float(), obs["focal_length"].float(),
                            obs["principal_point"].float(), layout)
            # Each part dropped on its own: trains the unconditional prior and every partial context.
            if layout == "features":  # the original draw, so the committed prior's command still reproduces it
                keep_f, keep_c = (torch.rand(batch, 1, generator=g) > CONTEXT_DROPOUT)[:, 0], None
            else:
                keep_f, keep_c = (torch.rand(2, batch, generator=g) > CONTEXT_DROPOUT)
            c = assemble(raw, mean, std, layout, keep_f, keep_c).to(device)
            x0 = matrix_to_rot6d(_gt_rotmats(obs)).reshape(batch, 144).to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            loss = diffusion_loss(model, x0, c, alphas, g, t_max=t_max, full_fraction=full_fraction)
        _cosine_lr(opt, max(step, int(elapsed * steps)), steps, lr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), model.parameters()):
                    p_ema.lerp_(p, 1 - 0.995)
        running.append(loss.detach())  # no device sync per step
        if step % log_every == 0 or step == steps - 1:
            curve.append(dict(step=step, loss=float(torch.stack(running).float().mean())))
            running = []
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            save_training_state(checkpoint, step + 1, both, opt, g, rng, curve)
        done = step + 1
        bar.update(1)
    bar.close()
    return ema.cpu(), dict(curve=curve, context_mean=mean, context_std=std, steps_done=done)


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict, extra: dict | None = None) -> None:
    import tempfile

    payload = dict(config=model.config, state_dict=model.state_dict(), meta=meta, **(extra or {}))
    fd, tmp = tempfile.mkstemp(suffix=".pt", dir=path.parent)
    os.close(fd)
    torch.save(payload, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_pack(path: Path, train: dict, val: dict, stride: int, float16: bool) -> None:
    """What prior training needs, small enough to travel: every ``stride``-th training pose and the
    fixed validation batch.  global_orient (N,3), body_pose (N,69); val_* (512,...) float32."""
    dtype = np.float16 if float16 else np.float32
    vb = make_val_batch(val)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, global_orient=train["global_orient"][::stride].astype(dtype),
                        body_pose=train["body_pose"][::stride].astype(dtype),
                        val_global_orient=vb["global_orient"], val_body_pose=vb["body_pose"],
                        meta=json.dumps(dict(stride=stride, float16=float16,
                                             source=train.get("meta", {}).get("data_version", "unknown"))))


def load_pack(path: Path) -> tuple[dict, dict]:
    """``write_pack``'s file -> (train poses as float32 with meta, validation batch)."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        train = dict(global_orient=z["global_orient"].astype(np.float32),
                     body_pose=z["body_pose"].astype(np.float32), meta=dict(data_version=f"pack:{meta['source']}"))
        val = dict(global_orient=z["val_global_orient"], body_pose=z["val_body_pose"])
    return train, val


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lab.data.dataset import load_split

    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m lab train")
    p.add_argument("which", choices=["regressor", "prior", "all", "pack"],
                   help="pack: write what prior training needs into one small file (--out FILE.npz)")
    p.add_argument("--steps", type=int, default=None, help="default: 8000 (regressor), 12000 (prior)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest for these small batches on a busy 2-core machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parameterisation", choices=["eps", "v"], default="v",
                   help="what the prior's network predicts: the paper's eps, or v (better at high noise)")
    p.add_argument("--dataset", default="cache/dataset", help="converted dataset folder, or a pack (.npz)")
    p.add_argument("--width", type=int, default=512, help="prior: hidden width of the denoiser's blocks (paper 1024)")
    p.add_argument("--t-max", type=int, default=None,
                   help="prior: train timesteps uniform over 0..T_MAX (the loop's range) instead of 0..999")
    p.add_argument("--full-fraction", type=float, default=0.2,
                   help="prior, with --t-max: share of timesteps still drawn over 0..999 (sampling, inversion)")
    p.add_argument("--context", choices=LAYOUTS, default="features",
                   help="prior: context layout; features+camera adds where the box sits in the camera (CLIFF)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256 regressor, 128 prior)")
    p.add_argument("--prior-lr", type=float, default=3e-4)
    p.add_argument("--device", default="cpu", help="prior: where the denoiser trains (cuda on a GPU machine)")
    p.add_argument("--amp", action="store_true", help="prior: bf16 autocast")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="prior: wall-time bound; the learning rate decays over whichever ends first")
    p.add_argument("--stride", type=int, default=4, help="pack: keep every STRIDE-th training frame")
    p.add_argument("--float16", action="store_true", help="pack: store poses as float16")
    p.add_argument("--init", help="regressor checkpoint to fine-tune (default: train from scratch)")
    p.add_argument("--levels", nargs="+", default=list(TRAIN_LEVELS),
                   help=f"noise presets cycled over the regressor's steps (default {' '.join(TRAIN_LEVELS)})")
    p.add_argument("--trainable", choices=TRAINABLE, default="all",
                   help="head: only the layers after the features, so the prior's context is unchanged")
    p.add_argument("--lr", type=float, default=1e-3, help="regressor peak learning rate")
    p.add_argument("--checkpoint", type=Path, help="training state written every --checkpoint-every steps")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    p.add_argument("--out", default=str(ASSETS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.which == "pack":
        write_pack(Path(args.out), load_split("train", args.dataset), load_split("val", args.dataset),
                   args.stride, args.float16)
        print(f"wrote {args.out} ({Path(args.out).stat().st_size / 2**20:.1f} MiB)")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dataset.endswith(".npz"):
        train, val_batch = load_pack(Path(args.dataset))
    else:
        train = load_split("train", args.dataset)
        val_batch = None
    if args.init:  # fine-tuning is measured on the same frames as the weights it starts from
        val_batch = dict(np.load(VAL_BATCH_PATH))
    elif val_batch is None:
        val_batch = make_val_batch(load_split("val", args.dataset))
        # next to the weights, except for the engine's own folder: the committed batch lives in the lab
        np.savez_compressed(VAL_BATCH_PATH if out.resolve() == ASSETS else out / VAL_BATCH_PATH.name, **val_batch)
    data_meta = train.get("meta", {})
    base_meta = dict(command="python -m lab train " + " ".join(argv),
                     seed=args.seed, data_version=data_meta.get("data_version", "unknown"),
                     torch=str(torch.__version__))
    if args.which in ("regressor", "all"):
        steps = args.steps or 8000
        t0 = time.time()
        init, init_meta = load_regressor(Path(args.init)) if args.init else (None, {})
        reg, log = train_regressor(train, val_batch, steps, args.seed, batch=args.batch or 256, lr=args.lr,
                                   levels=tuple(args.levels),
                                   init=init, trainable=args.trainable, checkpoint=args.checkpoint,
                                   checkpoint_every=args.checkpoint_every, resume=args.resume)
        meta = dict(base_meta, steps=steps, levels=args.levels, trainable=args.trainable, lr=args.lr,
                    init=(dict(path=args.init, **{k: init_meta.get(k) for k in ("command", "seed", "steps",
                                                                                "data_version")})
                          if args.init else None), seconds=round(time.time() - t0), val=log["val"], curve=log["curve"],
                    parameters=sum(p.numel() for p in reg.parameters()))
        save_checkpoint(out / REGRESSOR_PATH.name, reg, meta)
        print(json.dumps(dict(regressor_val=log["val"], seconds=meta["seconds"]), indent=1))
    if args.which in ("prior", "all"):
        steps = args.steps or 12000
        reg_path = out / REGRESSOR_PATH.name
        reg, _ = load_regressor(reg_path if reg_path.is_file() else REGRESSOR_PATH)
        t0 = time.time()
        model, log = train_prior(reg, train, steps, args.seed, batch=args.batch or 128, lr=args.prior_lr,
                                 hidden=args.width, parameterisation=args.parameterisation, layout=args.context,
                                 t_max=args.t_max, full_fraction=args.full_fraction if args.t_max else 0.0,
                                 device=args.device, amp=args.amp, checkpoint=args.checkpoint,
                                 checkpoint_every=args.checkpoint_every, resume=args.resume,
                                 max_seconds=args.max_seconds)
        val = evaluate_prior(model, reg, log["context_mean"], log["context_std"], BodyModel.load(), val_batch,
                             layout=args.context)
        meta = dict(base_meta, steps=steps, seconds=round(time.time() - t0), curve=log["curve"], val=val,
                    parameters=sum(p.numel() for p in model.parameters()), context_dropout=CONTEXT_DROPOUT,
                    context_layout=args.context, t_max=args.t_max, batch=args.batch or 128,
                    steps_done=log["steps_done"], device=args.device)
        save_checkpoint(out / PRIOR_PATH.name, model, meta,
                        dict(context_mean=log["context_mean"], context_std=log["context_std"]))
        print(json.dumps(dict(prior_val=val, seconds=meta["seconds"]), indent=1))
    return 0
