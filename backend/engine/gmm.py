"""A Gaussian-mixture pose prior (SMPLify's classical prior), fitted by us on the training poses
(``python -m lab fit-gmm``, lab/gmm_fit.py) and committed as backend/assets/pose_gmm.npz.

:class:`MaxMixturePrior` is SMPLify's approximation of the negative log-likelihood:
the minimum over components of the weighted Mahalanobis term (torch, differentiable).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.rotations import matrix_to_axis_angle

GMM_PATH = Path(__file__).resolve().parent.parent / "assets" / "pose_gmm.npz"
POSE_DIM = 69


@dataclass
class GMM:
    """weights (K,), means (K,D), covariances (K,D,D) (float64 numpy)."""
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, weights=self.weights.astype(np.float32), means=self.means.astype(np.float32),
                 covariances=self.covariances.astype(np.float32), meta=np.array(json.dumps(meta or {})))

    @staticmethod
    def load(path: str | Path = GMM_PATH) -> "GMM":
        with np.load(path, allow_pickle=False) as z:
            return GMM(z["weights"].astype(np.float64), z["means"].astype(np.float64),
                       z["covariances"].astype(np.float64))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        chol = np.linalg.cholesky(self.covariances)
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], rng.standard_normal((n, self.means.shape[1])))


class MaxMixturePrior(torch.nn.Module):
    """SMPLify's pose prior: min_k [0.5 (x - mu_k)^T S_k^-1 (x - mu_k) - log w_k + 0.5 log det S_k].

    The exact mixture NLL needs a log-sum-exp; SMPLify keeps only the best component, which is
    cheaper and gives sharper gradients.  The constant D/2 log(2 pi) is dropped.
    forward(pose (B,69) axis-angle) -> (B,)."""

    def __init__(self, gmm: GMM, dtype=torch.float32):
        super().__init__()
        prec_chol = np.linalg.cholesky(np.linalg.inv(gmm.covariances))        # P = L L^T
        log_det = np.linalg.slogdet(gmm.covariances)[1]
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)
        self.register_buffer("means", as_t(gmm.means))                          # (K,D)
        self.register_buffer("prec_chol", as_t(prec_chol))                      # (K,D,D)
        self.register_buffer("offset", as_t(-np.log(gmm.weights) + 0.5 * log_det))  # (K,)

    def components(self, pose: torch.Tensor) -> torch.Tensor:
        """Per-component terms (B,K)."""
        diff = pose[:, None, :] - self.means[None]                             # (B,K,D)
        z = torch.einsum("bkd,kde->bke", diff, self.prec_chol)                 # ||z||^2 = diff^T P diff
        return 0.5 * z.pow(2).sum(-1) + self.offset

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return self.components(pose).min(dim=1).values

    def mixture_nll(self, pose: torch.Tensor) -> torch.Tensor:
        """The mixture's exact negative log-likelihood (B,) (less the same constant): smooth where the
        minimum switches components, so a tiny change of the pose makes a tiny change of its gradient."""
        return -torch.logsumexp(-self.components(pose), dim=1)


def gmm_term(pose_prior: MaxMixturePrior, weight: float):
    """A guidance term (backend.engine.scorehmr.GuidanceTerm): ``weight`` x the GMM's negative log-likelihood
    (the exact mixture's, :meth:`MaxMixturePrior.mixture_nll`) of the 23 body joints' axis-angle, summed over
    a group's samples: rotmats (g,S,24,3,3) -> (g,)."""
    def term(rotmats: torch.Tensor, rot6d: torch.Tensor, start6d: torch.Tensor) -> torch.Tensor:
        g, s = rotmats.shape[:2]
        body = matrix_to_axis_angle(rotmats[:, :, 1:]).reshape(g * s, POSE_DIM)
        return weight * pose_prior.mixture_nll(body).reshape(g, s).sum(1)
    return term
