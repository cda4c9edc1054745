"""The research side of Refine Motion: benchmarks, ablation, simulator, data conversion, training, detector
calibration, reports and figures (``python -m lab <command>``).  It imports ``backend``; ``backend`` never imports it,
and the extension zip ships none of it."""
