"""The engine's trained weights on disk: where they live and how they load (training writes them: lab.models.train)."""
from __future__ import annotations

from pathlib import Path

import torch

from backend.models.denoiser import Denoiser
from backend.models.regressor import KeypointRegressor

ASSETS = Path(__file__).resolve().parent.parent / "assets"
REGRESSOR_PATH = ASSETS / "regressor.pt"
PRIOR_PATH = ASSETS / "prior.pt"


def load_regressor(path: Path = REGRESSOR_PATH) -> tuple[KeypointRegressor, dict]:
    """The keypoint regressor (eval mode) and its meta (command, seed, validation numbers)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    reg = KeypointRegressor(**ck["config"])
    reg.load_state_dict(ck["state_dict"])
    return reg.eval(), ck["meta"]


def load_prior(path: Path = PRIOR_PATH) -> tuple[Denoiser, torch.Tensor, torch.Tensor, dict]:
    """The prior (any width), its context standardisation and meta; meta["context_layout"] says how to
    build its context ("features" for checkpoints written before layouts existed)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = Denoiser(**ck["config"])
    model.load_state_dict(ck["state_dict"])
    meta = dict(ck["meta"])
    meta.setdefault("context_layout", "features")
    return model.eval(), ck["context_mean"], ck["context_std"], meta
