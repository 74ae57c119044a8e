"""The latest known version of every request and runner Job, fed by the watches and our own writes.

Listing everything on each reconcile pass costs the API server O(all requests) per event; under
a burst that listing, not the decisions, was the bottleneck. So passes woken by events read this
cache, and only the periodic full pass lists (and re-seeds it): a restarted operator starts with
a full pass, so the queue is still derived from the cluster, never from memory alone.

Staleness is handled by resourceVersion: an entry is only ever replaced by a newer version, so a
watch event that lags behind our own write (stored at once from the write's response) cannot make
an admitted request look un-admitted, which is the one mistake that could over-fill a pool.
resourceVersions are etcd revisions in every API server in use; if one ever does not parse as an
integer, the newest arrival simply wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import resource as r

Key = tuple[str, str]


def _version(body: r.Body) -> int | None:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


def _key(body: r.Body) -> Key:
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _newer(candidate: r.Body, current: r.Body | None) -> bool:
    if current is None:
        return True
    new, old = _version(candidate), _version(current)
    return new is None or old is None or new >= old


class Store:
    """One kind of object, keyed by namespace/name."""

    def __init__(self) -> None:
        self.items: dict[Key, dict[str, Any]] = {}
        self._deleted_uids: set[str] = set()

    def observe(self, body: r.Body, deleted: bool = False) -> None:
        key = _key(body)
        uid = (body.get("metadata") or {}).get("uid", "")
        current = self.items.get(key)
        if deleted:
            if current is not None and (current.get("metadata") or {}).get("uid", "") in (uid, ""):
                self.items.pop(key, None)
            if uid:
                self._deleted_uids.add(uid)
            return
        if uid and uid in self._deleted_uids:
            return  # a write's response or a late event about an object already gone
        if _newer(body, current):
            self.items[key] = dict(body)

    def replace(self, listed: Iterable[r.Body], list_version: int | None) -> None:
        """A full listing: its versions win unless we already hold a newer one, and objects it
        lacks are dropped unless they appeared after the listing was taken."""
        fresh: dict[Key, dict[str, Any]] = {}
        for body in listed:
            key = _key(body)
            current = self.items.get(key)
            fresh[key] = dict(current) if current is not None and not _newer(body, current) else dict(body)
        for key, current in self.items.items():
            version = _version(current)
            if key not in fresh and list_version is not None and version is not None and version > list_version:
                fresh[key] = current
        self.items = fresh
        if len(self._deleted_uids) > 100_000:  # bounded; a listing has just confirmed what is gone
            self._deleted_uids.clear()

    def values(self) -> list[dict[str, Any]]:
        return list(self.items.values())


class ClusterCache:
    def __init__(self) -> None:
        self.requests = Store()
        self.jobs = Store()
        self.seeded = False
