"""The diffusion prior's denoiser eps_phi(x_t, t, c) (ScoreHMR's residual MLP with FiLM time conditioning)."""
from __future__ import annotations

import math

import torch
from torch import nn

from backend.models.diffusion import cosine_alphas_cumprod

POSE_DIM = 144  # 24 joints x 6D


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps. t (B,) -> (B,dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DenoiserBlock(nn.Module):
    """h -> h + MLP(LN(concat(FiLM(h, time), c)))."""

    def __init__(self, dim: int, context_dim: int, time_dim: int, hidden: int):
        super().__init__()
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim))
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim + context_dim), nn.Linear(dim + context_dim, hidden), nn.GELU(),
            nn.LayerNorm(hidden), nn.Linear(hidden, dim), nn.GELU(),
        )

    def forward(self, h, temb, c):
        scale, shift = self.film(temb).chunk(2, dim=-1)
        return h + self.mlp(torch.cat([h * (1 + scale) + shift, c], dim=-1))


PARAMETERISATIONS = ("eps", "v")


class DiffusionNet(nn.Module):
    """Base of the diffusion networks: ``net(x, t, c)`` is what the network itself outputs, "eps" (the
    paper) or "v" = sqrt(a) eps - sqrt(1-a) x0 (Salimans & Ho 2022), which at high noise is the clean
    sample itself rather than a tiny correction of x_t; ``forward`` returns eps either way, so samplers
    and guidance are unchanged.  x is flat (B,D) for both the per-frame and the motion prior."""

    def __init__(self, parameterisation: str):
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"parameterisation must be one of {PARAMETERISATIONS}, not {parameterisation!r}")
        self.parameterisation = parameterisation
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod().float(), persistent=False)

    def net(self, x, t, c):
        raise NotImplementedError

    def forward(self, x, t, c):
        out = self.net(x, t, c)
        if self.parameterisation == "eps":
            return out
        a = self.alphas_cumprod.to(x)[torch.as_tensor(t, device=x.device)].reshape(-1, 1)
        return (1 - a).sqrt() * x + a.sqrt() * out


class Denoiser(DiffusionNet):
    """eps_phi(x (B,144), t (B,) or a scalar, c (B,C)) -> (B,144), see :class:`DiffusionNet`.

    A scalar t (every sample at the same step, as in DDIM loops) computes the time embedding and
    the FiLM scales once for the whole batch: about half of the per-sample work at this size."""

    def __init__(self, context_dim: int, dim: int = POSE_DIM, hidden: int = 1024, blocks: int = 3,
                 parameterisation: str = "eps"):
        super().__init__(parameterisation)
        self.config = dict(context_dim=context_dim, dim=dim, hidden=hidden, blocks=blocks,
                           parameterisation=parameterisation)
        time_dim = 4 * dim
        self.dim = dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
        self.inp = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(DenoiserBlock(dim, context_dim, time_dim, hidden) for _ in range(blocks))
        self.out = nn.Linear(dim, dim)

    def net(self, x, t, c):
        """The raw network output (eps or v, see ``parameterisation``)."""
        t = torch.as_tensor(t, device=x.device)
        temb = self.time_mlp(timestep_embedding(t.reshape(-1), self.dim).to(x.dtype))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb, c)
        return self.out(h)
