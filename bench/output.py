"""Where a benchmark's report goes: printed, and written as markdown and JSON when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(text: str, out: Path | None, data: Any, json_out: Path | None) -> None:
    print(text)
    if out:
        out.write_text(text)
    if json_out:
        json_out.write_text(json.dumps(data, indent=2) + "\n")
