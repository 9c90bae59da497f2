"""Where a test finds the files of an index version: its one segment's folder."""

from __future__ import annotations

from pathlib import Path

from index import bundle
from index.segment import version_segments


def data_folder(root: Path) -> Path:
    """The folder holding the data files of `root`'s current version, which has one segment."""
    version = bundle.resolve(root)
    segments = version_segments(version, bundle.read_manifest(version, verify=False))
    assert len(segments) == 1, f"{version} has {len(segments)} segments, not one"
    return segments[0][0]
