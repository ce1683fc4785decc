"""Blob storage over Django's storage API (any ``STORAGES`` alias: local files, S3 via django-storages...)."""

from __future__ import annotations

import builtins
import json
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import storages

from ..core.context import check_blob_key
from ..core.errors import BlobNotFound, InvalidBlobKey


class StorageBlobStore:
    """JSON blobs stored as files named ``<prefix>/<key>`` in the storage ``alias``.

    Args:
        alias: a key of ``settings.STORAGES``.
        prefix: the folder every key lives under (``""`` for the storage root).

    Keys are relative paths (``runs/doc/abc/summarize/output.json``); empty keys, absolute paths, backslashes
    and ``.``/``..`` segments raise :class:`~django_workflow_engine.core.errors.InvalidBlobKey`.
    """

    def __init__(self, alias: str = "default", prefix: str = "workflow-engine"):
        self.alias = alias
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_blob_key(self.prefix)

    @property
    def storage(self):
        return storages[self.alias]

    def _name(self, key: str) -> str:
        check_blob_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: Any) -> None:
        name = self._name(key)
        content = json.dumps(data, separators=(",", ":")).encode("utf-8")
        storage = self.storage
        for _ in range(3):
            if storage.exists(name):
                storage.delete(name)
            saved = storage.save(name, ContentFile(content))
            if saved == name:
                return
            # A concurrent put recreated the file and the storage picked another name: undo ours, try again.
            storage.delete(saved)
        raise OSError(f"Could not write blob {key!r}: the storage kept renaming it.")

    def get(self, key: str) -> Any:
        name = self._name(key)
        try:
            with self.storage.open(name, "rb") as fh:
                return json.loads(fh.read().decode("utf-8"))
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def has(self, key: str) -> bool:
        return self.storage.exists(self._name(key))

    def delete(self, key: str) -> None:
        name = self._name(key)
        if self.storage.exists(name):
            self.storage.delete(name)

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted (walks folders with ``listdir``)."""
        if prefix.startswith("/") or "\\" in prefix or ".." in prefix.split("/"):
            raise InvalidBlobKey(f"Invalid blob key prefix {prefix!r}: use a relative path like 'runs/'.")
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        found: list[str] = []
        self._walk(folder, found)
        return sorted(k for k in found if k.startswith(prefix))

    def _walk(self, folder: str, found: builtins.list[str]) -> None:
        """Collect the keys (relative to ``prefix``) of every file under ``folder``."""
        full = "/".join(p for p in (self.prefix, folder) if p)
        try:
            dirs, files = self.storage.listdir(full)
        except (FileNotFoundError, NotADirectoryError):
            return
        base = f"{folder}/" if folder else ""
        found.extend(base + name for name in files)
        for name in dirs:
            self._walk(base + name, found)
