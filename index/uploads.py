"""Images sent for indexing (the service's admin API), kept in the index root rather than in
the collection: one folder per batch, `uploads/<32 hex digits>/`, with their captions. A batch
is published as a new version or not kept at all."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from encoders.captions import CAPTIONS_FILE, captions_text
from encoders.engine import Engine
from index import bundle, update
from index.durable import write_stream, write_text


def add_uploads(engine: Engine, root: Path, files: list[tuple[str, bytes]],
                captions: list[str | None], *, parent: str | None = None) -> bundle.IndexManifest:
    """Store `files` (name, bytes), each with its caption or None, as a new batch of `root`,
    and publish the current version plus them (`update.add_images`, `parent` as there). On
    any failure the batch and its encode checkpoints are removed: nothing is left behind."""
    folder = Path(root) / bundle.UPLOADS / uuid.uuid4().hex
    try:
        folder.mkdir(parents=True)
        for name, data in files:  # synced like every file a version refers to
            write_stream(folder / name, lambda handle, data=data: handle.write(data))
        named = {name: caption for (name, _), caption in zip(files, captions, strict=True)
                 if caption is not None}
        if named:
            write_text(folder / CAPTIONS_FILE, captions_text(named))
        return update.add_images(engine, root, folder, parent=parent, work_root=folder)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
