"""What changes a result: EngineOptions (the user's, defaults per mode and variant) and ModeOptions (what
one mode reads, resolved from them for that mode).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from backend.engine.frame_fit import FrameFitOptions
from backend.engine.polish import PolishOptions
from backend.engine.problems import GuidanceWeights
from backend.engine.scorehmr import LoopOptions
from backend.models.motion import MOTION_PRIOR_PATH

# Loop settings that differ from the paper's single-frame defaults (LoopOptions()).
MODE_LOOPS = {
    # Eq. 13, the authors' settings, without the step bound: one scale for all directions starves the slow ones.
    # Chosen on the tuning subjects: docs/tuning.md#mode-loops-multiview
    "multiview": LoopOptions(tau=100, step=10, iterations=2, max_step_curvature=0.0),
    # One body per instant fitted to the triangulation first; its translation stays where the 3D fit put
    # it (modes.calibrated).
    # Chosen on the tuning subjects: docs/tuning.md#mode-loops-calibrated
    "calibrated": LoopOptions(tau=70, step=10, iterations=10, max_step_curvature=0.0, optimise_translation=False),
}

# Video, variant 'ours': windows stop at a 3% loss change instead of 1% (the final fit, backend.engine.polish,
# follows); on the tuning subjects the errors moved by at most 0.07 mm for 9% less time.
# Chosen on the tuning subjects: docs/speed.md#video-stop-threshold
VIDEO_LOOP = LoopOptions(stop_threshold=3e-2)

# Video, variant 'ours': the loop's prior is SMPLify's GMM pose prior (eps = 0 and this weight x the GMM's
# negative log-likelihood in the guidance, backend.engine.gmm.gmm_term), not the learned per-frame prior, which
# was worse on the tuning subjects' clips, simulated and real detections alike (the learned prior stays in the
# paper variant, with EngineOptions.video_prior='learned' and in the gaps' motion prior).
# Chosen on the tuning subjects: docs/ablation_paths.md#video-default
VIDEO_GMM_WEIGHT = 0.1
VIDEO_PRIORS = ("gmm", "learned")

# Uncalibrated views, variant 'ours': Eq. 12 + Eq. 13 guidance without the prior (eps = 0: the loop is then
# gradient descent with the steps sum_t sigma_t (sigma_t - sigma_t')), then the common pose.  The variant
# 'paper' keeps the prior and MODE_LOOPS['multiview'].
# Chosen on the tuning subjects: docs/tuning.md#multiview-without-prior
MULTIVIEW_WITHOUT_PRIOR = LoopOptions(tau=100, step=10, iterations=4, guidance_scale=0.5, max_step_curvature=0.0)


# The motion prior's loop: deterministic DDIM inversion, as the paper.
# Chosen on the tuning subjects: docs/tuning.md#motion-loop
MOTION_LOOP = LoopOptions(tau=200, step=20, iterations=5)
# The motion prior's temporal and translation weights are 4x the variant's (a smoothing of 4 under the
# user's).
# Chosen on the tuning subjects: docs/tuning.md#motion-smoothing
MOTION_SMOOTHING = 4.0


@dataclass
class EngineOptions:
    """Everything that changes a result; defaults are the paper's, `variant='ours'` adds the final smoothing
    fit in video mode (backend.engine.polish)."""
    variant: str = "ours"                 # 'paper' | 'ours'
    loop: LoopOptions | None = None       # None: per-mode defaults (multi-view: tau 100, step 10, 2 iterations)
    weights: GuidanceWeights | None = None
    window: int = 64                      # video: frames per window
    overlap: int = 16                     # video: frames shared by neighbouring windows (blended)
    windows_per_batch: int = 16           # video: memory bound (windows refined at once)
    smoothing: float = 1.0                # scales the temporal terms (N-panel "smoothing strength")
    keypoint_trust: float = 1.0           # scales the keypoint term (N-panel "keypoint trust")
    # video: a learned motion prior checkpoint (backend.models.motion); None keeps the per-frame prior.
    # Its windows are the prior's length and its loop MOTION_LOOP; the foot term is off (the contacts are
    # the prior's own channel).  The temporal term stays (MOTION_SMOOTHING): without it the tuning clips'
    # acceleration error was 43.7 instead of 30.9 mm/frame^2 (docs/motion_prior.md).
    motion_prior: str | None = None
    polish: PolishOptions | None = None   # video: the final smoothing fit (None: the variant's; the paper has none)
    # frame: the fit stage for far starts and the built-in regressor's (backend.engine.frame_fit); None: the
    # variant's ('ours': FrameFitOptions(), the paper: none, the loop for every frame)
    frame_fit: FrameFitOptions | None = None
    # video with the per-frame prior: stretches around frames without keypoints are redone by this motion
    # prior checkpoint (its loop from the per-frame result, seen frames anchoring it) before the final fit;
    # None (or a missing file): the interpolated start alone carries the body across.
    # Chosen on the tuning subjects: docs/tuning.md#gap-motion-prior
    gap_motion_prior: str | None = str(MOTION_PRIOR_PATH)
    # The person's known height in metres (backend.engine.body_size): one shape that tall for the whole input,
    # the start moved in depth by the size change.  None: the regressor's shapes, averaged per clip.
    height: float | None = None
    # video with the per-frame loop, variant 'ours': the loop's pose prior, 'gmm' (VIDEO_GMM_WEIGHT) or 'learned'
    # (the trained per-frame prior; the paper variant always uses it)
    video_prior: str = "gmm"

    def __post_init__(self) -> None:
        if self.video_prior not in VIDEO_PRIORS:
            raise ValueError(f"video_prior {self.video_prior!r}: one of {VIDEO_PRIORS}")

    def resolved(self, mode: str) -> tuple[LoopOptions, GuidanceWeights]:
        """Loop and weights of a mode ('frame', 'video', 'multiview' or 'calibrated': multiview with cameras)."""
        motion = mode == "video" and bool(self.motion_prior)
        default = (MULTIVIEW_WITHOUT_PRIOR if mode == "multiview" and not self.uses_prior(mode)
                   else VIDEO_LOOP if mode == "video" and self.variant == "ours"
                   else MODE_LOOPS.get(mode, LoopOptions()))
        loop = self.loop or (MOTION_LOOP if motion else default)
        if mode == "calibrated":   # the translation is the triangulation fit's (backend.engine.modes.calibrated)
            loop = replace(loop, optimise_translation=False)
        w = self.weights or GuidanceWeights()
        if motion:
            w = replace(w, temporal=w.temporal * MOTION_SMOOTHING)
        w = replace(w, keypoints=w.keypoints * self.keypoint_trust, temporal=w.temporal * self.smoothing)
        return loop, w

    def for_mode(self, mode: str) -> ModeOptions:
        """What the mode ('frame', 'video', 'multiview' or 'calibrated') reads: :meth:`resolved`'s loop and
        weights, and the options of that mode (video: the final fit and, with the per-frame prior and a
        gap_motion_prior file, the motion prior's options for the gaps)."""
        loop, weights = self.resolved(mode)
        video = mode == "video"
        gaps = None
        if video and not self.motion_prior and self.gap_motion_prior and Path(self.gap_motion_prior).is_file():
            gaps = replace(replace(self, motion_prior=self.gap_motion_prior).for_mode("video"), polish=None)
        prior = self.uses_prior(mode)
        gmm_weight = VIDEO_GMM_WEIGHT if video and not prior else 0.0
        return ModeOptions(loop=loop, weights=weights, prior=prior, gmm_weight=gmm_weight, window=self.window,
                           overlap=self.overlap, windows_per_batch=self.windows_per_batch,
                           polish=self.resolved_polish() if video else None,
                           frame_fit=self.resolved_frame_fit() if mode == "frame" else None,
                           motion_prior=self.motion_prior if video else None, gaps=gaps,
                           height=self.height if mode == "calibrated" else None)

    def uses_prior(self, mode: str) -> bool:
        """Whether the mode's loop runs with the learned prior: in variant 'ours' neither uncalibrated views
        (MULTIVIEW_WITHOUT_PRIOR) nor video's per-frame loop with video_prior 'gmm' (VIDEO_GMM_WEIGHT); the
        motion prior always."""
        if self.variant != "ours":
            return True
        if mode == "video":
            return bool(self.motion_prior) or self.video_prior == "learned"
        return mode != "multiview"

    def resolved_frame_fit(self) -> FrameFitOptions | None:
        """Single frames: the fit stage of backend.engine.frame_fit, or None (the paper: the loop only)."""
        return self.frame_fit or (FrameFitOptions() if self.variant == "ours" else None)

    def resolved_polish(self) -> PolishOptions:
        """The video result's final smoothing fit (backend.engine.polish), scaled like the loop's terms."""
        p = self.polish or (PolishOptions() if self.variant == "ours" else PolishOptions(iterations=0))
        return replace(p, keypoints=p.keypoints * self.keypoint_trust, joint_accel=p.joint_accel * self.smoothing)


@dataclass(frozen=True)
class ModeOptions:
    """What one mode reads (EngineOptions.for_mode resolves it): the loop and the guidance weights, and
    for video the windows, the final fit and the bridging of gaps."""
    loop: LoopOptions
    weights: GuidanceWeights
    prior: bool = True                    # the loop with the learned prior (False: eps = 0)
    gmm_weight: float = 0.0               # without the learned prior: the GMM pose prior's weight (0: none)
    window: int = 64                      # video: frames per window (the motion prior: its own length)
    overlap: int = 16                     # video: frames shared by neighbouring windows (blended)
    windows_per_batch: int = 16           # video: memory bound (windows refined at once)
    polish: PolishOptions | None = None   # video: the final smoothing fit (None: none)
    frame_fit: FrameFitOptions | None = None   # frame: the fit stage (None: the loop for every frame)
    motion_prior: str | None = None       # video: the motion prior checkpoint (None: the per-frame prior)
    # video with the per-frame prior: the motion prior's options for the stretches around frames without
    # keypoints (EngineOptions.gap_motion_prior; None: the interpolated start alone carries the body across)
    gaps: "ModeOptions | None" = None
    height: float | None = None           # calibrated views: the known height given to the fitted shape
