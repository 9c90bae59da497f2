"""Where a test finds the files of an index version (its one segment's folder), and a version
rewritten as an older format wrote it."""

from __future__ import annotations

import os
from pathlib import Path

from index import bundle
from index.keywords import KEYWORDS_FILE
from index.segment import version_segments


def data_folder(root: Path) -> Path:
    """The folder holding the data files of `root`'s current version, which has one segment."""
    version = bundle.resolve(root)
    segments = version_segments(version, bundle.read_manifest(version, verify=False))
    assert len(segments) == 1, f"{version} has {len(segments)} segments, not one"
    return segments[0][0]


def as_format_1(root: Path, keywords: bool = True) -> str:
    """Rewrite `root`'s version as format 1 wrote it: every file in the version folder; with
    `keywords` False, as it was written before keyword search, without a keyword index.
    Returns the new version's name, now `CURRENT`."""
    version = bundle.resolve(root)
    manifest = bundle.read_manifest(version)
    segment = bundle.segment_folder(root, manifest.segments[0]["name"])
    info = bundle.segment_files(segment, manifest.segments[0]["name"])
    legacy = root / "v20200101T000000-000000"
    legacy.mkdir()
    for name in info["files"]:
        if keywords or name != KEYWORDS_FILE:
            os.link(segment / name, legacy / name)
    os.link(version / bundle.SKIPPED_FILE, legacy / bundle.SKIPPED_FILE)
    old = bundle.IndexManifest(**{**manifest.__dict__, "segments": [], "format_version": 1,
                                  "factory": info["factory"]})
    bundle.finish_manifest(legacy, old, legacy.name)
    (root / bundle.CURRENT).write_text(legacy.name + "\n")
    return legacy.name
