# SPDX-License-Identifier: GPL-3.0-or-later
"""Making the worker Python environment: a venv in the add-on's user folder with the pinned torch,
the engine's requirements and the detector's (:func:`setup_commands`), run step by step by
:class:`SetupTask`."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

from .engine import RefineError, backend_root
from .placement import NO_WINDOW, WORKER_VENV, user_dir, venv_python

SETUP = []  # the latest SetupTask, shown in the preferences


def current_task() -> SetupTask | None:
    """The latest set-up task (running or finished), or None."""
    return SETUP[0] if SETUP else None


@functools.cache
def _requirements(root: Path) -> tuple[Path, Path, Path, str]:
    """(engine.txt, detect.txt, constraints.txt, the pinned torch line) shipped next to the engine package."""
    folder = root / "requirements"
    engine_txt, detect_txt, constraints = folder / "engine.txt", folder / "detect.txt", folder / "constraints.txt"
    if not (engine_txt.is_file() and detect_txt.is_file() and constraints.is_file()):
        raise RefineError(f"The engine's requirement files are missing from {folder}: reinstall the extension")
    for line in constraints.read_text().splitlines():
        if line.strip().startswith("torch"):
            return engine_txt, detect_txt, constraints, line.strip()
    raise RefineError(f"{constraints} pins no torch version: reinstall the extension")


def setup_commands(venv: str | Path | None = None, base_python: str | None = None) -> list[list[str]]:
    """The commands that make the worker environment: a venv, pinned torch first, then the
    engine's pinned requirements (torch kept at its pin), then the detector's with --no-deps (as
    scripts/setup_venv.sh does: mediapipe's declared requirements would add a second OpenCV and jax;
    detect.txt pins what it really needs).  The requirement files are read once."""
    venv = Path(venv or user_dir(WORKER_VENV, create=False))
    engine_txt, detect_txt, constraints, torch_line = _requirements(backend_root())
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    return [
        [base_python or sys.executable, "-m", "venv", str(venv)],
        pip + [torch_line],
        pip + ["-r", str(engine_txt), "-c", str(constraints)],
        pip + ["--no-deps", "-r", str(detect_txt), "-c", str(constraints)],
    ]


def shell_line(cmd: list[str]) -> str:
    """A command as one line to paste into a terminal."""
    if sys.platform == "win32":
        return subprocess.list2cmdline(cmd)
    import shlex
    return shlex.join(cmd)


class SetupTask:
    """Runs :func:`setup_commands` one after another as subprocesses, output to a log file.
    Poll with :meth:`poll` (non-blocking) or run with :meth:`run` (blocking); ``last_output`` is the
    log's last line as of the latest poll (what the preferences show)."""

    def __init__(self, commands: list[list[str]], log_path: str | Path) -> None:
        self.commands, self.log_path = list(commands), Path(log_path)
        self.step = 0            # index of the running command
        self.state = "running"   # 'running' | 'done' | 'failed' | 'cancelled'
        self.error = ""
        self.last_output = ""
        self._log = open(self.log_path, "w", encoding="utf-8")  # open across polls, closed by _finish
        self._process = None
        SETUP[:] = [self]

    def poll(self) -> bool:
        """Advance without blocking; returns True once finished."""
        if self.state != "running":
            return True
        if self._process is None:
            self._launch()
        elif (code := self._process.poll()) is not None:
            self._process = None
            if code != 0:
                self._finish("failed", f"Step {self.step + 1} failed (exit code {code}): {self.last_line()}")
            elif self.step + 1 == len(self.commands):
                self._finish("done")
            else:
                self.step += 1
                self._launch()
        if self.state == "running":
            self.last_output = self.last_line()
        return self.state != "running"

    def run(self) -> str:
        while not self.poll():
            time.sleep(0.1)
        return self.state

    def cancel(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait()
        self._finish("cancelled", "Cancelled")

    def last_line(self) -> str:
        if not self._log.closed:
            self._log.flush()
        lines = [ln.strip() for ln in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
        return lines[-1] if lines else ""

    def _launch(self) -> None:
        cmd = self.commands[self.step]
        self._log.write("$ " + shell_line(cmd) + "\n")
        self._log.flush()
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
        try:
            self._process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env, creationflags=NO_WINDOW)
        except OSError as ex:
            self._finish("failed", f"Step {self.step + 1} could not start: {ex}")

    def _finish(self, state: str, error: str = "") -> None:
        self.state, self.error = state, error
        self._log.close()
