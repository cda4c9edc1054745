"""Packing and training of the motion prior (backend.models.motion).

    python -m lab train pack-motion --out cache/pack_motion.npz      # subset of the CMU clips, <= 25 MiB
    python -m lab train motion-prior --dataset cache/pack_motion.npz --device cuda --steps 20000 \\
        --checkpoint out/motion.state --resume --out out/motion

The pack is self-contained (the GPU machine gets only the working tree): every ``--every``-th
training clip and validation clip at the full 24 frames/s, axis-angle poses in float16, translations
in float32 (velocities are differences of centimetres) and the foot contact labels of the truth,
computed here with the body model.  Training draws random windows of W frames from the packed
clips, encodes them on the device and trains the v-parameterised diffusion loss of the per-frame
prior (backend.models.diffusion.diffusion_loss); resumable like the other models.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from backend.models.diffusion import cosine_alphas_cumprod, diffusion_loss
from backend.models.motion import DEFAULT_FRAMES, MotionDenoiser, contact_labels, encode
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix
from lab.models.train import _cosine_lr, load_training_state, save_checkpoint, save_training_state

MOTION_PRIOR_NAME = "motion_prior.pt"
PACK_MIB = 25.0
VAL_SHARE = 0.08          # of the pack's bytes for validation clips
BYTES_PER_FRAME = 72 * 2 + 3 * 4 + 4   # float16 pose, float32 translation, uint8 contacts


def _select_clips(lengths: np.ndarray, every: int, max_frames: int) -> np.ndarray:
    """Every ``every``-th clip index, thinned evenly until their frames fit ``max_frames``."""
    chosen = np.arange(0, len(lengths), every)
    while lengths[chosen].sum() > max_frames and len(chosen) > 1:
        keep = np.unique(np.linspace(0, len(chosen) - 1, int(len(chosen) * 0.95)).round().astype(int))
        chosen = chosen[keep]
    return chosen


def _clip_contacts(bm, betas: np.ndarray, aa: np.ndarray, transl: np.ndarray, fps: float, offsets) -> np.ndarray:
    """Truth contacts (F,4) uint8 of one clip: axis-angle (F,72), transl (F,3) in the Y-up world."""
    from backend.body.body_model import pose_to_rotmats
    from backend.engine.world import FOOT_JOINTS

    feet = []
    with torch.no_grad():
        for s in range(0, len(aa), 4096):
            a = torch.as_tensor(aa[s:s + 4096], dtype=torch.float32)
            R = pose_to_rotmats(a[:, :3], a[:, 3:])
            j = bm.joints_fast(R, torch.as_tensor(betas, dtype=torch.float32),
                               torch.as_tensor(transl[s:s + 4096], dtype=torch.float32)).joints
            feet.append(j[:, list(FOOT_JOINTS)].numpy())
    return contact_labels(np.concatenate(feet).astype(np.float64), fps, offsets).astype(np.uint8)


def pack_split(data: dict, every: int, max_bytes: float, prefix: str) -> dict:
    """The packed arrays of one split (names prefixed ``prefix``)."""
    from backend.body.body_model import BodyModel
    from backend.engine.world import sole_offsets

    bm = BodyModel.load()
    betas = np.asarray(data["betas"], np.float32)
    with torch.no_grad():
        rest = bm(torch.eye(3).expand(1, 24, 3, 3), torch.as_tensor(betas))
    offsets = sole_offsets(rest.joints[0].numpy(), rest.vertices[0].numpy())
    chosen = _select_clips(data["clip_length"], every, int(max_bytes // BYTES_PER_FRAME))
    fps = float(data["fps"])
    aa, transl, contacts, starts, lengths = [], [], [], [], []
    for c in chosen:
        s, n = int(data["clip_start"][c]), int(data["clip_length"][c])
        a = np.concatenate([data["global_orient"][s:s + n], data["body_pose"][s:s + n]], 1)
        tr = data["transl"][s:s + n]
        starts.append(sum(lengths))
        lengths.append(n)
        aa.append(a.astype(np.float16))
        transl.append(tr.astype(np.float32))
        contacts.append(_clip_contacts(bm, betas, a, tr, fps, offsets))
    return {f"{prefix}pose": np.concatenate(aa), f"{prefix}transl": np.concatenate(transl),
            f"{prefix}contacts": np.concatenate(contacts), f"{prefix}clip_start": np.asarray(starts, np.int64),
            f"{prefix}clip_length": np.asarray(lengths, np.int64),
            f"{prefix}clip_ids": np.asarray(data["clip_ids"])[chosen]}


def pack(dataset: str, out: Path, every: int = 3, mib: float = PACK_MIB) -> dict:
    """Writes the pack; the frame budget starts from the float16 data compressing to ~0.75 and
    shrinks until the file is within ``mib``."""
    from lab.data.dataset import load_split

    splits = {split: load_split(split, dataset) for split in ("train", "val")}
    budget = mib * 2 ** 20 / 0.75
    while True:
        arrays = {}
        for split, prefix, share in (("train", "", 1 - VAL_SHARE), ("val", "val_", VAL_SHARE)):
            arrays.update(pack_split(splits[split], every, budget * share, prefix))
        meta = dict(fps=float(splits["train"]["fps"]), every=every,
                    data_version=splits["train"]["meta"].get("data_version", "unknown"),
                    frames=int(len(arrays["pose"])), val_frames=int(len(arrays["val_pose"])),
                    clips=int(len(arrays["clip_start"])), contact_rate=float(arrays["contacts"].mean()))
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **arrays, meta=np.array(json.dumps(meta)))
        size = out.stat().st_size / 2 ** 20
        if size <= mib:
            return dict(meta, mib=round(size, 2))
        budget *= 0.97 * mib / size


class MotionWindows:
    """Random windows of W frames of a pack (one split), encoded on ``device``.

    ``time_scale`` (lo, hi): training windows are read at a random rate in [lo, hi] source frames per
    window frame (linear interpolation, rotations re-orthonormalised), so the prior also knows the
    motion at other frame rates than the data's 24 (30 fps footage is a rate of 0.8)."""

    def __init__(self, pack: dict, prefix: str, frames: int, device, time_scale: tuple[float, float] = (1.0, 1.0)):
        from backend.rotations import axis_angle_to_matrix
        from lab.data.dataset import window_starts

        self.frames, self.device = frames, torch.device(device)
        aa = torch.as_tensor(pack[f"{prefix}pose"].astype(np.float32), device=self.device)
        self.rotmats = axis_angle_to_matrix(aa.reshape(-1, 24, 3))                      # (N,24,3,3)
        self.transl = torch.as_tensor(pack[f"{prefix}transl"], dtype=torch.float32, device=self.device)
        self.contacts = torch.as_tensor(pack[f"{prefix}contacts"], dtype=torch.float32, device=self.device)
        clips = dict(clip_start=pack[f"{prefix}clip_start"], clip_length=pack[f"{prefix}clip_length"])
        self.time_scale = time_scale
        self.span = int(math.ceil(max(time_scale[1], 1.0) * (frames - 1))) + 1   # source frames a window may read
        self.starts = window_starts(clips, self.span, 1)

    def encode(self, starts: np.ndarray, rates: np.ndarray | None = None) -> torch.Tensor:
        """Windows starting at the absolute frames ``starts`` (B,), read at ``rates`` (B,) source
        frames per frame (None: every frame) -> state (B,W,152)."""
        first = torch.as_tensor(starts, device=self.device)[:, None]
        t = torch.arange(self.frames, device=self.device)
        if rates is None:
            idx = first + t
            return encode(self.rotmats[idx], self.transl[idx], self.contacts[idx])[0]
        pos = first + torch.as_tensor(rates, dtype=torch.float32, device=self.device)[:, None] * t
        lo = pos.floor().long()
        hi = torch.minimum(lo + 1, first + self.span - 1)
        a = (pos - lo)[..., None]
        lerp = lambda x: x[lo] * (1 - a.reshape(*a.shape, *[1] * (x.dim() - 2))) \
            + x[hi] * a.reshape(*a.shape, *[1] * (x.dim() - 2))
        rotmats = rot6d_to_matrix(matrix_to_rot6d(lerp(self.rotmats)))
        return encode(rotmats, lerp(self.transl), lerp(self.contacts))[0]

    def sample(self, rng: np.random.Generator, batch: int) -> torch.Tensor:
        starts = self.starts[rng.integers(0, len(self.starts), batch)]
        lo, hi = self.time_scale
        return self.encode(starts, rng.uniform(lo, hi, batch) if hi > lo else None)


