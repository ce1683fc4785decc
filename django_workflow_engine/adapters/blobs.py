"""Blob storage over Django's storage API (any ``STORAGES`` alias: local files, S3 via django-storages...)."""

from __future__ import annotations

import json
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import storages

from ..core.context import check_blob_key
from ..core.errors import BlobNotFound


class StorageBlobStore:
    """JSON blobs stored as files named ``<prefix>/<key>`` in the storage ``alias``."""

    def __init__(self, alias: str = "default", prefix: str = "workflow-engine"):
        self.alias = alias
        self.prefix = prefix.strip("/")

    @property
    def storage(self):  # type: ignore[no-untyped-def]
        return storages[self.alias]

    def _name(self, key: str) -> str:
        check_blob_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: Any) -> None:
        name = self._name(key)
        storage = self.storage
        if storage.exists(name):
            storage.delete(name)
        storage.save(name, ContentFile(json.dumps(data, separators=(",", ":")).encode("utf-8")))

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
        """Keys starting with ``prefix`` (walks folders with ``listdir``)."""
        base = self.prefix + "/" if self.prefix else ""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        found: list[str] = []
        self._walk(folder, found)
        return sorted(k for k in (f[len(base) :] for f in found) if k.startswith(prefix))

    def _walk(self, folder: str, found: list[str]) -> None:
        full = f"{self.prefix}/{folder}".strip("/") if self.prefix else folder
        try:
            dirs, files = self.storage.listdir(full)
        except (FileNotFoundError, NotADirectoryError):
            return
        found.extend(f"{full}/{name}" for name in files)
        for name in dirs:
            self._walk(f"{folder}/{name}".strip("/"), found)
