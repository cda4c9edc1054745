"""The engine's modes, one module each, all called the same way:

    result = <mode>.refine(models, obs, start, options, progress=None, denoiser=None)

``models`` the loaded models (backend.engine.loaded.LoadedModels, e.g. an Engine), ``obs`` the
observations (backend.engine.problems.Observations: (F,...) for the single-view modes frame, video and
motion_video, (V,F,...) for multiview and calibrated), ``start`` the starting estimate (rotmats, betas,
transl and the prior's context, rows laid out as LoadedModels.start makes them, optionally its 'source'),
``options`` the mode's backend.engine.options.ModeOptions, ``progress(done, total)`` the per-iteration hook
and ``denoiser`` eps(x, t, c) in place of the mode's prior (the ablation's variants).  The result holds
rotmats, transl, betas (rows as the start's), iterations and the denoiser evaluations, plus what the mode
adds (frame: fitted, motion_video: contacts and motion, calibrated: world_from_view0).
"""
