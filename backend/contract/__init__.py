"""The contract between the Blender add-on and the engine: numpy only.

Everything both sides read, write or name lives here, once: the SMPL / COCO-17
layouts (``layout``), numpy rotation helpers (``rotations``), frame ranges
(``frames``), reading 2D keypoints (``keypoints``), validating observations
into ``Observations`` (``observations``), pairing footage facts with keypoints
(``shot``), initial estimates (``init_estimates``), the OUT.npz result file and
its ``Result`` value (``results``), the one error type (``errors``) and the command-line options of
the batch that ``python -m backend batch`` and build.py's batch in Blender share (``batch_options``).
``Engine.run`` takes Observations and returns a Result.

Only the standard library and numpy are imported here, so Blender's own Python
can use this package without torch, scipy, OpenCV or smplx
(tests/contract/test_contract.py checks that in a subprocess where they cannot import).
"""
