"""The ScoreHMR loop: DDIM inversion of the estimate, then guided DDIM back, repeated to convergence.

Samples are laid out group-major: x (G,S,144) where a group is what converges (and is frozen)
together: one frame (S=1), a video window (S=frames), the V views of one instant (S=V).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch

from backend.engine.conditioned import ConditionedDenoiser, condition
from backend.models.diffusion import ddim_invert, ddim_move, predict_x0, timesteps
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix

# The loop's cheaper denoiser paths (lab.bench_speed's profile times them as the denoiser).
FAST_DENOISER_CLASSES = (ConditionedDenoiser,)

# loss(rotmats (g,S,24,3,3), rot6d (g,S,144), transl (g,S,3), groups (g,) long) -> (g,)
GuidanceLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# A denoiser may carry a guidance term of its own as its attribute ``guidance_term``: term(rotmats (g,S,24,3,3),
# rot6d (g,S,144), start6d (g,S,144) the 6D pose the loop started from) -> (g,), added to the loss.  The learned
# priors have none; a classical prior in their place is eps = 0 with such a term (:class:`ClassicalPrior`).
GuidanceTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def null_denoiser(x: torch.Tensor, t, c: torch.Tensor) -> torch.Tensor:
    """eps = 0 for x (B,D): in the loop's place of a prior, its moves are then the guidance alone."""
    return torch.zeros_like(x)


class ClassicalPrior:
    """A denoiser that predicts eps = 0 and carries ``term`` (a GuidanceTerm) as its guidance term: in the loop's
    place of a learned prior its moves are the guidance's, the term's included (the GMM pose prior,
    backend.engine.gmm.gmm_term; the ablation's L2 pull to the start)."""

    def __init__(self, term: GuidanceTerm) -> None:
        self.guidance_term = term

    def __call__(self, x: torch.Tensor, t, c: torch.Tensor) -> torch.Tensor:
        return null_denoiser(x, t, c)


@dataclass
class LoopOptions:
    """Constants of the loop, with the paper's defaults (ALGORITHM.md)."""
    tau: int = 50                 # noise level the estimate is inverted to
    step: int = 2                 # DDIM stride, both ways
    iterations: int = 10          # outer iterations (OPTIM_ITERS)
    guidance_scale: float = 1.0   # eps' = eps + sqrt(1 - a_t) * scale * grad
    # Early stop when |L_prev - L| / max(L_prev, L, 1) < stop_threshold.  The paper's 1e-5 never triggers.
    # Chosen on the tuning subjects: docs/tuning.md#loop-stop-threshold
    stop_threshold: float = 1e-2
    max_step_curvature: float = 1.0  # bound on eta_t * scale * curvature of the guidance loss (0 = no bound)
    camera_lr: float = 1e-2       # Adam on the camera translation, one step per guided step
    optimise_translation: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Problem:
    x0: torch.Tensor              # (G,S,144) initial 6D pose (or (G,S,D) the prior's samples, see decode)
    transl: torch.Tensor          # (G,S,3) initial camera translation ((G,F,3) with decode)
    context: torch.Tensor         # (G,S,C) prior conditioning
    loss: GuidanceLoss
    # The motion prior's samples are whole windows in its own state space: decode(x (g,S,D), groups (g,))
    # -> rotmats (g,F,24,3,3) of the F frames the loss sees.  None: x0 is per-sample 6D pose.
    decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # A stop rule besides the loss change: done(x0 (g,S,D), transl (g,S,3), groups (g,)) -> (g,) bool, asked
    # of the start and after every outer iteration; a group that is done is not moved again.  None: none.
    done: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None


