"""Fitting the SMPLify GMM pose prior on the training poses (the engine loads the result, backend.engine.gmm).

    python -m lab fit-gmm [--components 8] [--seed 0] [--dataset cache/dataset] [--out backend/assets/pose_gmm.npz]

EM with full covariances on the 69-d axis-angle ``body_pose`` (numpy, float64, seeded k-means++
start).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.linalg import solve_triangular

from backend.engine.gmm import GMM, GMM_PATH

DEFAULT_COMPONENTS = 8
DEFAULT_MAX_FRAMES = 40_000    # CMU at 24 fps is very redundant: a strided subset fits the same mixture
REG_COVAR = 1e-4               # rad^2 added to every covariance diagonal (joints that never move stay invertible)
EM_TOL = 1e-4                 # stop when the mean log-likelihood (nats per pose) gains less than this
EM_MAX_ITER = 200
KMEANS_ITERS = 10



def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis, keepdims=True))).squeeze(axis)


def _component_log_prob(x: np.ndarray, weights, means, covariances) -> np.ndarray:
    """log(w_k N(x | mu_k, S_k)) for x (N,D) -> (N,K)."""
    n, d = x.shape
    out = np.empty((n, len(weights)))
    for k in range(len(weights)):
        chol = np.linalg.cholesky(covariances[k])
        z = solve_triangular(chol, (x - means[k]).T, lower=True)        # (D,N): L^-1 (x - mu)
        log_det = 2 * np.log(np.diag(chol)).sum()
        out[:, k] = math.log(max(weights[k], 1e-300)) - 0.5 * (d * math.log(2 * math.pi) + log_det + (z * z).sum(0))
    return out


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding followed by a few Lloyd iterations. x (N,D) -> centres (k,D)."""
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.stack(centres)
    for _ in range(KMEANS_ITERS):
        label = (-2 * x @ c.T + (c * c).sum(1)).argmin(1)
        c = np.stack([x[label == j].mean(0) if (label == j).any() else c[j] for j in range(k)])
    return c


def fit_gmm(x: np.ndarray, components: int = DEFAULT_COMPONENTS, seed: int = 0, reg_covar: float = REG_COVAR,
            max_iter: int = EM_MAX_ITER, tol: float = EM_TOL) -> tuple[GMM, dict]:
    """EM for a full-covariance mixture on x (N,D). Returns the mixture and a log (iterations, mean log-lik)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    rng = np.random.default_rng(seed)
    means = _kmeans_pp(x, components, rng)
    label = (-2 * x @ means.T + (means * means).sum(1)).argmin(1)
    resp = np.eye(components)[label]
    prev, history = -np.inf, []
    for it in range(max_iter):
        # M step (from responsibilities), then E step.
        nk = resp.sum(0) + 1e-10
        weights = nk / n
        means = resp.T @ x / nk[:, None]
        covariances = np.empty((components, d, d))
        for k in range(components):
            diff = x - means[k]
            covariances[k] = (resp[:, k, None] * diff).T @ diff / nk[k] + reg_covar * np.eye(d)
        logp = _component_log_prob(x, weights, means, covariances)
        log_norm = _logsumexp(logp, axis=1)
        resp = np.exp(logp - log_norm[:, None])
        ll = float(log_norm.mean())
        history.append(ll)
        if ll - prev < tol:
            break
        prev = ll
    return GMM(weights, means, covariances), dict(iterations=it + 1, mean_log_likelihood=history[-1],
                                                  history=history)


def training_poses(dataset: str | Path | None, max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[np.ndarray, dict]:
    """body_pose (N,69) of the training split, evenly strided down to at most ``max_frames``."""
    from lab.data.dataset import load_split

    train = load_split("train", dataset)
    pose = train["body_pose"]
    stride = max(1, math.ceil(len(pose) / max_frames))
    return pose[::stride].astype(np.float64), dict(frames_total=len(pose), stride=stride,
                                                  data_version=train.get("meta", {}).get("data_version", "unknown"))


def fit_gmm_main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m lab fit-gmm", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="folder with cmu_smpl_train.npz (default cache/dataset)")
    p.add_argument("--components", type=int, default=DEFAULT_COMPONENTS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES)
    p.add_argument("--out", default=str(GMM_PATH))
    args = p.parse_args(argv)
    try:
        x, data_meta = training_poses(args.dataset, args.max_frames)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    gmm, log = fit_gmm(x, args.components, args.seed)
    meta = dict(command=" ".join(["python -m lab fit-gmm", *(argv if argv is not None else sys.argv[1:])]),
                seed=args.seed, components=args.components, frames=len(x), reg_covar=REG_COVAR,
                iterations=log["iterations"], mean_log_likelihood=log["mean_log_likelihood"],
                seconds=round(time.time() - t0, 1), **data_meta)
    gmm.save(args.out, meta)
    print(f"wrote {args.out}: {args.components} components on {len(x)} poses (stride {data_meta['stride']}), "
          f"{log['iterations']} EM iterations, mean log-likelihood {log['mean_log_likelihood']:.2f}, "
          f"weights {np.round(gmm.weights, 3).tolist()}")
    return 0
