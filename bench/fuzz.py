"""A longer API fuzzing run than the test suite's: the same schemathesis test, more examples.

It needs the `dev` extra (schemathesis, pytest) and the repository's tests folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = REPO / "tests" / "service" / "test_fuzz.py"


def main(examples: int) -> int:
    if not TEST.is_file():
        raise SystemExit(f"{TEST} is missing: run from a checkout of the repository")
    env = {**os.environ, "XMODAL_FUZZ_EXAMPLES": str(examples)}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", str(TEST)], cwd=REPO, env=env)