class _MaskedAdam:
    """Adam on a (G,...) tensor where only the given groups step (frozen groups keep their state)."""

    def __init__(self, like: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m, self.v = torch.zeros_like(like), torch.zeros_like(like)
        self.t = torch.zeros(like.shape[0], dtype=like.dtype, device=like.device)

    def step(self, value: torch.Tensor, grad: torch.Tensor, groups: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t[groups] += 1
        shape = (-1,) + (1,) * (value.dim() - 1)
        t = self.t[groups].reshape(shape)
        self.m[groups] = b1 * self.m[groups] + (1 - b1) * grad
        self.v[groups] = b2 * self.v[groups] + (1 - b2) * grad ** 2
        m_hat, v_hat = self.m[groups] / (1 - b1 ** t), self.v[groups] / (1 - b2 ** t)
        value[groups] -= self.lr * m_hat / (v_hat.sqrt() + self.eps)


def _evaluate(problem: Problem, x0: torch.Tensor, transl: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    if problem.decode is not None:
        rotmats = problem.decode(x0, groups)
        return problem.loss(rotmats, matrix_to_rot6d(rotmats).flatten(-2), transl, groups)
    g, s = x0.shape[:2]
    rotmats = rot6d_to_matrix(x0.reshape(g, s, 24, 6))
    return problem.loss(rotmats, x0, transl, groups)


def guidance_steps(alphas_cumprod: torch.Tensor, down: list[int]) -> torch.Tensor:
    """The gradient-descent step each guided DDIM step takes on x0 per unit of guidance scale (float64).

    With y_t = x_t / sqrt(a_t) = x0_hat + sigma_t eps (sigma_t = sqrt((1 - a_t) / a_t)), the guided move
    t -> t' is y_t' = y_t - (sigma_t - sigma_t') eps' with eps' = eps + sigma_t * scale * grad L(x0_hat), so
    the guidance moves x0 by -eta_t * scale * grad L with eta_t = sigma_t (sigma_t - sigma_t').
    down: timesteps tau, ..., 0 -> (len(down) - 1,)."""
    a = alphas_cumprod.double()
    sigma = ((1 - a) / a).sqrt()
    t, t_next = (torch.tensor(x, device=a.device) for x in (down[:-1], down[1:]))
    return sigma[t] * (sigma[t] - sigma[t_next])


def guidance_curvature(problem: Problem, x0: torch.Tensor, transl: torch.Tensor, groups: torch.Tensor,
                       iterations: int = 10) -> torch.Tensor:
    """Largest curvature (Hessian eigenvalue) of each group's guidance loss over its pose, (g,).

    Power iteration with Hessian-vector products (double backward); groups are independent, so one
    batched iteration serves them all.  The start vector is fixed (all ones): the estimate is a smooth,
    deterministic function of the inputs.  Negative curvature (a robust term past its scale) counts as 0."""
    x = x0.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_evaluate(problem, x, transl.detach(), groups).sum(), x, create_graph=True)
    v = torch.ones_like(x)
    lam = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if not grad.requires_grad:                     # a loss linear in the pose: no curvature
        return lam
    for _ in range(iterations):
        v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30).reshape(-1, 1, 1)
        (hv,) = torch.autograd.grad(grad, x, v, retain_graph=True)
        lam = (hv * v).flatten(1).sum(1)
        v = hv.detach()
    return lam.detach().clamp_min(0.0)


def stable_scales(problem: Problem, x0: torch.Tensor, transl: torch.Tensor, eta_max: float,
                  opts: "LoopOptions") -> torch.Tensor:
    """Per-group guidance scale (G,): opts.guidance_scale, lowered where the largest guided step would
    exceed eta * scale * curvature = opts.max_step_curvature (plain descent diverges above 2 and
    overshoots above 1).  This is what keeps a result from jumping with sub-pixel input noise: a
    weight whose step is past the stable range makes the loop amplify any difference."""
    scale = torch.full((x0.shape[0],), float(opts.guidance_scale), dtype=x0.dtype, device=x0.device)
    if opts.max_step_curvature <= 0:
        return scale
    groups = torch.arange(x0.shape[0], device=x0.device)
    with torch.enable_grad():
        lam = guidance_curvature(problem, x0, transl, groups)
    return torch.minimum(scale, opts.max_step_curvature / (eta_max * lam).clamp_min(1e-30))


def with_guidance_term(problem: Problem, term: GuidanceTerm) -> Problem:
    """The problem with ``term`` (see GuidanceTerm) added to its loss, the start being problem.x0's pose."""
    all_groups = torch.arange(problem.x0.shape[0], device=problem.x0.device)
    with torch.no_grad():
        start6d = problem.x0 if problem.decode is None else \
            matrix_to_rot6d(problem.decode(problem.x0, all_groups)).flatten(-2)

    def loss(rotmats, rot6d, transl, groups):
        return problem.loss(rotmats, rot6d, transl, groups) + term(rotmats, rot6d, start6d[groups])
    return replace(problem, loss=loss)


def refine(eps_model, alphas_cumprod: torch.Tensor, problem: Problem, opts: LoopOptions = LoopOptions(),
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Run the loop. Returns x0 (G,S,144), transl (G,S,3), loss (G,), iterations (G,) and evaluation counts."""
    term = getattr(eps_model, "guidance_term", None)
    if term is not None:
        problem = with_guidance_term(problem, term)
    G, S, D = problem.x0.shape
    a = alphas_cumprod.to(problem.x0)
    x0 = problem.x0.clone()
    transl = problem.transl.clone()
    adam = _MaskedAdam(transl, opts.camera_lr)
    all_groups = torch.arange(G, device=x0.device)
    with torch.no_grad():
        loss = _evaluate(problem, x0, transl, all_groups)
    active = torch.ones(G, dtype=torch.bool, device=x0.device)
    if problem.done is not None:
        with torch.no_grad():
            active &= ~problem.done(x0, transl, all_groups)
    iterations = torch.zeros(G, dtype=torch.long, device=x0.device)
    evaluations = 0
    down = timesteps(opts.tau, 0, opts.step)
    flat = lambda t: t.flatten(0, 1)
    scales = stable_scales(problem, x0, transl, float(guidance_steps(alphas_cumprod, down).max()), opts)

    for it in range(opts.iterations):
        groups = all_groups[active]
        if len(groups) == 0:
            break
        n = len(groups)
        ctx = flat(problem.context[groups])
        eps_of = condition(eps_model, ctx)           # one context for all 2 x tau/step evaluations
        x = ddim_invert(lambda x_t, t, c: eps_of(x_t, t), flat(x0[groups]), ctx, a, opts.tau, opts.step)
        tr = transl[groups].clone()
        scale = scales[groups].repeat_interleave(S)[:, None]
        for t, t_prev in zip(down[:-1], down[1:]):
            with torch.no_grad():
                eps = eps_of(x, torch.tensor(t, device=x.device))
            # The denoiser is not differentiated: x0_hat depends on x only through the closed form.
            x0_hat = predict_x0(x, eps, a[t]).detach().requires_grad_(True)
            tr.requires_grad_(opts.optimise_translation)
            L = _evaluate(problem, x0_hat.reshape(n, S, D), tr, groups).sum()
            grads = torch.autograd.grad(L, [x0_hat, tr] if opts.optimise_translation else [x0_hat])
            grad_x = grads[0] / a[t].sqrt()
            with torch.no_grad():
                eps = eps + (1 - a[t]).sqrt() * scale * grad_x
                x = ddim_move(predict_x0(x, eps, a[t]), eps, a[t_prev])
                if opts.optimise_translation:
                    adam.step(transl, grads[1], groups)
                    tr = transl[groups].clone()
        evaluations += 2 * (len(down) - 1) * n * S
        with torch.no_grad():
            new_x0 = x.reshape(n, S, D)
            new_loss = _evaluate(problem, new_x0, transl[groups], groups)
            old = loss[groups]
            converged = (old - new_loss).abs() / torch.maximum(torch.maximum(old, new_loss), torch.ones_like(old)) \
                < opts.stop_threshold
            if problem.done is not None:
                converged |= problem.done(new_x0, transl[groups], groups)
            x0[groups] = new_x0
            loss[groups] = new_loss
            iterations[groups] += 1
            active[groups[converged]] = False
        if progress:
            progress(it + 1, opts.iterations)
    return dict(x0=x0, transl=transl, loss=loss, iterations=iterations, denoiser_evaluations=evaluations,
                guidance_scale=scales)
