"""Typed errors raised by the index layer."""


class IndexFailure(Exception):
    """Base class for everything the index layer raises on purpose (not `IndexError`: that
    is Python's own, for a sequence index out of range)."""


class IndexBundleError(IndexFailure):
    """An index bundle that is missing, incomplete or fails its checksums."""


class StaleVersionError(IndexFailure):
    """A change asked to start from a version that the root's CURRENT no longer names."""


class EngineMismatchError(IndexFailure):
    """An index built by one engine, opened for use with another."""

    def __init__(self, index_engine_id: str, engine_id: str, path: str) -> None:
        super().__init__(
            f"index {path} was built with engine {index_engine_id} but the running engine is "
            f"{engine_id}; rebuild the index with this engine or serve the engine it was built with"
        )
        self.index_engine_id = index_engine_id
        self.engine_id = engine_id


class StorageError(OSError):
    """A file of a new version could not be written whole (disk full, quota, read-only
    volume, I/O error). An `OSError`, so every caller that handles failed writes handles it;
    raised for FAISS's and SQLite's own write failures too, which are not `OSError`s."""


class IndexBusyError(IndexFailure):
    """Another writer holds the index root's lock for longer than this writer would wait."""
