"""Typed errors raised by the index layer."""


class IndexError_(Exception):
    """Base class for index errors (named so it never shadows the builtin IndexError)."""


class IndexBundleError(IndexError_):
    """An index bundle that is missing, incomplete or fails its checksums."""


class StaleVersionError(IndexError_):
    """A change asked to start from a version that the root's CURRENT no longer names."""


class EngineMismatchError(IndexError_):
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


class IndexBusyError(IndexError_):
    """Another writer holds the index root's lock for longer than this writer would wait."""
