"""Typed errors raised by the index layer."""


class IndexError_(Exception):
    """Base class for index errors (named so it never shadows the builtin IndexError)."""


class IndexBundleError(IndexError_):
    """An index bundle that is missing, incomplete or fails its checksums."""


class EngineMismatchError(IndexError_):
    """An index built by one engine, opened for use with another."""

    def __init__(self, index_engine_id: str, engine_id: str, path: str) -> None:
        super().__init__(
            f"index {path} was built with engine {index_engine_id} but the running engine is "
            f"{engine_id}; rebuild the index with this engine or serve the engine it was built with"
        )
        self.index_engine_id = index_engine_id
        self.engine_id = engine_id