def channel_statistics(windows: MotionWindows, n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (152,) of the state over ``n`` random training windows (all frames)."""
    x = windows.sample(np.random.default_rng(seed), n).flatten(0, 1)
    return x.mean(0), x.std(0)


@torch.no_grad()
def validation_loss(model: MotionDenoiser, windows: MotionWindows, alphas: torch.Tensor, seed: int = 1234,
                    batch: int = 512) -> float:
    """Diffusion loss on the validation windows (half-overlapping), fixed timesteps and noise."""
    starts = windows.starts[:: max(windows.frames // 2, 1)]
    g = torch.Generator(device=windows.device).manual_seed(seed)
    losses = []
    model.eval()
    for s in range(0, len(starts), batch):
        x0 = model.standardise(windows.encode(starts[s:s + batch]))
        losses.append(float(diffusion_loss(model, x0, x0.new_zeros(len(x0), 0), alphas, g)) * len(x0))
    model.train()
    return sum(losses) / max(len(starts), 1)


def train_motion_prior(pack: dict, steps: int, seed: int, device, *, frames: int = DEFAULT_FRAMES, batch: int = 256,
                       lr: float = 3e-4, config: dict | None = None, checkpoint: Path | None = None,
                       checkpoint_every: int = 1000, resume: bool = False, log_every: int = 200,
                       time_limit: float | None = None, stop_at: int | None = None,
                       validate: bool = True,
                       time_scale: tuple[float, float] = (1.0, 1.0)) -> tuple[MotionDenoiser, dict]:
    """Trains from scratch (or resumes); returns the EMA model and a log (curve, steps done, val loss).

    ``stop_at`` / ``time_limit`` end the run early (the training state is saved: ``resume`` continues
    it with the same schedule, so the weights end as an uninterrupted run's)."""
    torch.manual_seed(seed)
    device = torch.device(device)
    if device.type == "cuda":  # TF32 matmuls: several times faster, far below the loss noise
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rng = np.random.default_rng(seed)
    g = torch.Generator(device=device).manual_seed(seed)
    train, val = MotionWindows(pack, "", frames, device, time_scale), MotionWindows(pack, "val_", frames, device)
    model = MotionDenoiser(frames, **(config or {})).to(device)
    model.set_statistics(*channel_statistics(train, seed=seed))
    ema = copy.deepcopy(model).requires_grad_(False)
    both = torch.nn.ModuleDict(dict(model=model, ema=ema))  # one training state holds both
    alphas = cosine_alphas_cumprod().float().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=1e-4)
    curve, start = [], 0
    if resume and checkpoint is not None and checkpoint.is_file():
        start, curve = load_training_state(checkpoint, both, opt, g, rng)
        print(f"resuming from step {start} ({checkpoint})", flush=True)
    t0, running, step = time.time(), [], start
    no_context = torch.zeros(batch, 0, device=device)
    for step in range(start, steps):
        if step == stop_at or (time_limit is not None and time.time() - t0 > time_limit):
            print(f"stopping at step {step} of {steps} (resume with --resume)", flush=True)
            break
        x0 = model.standardise(train.sample(rng, batch))
        loss = diffusion_loss(model, x0, no_context, alphas, g)
        _cosine_lr(opt, step, steps, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        running.append(loss.detach())
        if step % log_every == 0 or step == steps - 1:
            curve.append(dict(step=step, loss=float(torch.stack(running).mean()), seconds=round(time.time() - t0, 1)))
            running = []
            print(json.dumps(curve[-1]), flush=True)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            save_training_state(checkpoint, step + 1, both, opt, g, rng, curve)
    else:
        step = steps
    done = step
    if checkpoint is not None:
        save_training_state(checkpoint, done, both, opt, g, rng, curve)
    ema.eval()
    val_loss = (lambda m: validation_loss(m, val, alphas)) if validate else (lambda m: float("nan"))
    return ema, dict(curve=curve, steps_done=done, val_loss=val_loss(ema), val_loss_raw=val_loss(model),
                     train_windows=len(train.starts),
                     val_windows=len(val.starts))


def load_pack(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m lab train")
    p.add_argument("which", choices=["pack-motion", "motion-prior"])
    p.add_argument("--dataset", help="pack-motion: the converted dataset folder (default cache/dataset); "
                                     "motion-prior: the pack (.npz)")
    p.add_argument("--out", required=True, help="pack-motion: the pack file; motion-prior: the output folder")
    p.add_argument("--every", type=int, default=3, help="pack-motion: every n-th clip")
    p.add_argument("--mib", type=float, default=PACK_MIB, help="pack-motion: size bound of the pack")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--time-scale", type=float, nargs=2, default=[0.8, 1.2], metavar=("LO", "HI"),
                   help="training windows read at a random rate in [LO, HI] frames per frame (frame-rate cover)")
    p.add_argument("--no-validation", action="store_true", help="skip the validation loss (timing runs)")
    p.add_argument("--stop-at", type=int, help="stop (and save the training state) at this step")
    p.add_argument("--time-limit", type=float, help="seconds; stop early (and save) when reached")
    p.add_argument("--checkpoint", type=Path, help="training state written every --checkpoint-every steps")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.which == "pack-motion":
        print(json.dumps(pack(args.dataset or "cache/dataset", out, args.every, args.mib), indent=1))
        return 0
    data = load_pack(args.dataset or "cache/pack_motion.npz")
    t0 = time.time()
    model, log = train_motion_prior(
        data, args.steps, args.seed, args.device, frames=args.frames, batch=args.batch, lr=args.lr,
        config=dict(width=args.width, layers=args.layers), checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every, resume=args.resume, time_limit=args.time_limit, stop_at=args.stop_at,
        log_every=args.log_every, validate=not args.no_validation,
        time_scale=tuple(args.time_scale))
    meta = dict(command="python -m lab train " + " ".join(argv), seed=args.seed, steps=args.steps,
                time_scale=args.time_scale,
                steps_done=log["steps_done"], batch=args.batch, lr=args.lr, seconds=round(time.time() - t0),
                data=data["meta"], val_loss=log["val_loss"], val_loss_raw=log["val_loss_raw"],
                train_windows=log["train_windows"], val_windows=log["val_windows"], curve=log["curve"],
                parameters=sum(p.numel() for p in model.parameters()), torch=str(torch.__version__),
                device=str(args.device))
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / MOTION_PRIOR_NAME, model.cpu(), meta)
    (out / "motion_prior.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "curve"}, indent=1))
    print(json.dumps(dict(val_loss=log["val_loss"], val_loss_raw=log["val_loss_raw"], steps_done=log["steps_done"],
                          seconds=meta["seconds"]), indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
