"""Gaussian diffusion over the 144-d 6D pose: cosine schedule, training loss, deterministic DDIM.

Pure functions on batch-first tensors; the denoiser is any callable eps(x (B,D), t, c (B,C)) with
t (B,) in training and a scalar tensor in the DDIM loops (every sample at the same step).
"""
from __future__ import annotations

import math

import torch

T_STEPS = 1000


def cosine_alphas_cumprod(T: int = T_STEPS, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """alpha_bar_t for t = 0..T-1 (float64), from the cosine schedule with betas clipped at max_beta."""
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.tensor([min(1 - f(i + 1) / f(i), max_beta) for i in range(T)], dtype=torch.float64)  # (cpu)
    return torch.cumprod(1 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward diffusion x_t = sqrt(a_t) x0 + sqrt(1-a_t) noise. x0 (B,D), t (B,) long."""
    a = alphas_cumprod.to(x0)[t][:, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def sample_timesteps(b: int, T: int, generator: torch.Generator | None = None, t_max: int | None = None,
                     full_fraction: float = 0.0) -> torch.Tensor:
    """Training timesteps (b,) long on the generator's device: uniform over 0..T-1, or, with ``t_max``,
    uniform over 0..t_max (the range the refinement loop visits) except a ``full_fraction`` share
    still drawn over 0..T-1 so sampling from noise and DDIM inversion keep a trained model."""
    device = generator.device if generator is not None else "cpu"
    t = torch.randint(0, T, (b,), generator=generator, device=device)
    if t_max is None:
        return t
    low = torch.randint(0, min(int(t_max), T - 1) + 1, (b,), generator=generator, device=device)
    full = torch.rand(b, generator=generator, device=device) < full_fraction
    return torch.where(full, t, low)


def diffusion_loss(eps_model, x0: torch.Tensor, context: torch.Tensor, alphas_cumprod: torch.Tensor,
                   generator: torch.Generator | None = None, t_max: int | None = None,
                   full_fraction: float = 0.0) -> torch.Tensor:
    """Plain L2 loss on the network's own target (the noise, as in the paper, or, for a
    v-parameterised model, v = sqrt(a) noise - sqrt(1-a) x0); timesteps from ``sample_timesteps``."""
    t = sample_timesteps(x0.shape[0], len(alphas_cumprod), generator, t_max, full_fraction).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                        device=generator.device if generator is not None else x0.device).to(x0.device)
    x_t = q_sample(x0, t, noise, alphas_cumprod)
    if getattr(eps_model, "parameterisation", "eps") == "v":
        a = alphas_cumprod.to(x0)[t][:, None]
        return (eps_model.net(x_t, t, context) - (a.sqrt() * noise - (1 - a).sqrt() * x0)).pow(2).mean()
    return (eps_model(x_t, t, context) - noise).pow(2).mean()


def predict_x0(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    return (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()


def ddim_move(x0_hat: torch.Tensor, eps: torch.Tensor, a_next: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) to the noise level a_next, given x0 and eps estimates."""
    return a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps


def timesteps(t_start: int, t_end: int, step: int) -> list[int]:
    """t_start, t_start +/- step, ..., t_end (inclusive), e.g. 0->50 or 50->0 in steps of 2."""
    sign = 1 if t_end >= t_start else -1
    return list(range(t_start, t_end + sign, sign * step))


@torch.no_grad()
def ddim_invert(eps_model, x0: torch.Tensor, context: torch.Tensor, alphas_cumprod: torch.Tensor,
                tau: int, step: int) -> torch.Tensor:
    """Deterministic DDIM inversion of clean x0 up to noise level tau. x0 (B,D) -> x_tau (B,D)."""
    a = alphas_cumprod.to(x0)
    x = x0
    ts = timesteps(0, tau, step)
    for t, t_next in zip(ts[:-1], ts[1:]):
        eps = eps_model(x, torch.tensor(t, device=x.device), context)
        x = ddim_move(predict_x0(x, eps, a[t]), eps, a[t_next])
    return x


@torch.no_grad()
def ddim_sample(eps_model, x: torch.Tensor, context: torch.Tensor, alphas_cumprod: torch.Tensor,
                tau: int, step: int, clip: float | None = None) -> torch.Tensor:
    """Unguided deterministic DDIM from noise level tau down to 0. x (B,D) -> x0 (B,D).

    Level t = 0 (alpha_bar ~ 1 - 4e-5) counts as clean, as in inversion: tau/step evaluations each way.
    ``clip`` bounds the clean estimate (6D entries lie in [-1, 1]); sampling from pure noise needs it,
    since 1/sqrt(alpha_bar) is huge at the last timesteps."""
    a = alphas_cumprod.to(x)
    ts = timesteps(tau, 0, step)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        eps = eps_model(x, torch.tensor(t, device=x.device), context)
        x0 = predict_x0(x, eps, a[t])
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - a[t].sqrt() * x0) / (1 - a[t]).sqrt()
        x = ddim_move(x0, eps, a[t_prev])
    return x
