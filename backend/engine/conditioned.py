"""The denoiser with its context fixed: what the loop calls 50 times per outer iteration with one context.

The per-frame prior (backend.models.denoiser.Denoiser) concatenates the context c (256 features) to
the pose's hidden state h (144) before each block's LayerNorm and first linear layer.  With c fixed,
that layer's context half is a constant: with z = [h, c] (n = d + C entries), LayerNorm's mean and
variance split into the h part and precomputed sums over c,

    mu = (sum h + sum c) / n,   var = (sum (h - mu)^2 + Q_c + C (m_c - mu)^2) / n

(m_c, Q_c: the mean of c and its centred sum of squares), and the layer W LN(z) + b becomes
rstd * (W_h diag(g_h) h + P_c - mu s) + W beta + b with P_c = W_c diag(g_c) c and s = W g computed once.
That is the same function (up to float round-off), at 144 instead of 400 inputs for the widest matrix
product; the time embedding and FiLM scales are cached per timestep.  Other denoisers (the motion
prior, ablation variants) are called as they are.
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch

from backend.models.denoiser import Denoiser, timestep_embedding

# eps(x (N,D), t scalar tensor) -> (N,D) with the context bound
Conditioned = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Prepared:
    """What :class:`ConditionedDenoiser` derives from a model's weights alone: per block the pose half of the
    first layer with the LayerNorm's gain folded in, w_h (d,H), the context half w_c (C,H), s = W g (H,) and
    W beta + b (H,); and each block's FiLM (scale, shift) per timestep, filled on first use."""

    def __init__(self, model: Denoiser):
        d, steps = model.dim, len(model.alphas_cumprod)
        self.version = _version(model)
        self.layers = []
        with torch.no_grad():
            for block in model.blocks:
                ln, lin = block.mlp[0], block.mlp[1]
                W = lin.weight                                                    # (H, d+C)
                g = ln.weight if ln.weight is not None else torch.ones_like(W[0])
                beta = ln.bias if ln.bias is not None else torch.zeros_like(W[0])
                Wg = W * g                                                        # W diag(g)
                self.layers.append(dict(w_h=Wg[:, :d].T.contiguous(), w_c=Wg[:, d:].T.contiguous(), s=Wg.sum(1),
                                        const=W @ beta + (lin.bias if lin.bias is not None else 0.0), eps=ln.eps))
            self.film = W.new_zeros(len(model.blocks), steps, 2 * d)              # (blocks, T, 2d)
        self.known = torch.zeros(steps, dtype=torch.bool, device=W.device)

    def film_rows(self, model: Denoiser, t: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each block's FiLM (scale, shift): (1,d) for a scalar t, (N,d) for t (N,)."""
        flat = t.reshape(-1)
        missing = flat[~self.known[flat]].unique()
        if len(missing):
            with torch.no_grad():
                temb = model.time_mlp(timestep_embedding(missing, model.dim).to(self.film.dtype))
                for i, block in enumerate(model.blocks):
                    self.film[i, missing] = block.film(temb)
            self.known[missing] = True
        return [self.film[i, flat].chunk(2, dim=-1) for i in range(len(model.blocks))]


def _version(model: Denoiser) -> tuple[int, ...]:
    """The in-place update counters of the model's parameters: a changed weight changes this."""
    return tuple(p._version for p in model.parameters())


_PREPARED: "weakref.WeakKeyDictionary[Denoiser, _Prepared]" = weakref.WeakKeyDictionary()


def prepared(model: Denoiser) -> _Prepared:
    """The model's :class:`_Prepared`, made again if any of its weights changed since."""
    p = _PREPARED.get(model)
    if p is None or p.version != _version(model):
        p = _PREPARED[model] = _Prepared(model)
    return p


class ConditionedDenoiser:
    """A :class:`Denoiser` with its context c (N,C) fixed: ``self(x (N,D), t)`` equals ``model(x, t, c)``
    for a scalar timestep t (every sample at the same step, as in the DDIM loops) or one per sample (N,)."""

    def __init__(self, model: Denoiser, context: torch.Tensor):
        self.model, self.prep = model, prepared(model)
        with torch.no_grad():
            c = context
            m_c = c.mean(-1, keepdim=True)                                       # (N,1)
            self.sum_c, self.m_c = c.sum(-1, keepdim=True), m_c
            self.q_c = (c - m_c).pow(2).sum(-1, keepdim=True)                     # (N,1)
            self.p_c = [c @ layer["w_c"] for layer in self.prep.layers]          # (N,H) per block
        self.n, self.n_c = model.dim + c.shape[-1], c.shape[-1]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model, t = self.model, torch.as_tensor(t, device=x.device)
        h = model.inp(x)
        films = self.prep.film_rows(model, t)
        for block, layer, p_c, (scale, shift) in zip(model.blocks, self.prep.layers, self.p_c, films):
            hf = h * (1 + scale) + shift                                          # (N,d)
            mu = (hf.sum(-1, keepdim=True) + self.sum_c) / self.n
            var = ((hf - mu).pow(2).sum(-1, keepdim=True) + self.q_c + self.n_c * (self.m_c - mu).pow(2)) / self.n
            rstd = (var + layer["eps"]).rsqrt()
            z = torch.addmm(p_c - mu * layer["s"], hf, layer["w_h"]) * rstd + layer["const"]
            mlp = block.mlp
            h = h + mlp[5](mlp[4](mlp[3](mlp[2](z))))                             # GELU, LN, Linear, GELU
        out = model.out(h)
        if model.parameterisation == "eps":
            return out
        a = model.alphas_cumprod.to(x)[t].reshape(-1, 1)
        return (1 - a).sqrt() * x + a.sqrt() * out


def condition(eps_model, context: torch.Tensor) -> Conditioned:
    """eps(x, t) of ``eps_model`` (eps(x, t, c)) with the context (N,C) bound: the exact-algebra shortcut of
    :class:`ConditionedDenoiser` for the per-frame prior's network, a plain closure for anything else."""
    if type(eps_model) is Denoiser and context.shape[-1] > 0:
        return ConditionedDenoiser(eps_model, context)
    return lambda x, t: eps_model(x, t, context)


__all__ = ["ConditionedDenoiser", "condition"]
