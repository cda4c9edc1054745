"""Many clips at once: ``python -m backend batch CLIPS_OR_FOLDERS... --out DIR`` (docs/batch.md).

Each clip runs detect -> refine -> export as one Ray task (:mod:`backend.batch.runner`) through the
same code as ``python -m backend refine`` (:mod:`backend.service`, :mod:`backend.detect`);
:mod:`backend.batch.clip` is the per-clip work, :mod:`backend.batch.clips` finds the clips and keys
their inputs and options for resumption.  Ray is imported only when a run starts.
"""
