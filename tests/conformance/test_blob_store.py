"""The BlobStore port: the in-memory store and the Django-storage store must behave the same."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_workflow_engine.adapters.blobs import StorageBlobStore
from django_workflow_engine.core.errors import BlobNotFound, InvalidBlobKey
from django_workflow_engine.kernel.memory import InMemoryBlobStore


@pytest.fixture
def storage_root(tmp_path):
    """A fresh FileSystemStorage as the ``default`` alias, rooted in the test's temp dir."""
    config = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=config):  # Django's setting_changed handler resets ``storages``
        yield tmp_path


@pytest.fixture(params=["memory", "storage"])
def blobs(request):
    if request.param == "memory":
        return InMemoryBlobStore()
    request.getfixturevalue("storage_root")
    return StorageBlobStore("default", prefix="engine")


def test_put_get_roundtrip(blobs):
    data = {"text": "héllo", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    blobs.put("a.json", data)
    assert blobs.get("a.json") == data


def test_put_overwrites(blobs):
    blobs.put("a.json", 1)
    blobs.put("a.json", {"v": 2})
    assert blobs.get("a.json") == {"v": 2}
    assert blobs.list("") == ["a.json"]


def test_get_missing_raises(blobs):
    with pytest.raises(BlobNotFound):
        blobs.get("nope.json")


def test_has_and_delete(blobs):
    blobs.put("runs/x/output.json", [1])
    assert blobs.has("runs/x/output.json")
    blobs.delete("runs/x/output.json")
    assert not blobs.has("runs/x/output.json")
    blobs.delete("runs/x/output.json")  # missing: no error
    with pytest.raises(BlobNotFound):
        blobs.get("runs/x/output.json")


def test_list_by_prefix_walks_nested_keys(blobs):
    keys = [
        "runs/wf/r1/a/output.json",
        "runs/wf/r1/a/artifacts/chart%20one.json",
        "runs/wf/r1/b/output.json",
        "runs/wf/r10/a/output.json",
        "other/x.json",
    ]
    for key in keys:
        blobs.put(key, key)
    assert blobs.list("runs/wf/r1/") == [
        "runs/wf/r1/a/artifacts/chart%20one.json",
        "runs/wf/r1/a/output.json",
        "runs/wf/r1/b/output.json",
    ]
    assert blobs.list("runs/wf/r1") == sorted(k for k in keys if k.startswith("runs/wf/r1"))
    assert blobs.list("") == sorted(keys)
    assert blobs.list("missing/") == []
    assert blobs.get("runs/wf/r1/a/artifacts/chart%20one.json") == "runs/wf/r1/a/artifacts/chart%20one.json"


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b", "", "a\\b", "a//b", "./a"])
def test_storage_rejects_bad_keys(storage_root, key):
    store = StorageBlobStore("default", prefix="engine")
    for call in (lambda: store.put(key, 1), lambda: store.get(key), lambda: store.has(key), lambda: store.delete(key)):
        with pytest.raises(InvalidBlobKey):
            call()
    assert list(storage_root.iterdir()) == []


@pytest.mark.parametrize("prefix", ["../", "/etc", "a/../.."])
def test_storage_rejects_bad_list_prefix(storage_root, prefix):
    with pytest.raises(InvalidBlobKey):
        StorageBlobStore("default", prefix="engine").list(prefix)


def test_storage_files_live_under_root_prefix(storage_root):
    StorageBlobStore("default", prefix="/engine/blobs/").put("runs/a.json", {"a": 1})
    assert (storage_root / "engine" / "blobs" / "runs" / "a.json").read_text() == '{"a":1}'
    assert StorageBlobStore("default", prefix="engine").list("") == ["blobs/runs/a.json"]


def test_storage_without_prefix_uses_storage_root(storage_root):
    store = StorageBlobStore("default", prefix="")
    store.put("x/y.json", 3)
    assert (storage_root / "x" / "y.json").exists()
    assert store.list("") == ["x/y.json"]
