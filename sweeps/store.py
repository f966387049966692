"""The sweep's folder STORAGE/NAME: a local/NFS path or an object-store URI (s3://, gs://), read and
written through pyarrow.fs (lthray.storage) either way."""

from __future__ import annotations

from pathlib import Path

from lthray import storage


class SweepFolder:
    """A sweep's folder STORAGE/NAME (results, the Optuna study, the lock, sweep.json), local or remote."""

    def __init__(self, root: str, name: str) -> None:
        self.uri = storage.is_uri(root)
        self.storage = root.rstrip("/") if self.uri else str(Path(root).expanduser().resolve())
        self.name = name
        self.dir = f"{self.storage}/{name}"

    def path(self, rel: str) -> str:
        return f"{self.dir}/{rel}"

    def exists(self, rel: str) -> bool:
        return storage.exists(self.path(rel))

    def read_text(self, rel: str) -> str:
        return storage.read_text(self.path(rel))

    def write_text(self, rel: str, text: str) -> None:
        storage.write_text(self.path(rel), text)
