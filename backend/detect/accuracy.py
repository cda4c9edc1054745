"""Detector error against true 2D keypoints (the demo reports it; lab.detect.evaluate prints it as a table).

``error_statistics(detected (F,17,3), truth (F,17,2)) -> dict`` per COCO-17 joint (arrays (17,...))
and overall, in the simulator's terms (``lab.sim.detector_noise``):
  ``error_px``        (17,) mean distance detected-truth over the frames where the point is found;
  ``p90_px``          (17,) its 90th percentile;
  ``offset_px``       (17, 2) mean detected - truth (a systematic shift, e.g. a joint centre
                      defined differently from the body model's);
  ``spread_px``       (17, 2) per-axis standard deviation around that offset;
  ``spread_rel``      (17,) mean per-axis std as a fraction of the person's size (the larger side
                      of the true keypoints' box), comparable with ``jitter x JOINT_SIGMA_SCALE``;
  ``missed``          (17,) share of frames where the point has confidence < ``FOUND_CONF``;
  ``swapped``         (17,) share of frames where a left/right pair is closer to the crossed truth
                      (less than half the straight assignment's error) and its true points lie
                      at least ``SWAP_MIN_APART`` x size apart: a left/right swap;
  ``confidence``      (17,) mean confidence where found (``conf_logit0``);
  ``lag1_correlation`` the error's lag-1 autocorrelation over frames (``temporal_rho``);
  ``mean_error_px``, ``frames_missed`` (frames without any point).
"""
from __future__ import annotations

import numpy as np

from backend.contract.layout import COCO17_NAMES

__all__ = ["FOUND_CONF", "error_statistics"]

FOUND_CONF = 0.1          # a point below this confidence counts as missed
SWAP_MIN_APART = 0.05     # a left/right pair is checked for a swap when its true points are this far apart (x size)
_MIRROR = np.array([COCO17_NAMES.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
                    for n in COCO17_NAMES])


def _lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation over axis 0 of (F, ...) residuals, NaN-aware, pooled over the other axes."""
    x = x - np.nanmean(x, axis=0)
    a, b = x[1:], x[:-1]
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sum(a[ok] * b[ok]) / np.sqrt(np.sum(a[ok] ** 2) * np.sum(b[ok] ** 2)))


def error_statistics(detected: np.ndarray, truth: np.ndarray) -> dict:
    """See the module docstring.  detected (F,17,3) [x, y, conf], truth (F,17,2) pixels."""
    found = detected[..., 2] >= FOUND_CONF                                   # (F,17)
    diff = np.where(found[..., None], detected[..., :2] - truth, np.nan)     # (F,17,2)
    dist = np.linalg.norm(diff, axis=-1)                                     # (F,17), NaN where missed
    size = (truth.max(1) - truth.min(1)).max(-1)                             # (F,)
    straight = dist + dist[:, _MIRROR]
    crossed = np.linalg.norm(detected[..., :2] - truth[:, _MIRROR], axis=-1)
    crossed = crossed + crossed[:, _MIRROR]
    # Only pairs whose true points lie apart can be told swapped (feet together, head in profile).
    apart = np.linalg.norm(truth - truth[:, _MIRROR], axis=-1) > SWAP_MIN_APART * size[:, None]
    swapped = (crossed < 0.5 * straight) & apart & found & found[:, _MIRROR]
    offset = np.nanmean(diff, axis=0)
    spread = np.nanstd(diff, axis=0)
    return dict(
        joints=COCO17_NAMES, error_px=np.nanmean(dist, 0), p90_px=np.nanpercentile(dist, 90, axis=0),
        offset_px=offset, spread_px=spread, spread_rel=np.nanmean(spread, -1) / float(np.mean(size)),
        missed=1.0 - found.mean(0), confidence=np.nanmean(np.where(found, detected[..., 2], np.nan), 0),
        swapped=swapped.mean(0), lag1_correlation=_lag1(diff - offset),
        mean_error_px=float(np.nanmean(dist)), frames_missed=int((~found.any(-1)).sum()), frames=len(detected),
        person_size_px=float(np.mean(size)),
    )
