"""The admin write side: add and delete images, compact, and reload the served index; each
change publishes a new index version and switches to it with no failed requests.

Changes and reloads are serialised (one at a time) and apply to the index being served: a
change starts from the served version and publishes into the root it was loaded from. It is
refused (409) when that cannot be done faithfully: a version folder is served (pinned by the
configuration, or by a reload that rolled back), or the root's CURRENT has moved on since the
served version was loaded (another writer). Applying it to anything else would change what is
served in a way nobody asked for, or drop someone else's change.

After a change, versions beyond `KEEP_VERSIONS` are pruned, never the served one or its
parent. Reloads reach the configured index root and folders inside it only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from encoders.errors import InputError
from index import bundle, update
from index.errors import IndexBusyError, IndexFailure, StaleVersionError
from index.uploads import add_uploads
from service.config import Settings
from service.errors import Conflict, InvalidQuery, NotReady
from service.leases import Leases
from service.query import QueryService
from service.schemas import KEEP_VERSIONS, ChangeResponse, ReloadResponse

log = logging.getLogger(__name__)


class IndexChanges:
    def __init__(self, leases: Leases, settings: Settings) -> None:
        self._leases = leases
        self._settings = settings
        self._writes = asyncio.Lock()

    async def add_images(self, files: list[tuple[str, bytes]],
                         captions: list[str | None]) -> ChangeResponse:
        """Index `files` (name to store, bytes), each with its caption or None, then serve
        them. They are kept in the index root (`uploads/<batch>/`); the paths results give for
        them are relative to it, as the collection's are to the collection."""
        async with self._writes:
            served, root = self._writable()
            manifest = await self._write(served, root, add_uploads, served.engine, root, files,
                                         captions, parent=served.index_version)
            return await self._switch(served, root, manifest, skipped=manifest.skipped,
                                      added=manifest.count - served.count)

    async def delete(self, ids: Sequence[int]) -> ChangeResponse:
        async with self._writes:
            served, root = self._writable()
            manifest = await self._write(served, root, update.delete_ids, root, list(ids),
                                         parent=served.index_version)
            return await self._switch(served, root, manifest, deleted=len(set(ids)))

    async def compact(self) -> ChangeResponse:
        async with self._writes:
            served, root = self._writable()
            manifest = await self._write(served, root, update.compact, root,
                                         parent=served.index_version)
            return await self._switch(served, root, manifest)

    async def reload(self, given: Path | None) -> ReloadResponse:
        """Load an index beside the serving one, then switch to it; on any error nothing
        changes. `given`: the configured root (None: re-reading its CURRENT) or a folder in it."""
        target = self._reload_target(given)
        async with self._writes:
            served = self._served()
            try:
                new = await asyncio.to_thread(served.with_index, target)
            except (IndexFailure, OSError) as exc:
                raise Conflict(f"index {target} was not loaded, still serving "
                               f"{served.index_version}: {exc}") from exc
            await self._leases.swap(new)
        return ReloadResponse(previous_version=served.index_version,
                              index_version=new.index_version, count=new.count)

    def _served(self) -> QueryService:
        """The service serving now (not the one a request leased: a change or reload may have
        replaced it while that request waited for its turn)."""
        served = self._leases.current
        if served is None:
            raise NotReady("the engine and index are not loaded yet")
        return served

    def _writable(self) -> tuple[QueryService, Path]:
        served = self._served()
        root = served.index_dir
        if root is None or not bundle.is_root(root):
            raise Conflict(f"serving {served.index_version}, a single version folder (pinned by "
                           f"the configuration or a reload), not an index root with "
                           f"{bundle.CURRENT}; changes need a root to publish new versions "
                           f"into: reload one first (POST /v1/admin/index/reload)")
        return served, root

    async def _write(self, served: QueryService, root: Path,
                     change: Callable[..., bundle.IndexManifest], *args: object,
                     **kwargs: object) -> bundle.IndexManifest:
        with _write_errors(root, served.index_version):
            return await asyncio.to_thread(change, *args, **kwargs)

    async def _switch(self, served: QueryService, root: Path, manifest: bundle.IndexManifest,
                      **counts: int) -> ChangeResponse:
        """Serve the version just published, prune old ones, and report the change."""
        new = await asyncio.to_thread(served.with_index, root, manifest.version)
        await self._leases.swap(new)
        pruned = await asyncio.to_thread(_prune, root, manifest.version)
        return ChangeResponse(previous_version=served.index_version, index_version=manifest.version,
                              count=manifest.count, pruned=pruned, **counts)

    def _reload_target(self, given: Path | None) -> Path:
        """The configured root, or a folder inside it. Anything else is refused before it is
        read, with one message whether it exists or not: the admin key reaches no other path."""
        if given is None:
            return self._settings.index_dir
        root = self._settings.index_dir.resolve()
        target = (root / given).resolve()  # an absolute `given` stands alone; links are followed
        if target != root and root not in target.parents:
            raise InvalidQuery("index_dir must be inside the configured index root: the root, "
                               "one of its versions or an index root in it (absolute, or "
                               "relative to the root)")
        return target


@contextlib.contextmanager
def _write_errors(root: Path, served: str) -> Iterator[None]:
    """A failed write is a 4xx naming the cause; nothing was published, so the serving version
    stays as it was: bad input 422, a moved CURRENT or a failed write (read-only volume, disk
    full, permissions) 409."""
    try:
        yield
    except InputError as exc:
        raise InvalidQuery(str(exc)) from exc
    except IndexBusyError as exc:
        raise Conflict(f"{exc}; still serving {served}") from exc
    except StaleVersionError as exc:
        raise Conflict(f"{exc}; this server serves {served}: reload first (POST "
                       f"/v1/admin/index/reload) so that the change applies to what is "
                       f"served") from exc
    except OSError as exc:
        raise Conflict(f"could not write a new version into {root} ({exc.strerror or exc}); "
                       f"still serving {served}") from exc


def _prune(root: Path, serving: str) -> list[str]:
    """Old versions out; a failure here is logged, as the change itself is published."""
    try:
        return update.prune(root, KEEP_VERSIONS, protect={serving})
    except (OSError, IndexFailure, InputError) as exc:
        log.warning("could not prune old versions of %s: %s", root, exc)
        return []
