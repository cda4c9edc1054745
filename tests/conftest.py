"""Suite-wide pytest hooks."""
import os
import sys
import tempfile
from pathlib import Path

_exit_status = 0

try:
    import torch

    # Tests use small tensors: one thread avoids oversubscription stalls on the 2-core machines.
    torch.set_num_threads(1)
except ImportError:  # a venv without torch
    pass


def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        # pytest-xdist: each worker its own temporary folder, for what does not take pytest's tmp_path (the
        # add-on's job folders, build.py's staging, subprocesses), so two workers never share one.
        folder = Path(tempfile.gettempdir()) / f"refine-motion-tests-{worker}"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TMPDIR"] = str(folder)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    # bpy as a Python module can crash while Blender frees itself at interpreter exit (seen on
    # 4.2 LTS: a segfault after every test passed). Results are reported by now: leave directly.
    if "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
