"""The watch-fed cache never goes back in time."""

from __future__ import annotations

from stemgen_operator.cache import Store


def obj(name: str, version: int, uid: str = "u1", **extra) -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": str(version)}, **extra}


def test_an_older_event_never_replaces_a_newer_write():
    store = Store()
    store.observe(obj("a", 10, status={"phase": "Queued", "jobName": "sg-a"}))
    store.observe(obj("a", 7, status={"phase": "Pending"}))  # the watch lagging behind our own write
    assert store.items[("ns", "a")]["status"]["jobName"] == "sg-a"
    store.observe(obj("a", 12, status={"phase": "Succeeded"}))
    assert store.items[("ns", "a")]["status"]["phase"] == "Succeeded"


def test_deleted_stays_deleted_but_a_new_namesake_appears():
    store = Store()
    store.observe(obj("a", 5))
    store.observe(obj("a", 9), deleted=True)
    store.observe(obj("a", 8))  # a write's response about the deleted object, arriving late
    assert store.values() == []
    store.observe(obj("a", 20, uid="u2"))
    assert store.items[("ns", "a")]["metadata"]["uid"] == "u2"


def test_listing_replaces_but_keeps_what_is_newer_than_it():
    store = Store()
    store.observe(obj("kept-newer", 50, status={"phase": "Running"}))
    store.observe(obj("gone", 5))
    store.observe(obj("created-after-list", 60))
    store.replace([obj("kept-newer", 40, status={"phase": "Queued"}), obj("listed", 30)], list_version=45)
    assert sorted(key[1] for key in store.items) == ["created-after-list", "kept-newer", "listed"]
    assert store.items[("ns", "kept-newer")]["status"]["phase"] == "Running"
