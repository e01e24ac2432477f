"""The README's main job on a machine without bubblewrap: the example project's offline `code:` rule
(the project's own code) runs as a plain subprocess with a one-line notice (tests/sandbox/test_runs.py
shows that code a message fills in, like a model's code, never does)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import asstctl

PROJECT = Path(asstctl.__file__).resolve().parents[1]


def test_the_readme_main_job_passes_without_bwrap_on_the_path(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    for name in ("asstctl.yaml", "engine-rules.yaml"):
        shutil.copy(PROJECT / name, work / name)
    shutil.copytree(PROJECT / "assistants", work / "assistants")
    (tmp_path / "bin").mkdir()  # a PATH without bwrap (nor anything else: asstctl needs only its Python)
    env = {**os.environ, "PATH": str(tmp_path / "bin"), "PYTHONPATH": str(PROJECT)}
    outputs = []
    for args in (["apply", "--yes"], ["test"]):
        done = subprocess.run([sys.executable, "-m", "asstctl", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=180)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, outputs[-1]
    assert "math-tutor" in outputs[1] and "FAIL" not in outputs[1]
    notices = [line for line in outputs[1].splitlines() if "bwrap is not installed" in line]
    assert len(notices) == 1 and "plain subprocess" in notices[0], outputs[1]
