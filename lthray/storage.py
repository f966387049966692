"""Where things are stored: local folders and object stores behind one pyarrow.fs interface, and the one
temp-file-then-rename used for every local file that must appear whole or not at all.

`pyarrow.fs.FileSystem.from_uri` resolves both 's3://bucket/x' and '/local/x' to (filesystem, path), so
code that lists, reads or writes results never branches on where they live. Only publishing a result row
locally needs more than pyarrow offers (a hard link: atomic *and* never overwriting): `publish_table`,
which result rows and mask files share.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class StorageError(OSError):
    """A file could not be written (full disk, I/O error): nothing partial was published."""


def write_failed(path: str | Path, e: OSError) -> StorageError:
    """The one-line error of a failed write, naming the file and the cause."""
    code = errno.errorcode.get(e.errno or 0, "")
    cause = f"{e.strerror or e}" + (f" ({code})" if code else "")
    return StorageError(e.errno, f"could not write {path}: {cause}; nothing partial was published (the old "
                                f"file, if any, is intact): free space or fix the disk, then resume")


def check_fault(path: str | Path) -> None:
    """Fault-injection hook for tests (LTHRAY_FAULT_FSYNC=ERRNO:SUBSTRING, e.g. ENOSPC:__L001.parquet): the
    write of any file whose path contains SUBSTRING fails at its fsync, as a full or failing disk does."""
    spec = os.environ.get("LTHRAY_FAULT_FSYNC")
    if spec:
        name, _, part = spec.partition(":")
        if part and part in str(path):
            code = getattr(errno, name)
            raise OSError(code, os.strerror(code), str(path))


def is_uri(location: str | Path) -> bool:
    """'s3://bucket/x', 'gs://...': storage reached through pyarrow.fs rather than the local disk."""
    return "://" in str(location) and not str(location).startswith("file://")


@lru_cache(maxsize=16)
def _from_uri(root: str) -> pafs.FileSystem:
    # One filesystem object per bucket: S3 clients are costly to make (and a mock:// one keeps its files).
    return pafs.FileSystem.from_uri(root)[0]


def resolve(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a folder, a file:// URI or an object-store URI."""
    text = str(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), str(Path(text.removeprefix("file://")).expanduser().resolve())
    scheme, _, rest = text.partition("://")
    bucket = rest.split("/", 1)[0]
    return _from_uri(f"{scheme}://{bucket}"), rest.rstrip("/")


def exists(location: str | Path) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(folder: str | Path, suffix: str) -> list[str]:
    """Published files named *suffix in `folder` (hidden '.x' and '_x' files are never results), sorted."""
    fs, base = resolve(folder)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    root = str(folder).rstrip("/")
    return [f"{root}/{n}" for n in names if n.endswith(suffix) and not n.startswith((".", "_"))]


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode()


def write_bytes(location: str | Path, payload: bytes) -> None:
    """Write a file whole: locally through a temp file and a rename, on an object store in one upload (an
    object appears when its upload completes). The one place that branches on where a file lives."""
    fs, path = resolve(location)
    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write(Path(path), lambda fh: fh.write(payload))
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(payload)


def read_bytes(location: str | Path) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_text(location: str | Path, text: str) -> None:
    """Write a small text file whole (see write_bytes)."""
    write_bytes(location, text.encode())


class Unsealed(ValueError):
    """A sealed file that cannot be trusted: truncated, altered, or not of the expected kind."""


class ChecksumMismatch(Unsealed):
    """A sealed file whose bytes are not the ones sealed (truncated, altered) or that is no sealed file."""


def seal(magic: bytes, obj: object) -> bytes:
    """lthray's one checkpoint format: `magic`, the sha256 of the torch.save bytes, then those bytes. The
    trial's state.pt and the sweep's shared levels both use it; a kill -9 mid-write is caught by the
    rename (atomic_write), silent corruption by the checksum."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    blob = buf.getvalue()
    return magic + hashlib.sha256(blob).digest() + blob


def unseal(data: bytes, magic: bytes, *, legacy: bool = False) -> dict:
    """The object `seal` wrote, loaded as plain tensors (weights_only: a checkpoint is data, never code to
    unpickle); Unsealed when the checksum or the bytes are wrong. `legacy`: accept bytes without `magic`
    (state.pt files written before checksums), checked by torch's own zip reader only."""
    import io

    import torch

    if data.startswith(magic):
        digest, blob = data[len(magic) : len(magic) + 32], data[len(magic) + 32 :]
        if hashlib.sha256(blob).digest() != digest:
            raise ChecksumMismatch(f"checksum mismatch ({len(data)} bytes; truncated or altered)")
    elif legacy:
        blob = data
    else:
        raise ChecksumMismatch("checksum mismatch (not a sealed lthray file)")
    try:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:
        raise Unsealed(f"not a readable checkpoint ({type(e).__name__}: {e})") from None


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the hidden sibling .NAME.lock of `path` (a local file) while the body
    runs: processes that need one expensive file (a concept bank) build it once, the others wait, then
    read it. flock: released by the kernel if the holder dies, so a killed builder never blocks anyone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def set_aside(location: str | Path) -> str:
    """Rename a corrupt file to a hidden sibling (readers skip dot-files) so it can be rewritten and
    still be looked at; returns the new location."""
    fs, path = resolve(location)
    head, _, name = path.rpartition("/")
    aside = f"{head}/.{name}.{uuid.uuid4().hex[:8]}.corrupt"
    fs.move(path, aside)
    return aside


def temp_name(path: Path) -> Path:
    """A hidden, unique sibling of `path` (readers of the folder skip dot-files)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a temp file and os.replace: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            check_fault(path)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise write_failed(path, e) from e
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj: object, path: Path) -> None:
    """torch.save, published atomically (checkpoints, concept caches)."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def _write_remote(fs: pafs.FileSystem, base: str, name: str, write: Callable[[BinaryIO], object]) -> bool:
    """Object stores publish an object whole when its upload completes, so no temp file is needed; they
    have no create-if-absent, so two writers of one level may both upload (the same row, last wins)."""
    path = f"{base}/{name}"
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return False
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(path) as out:
        write(out)
    return True


def publish_table(folder: str | Path, name: str, table: pa.Table) -> bool:
    """Publish `table` as folder/name exactly once (`publish`). Rows and mask files use it."""
    return publish(folder, name, lambda fh: pq.write_table(table, fh))


def publish(folder: str | Path, name: str, write: Callable[[BinaryIO], object]) -> bool:
    """Publish folder/name, written by `write(file)`, exactly once (False, writing nothing, if it exists):
    a hard link from a temp file locally, a whole-object upload on object stores."""
    fs, base = resolve(folder)
    if not isinstance(fs, pafs.LocalFileSystem):
        return _write_remote(fs, base, name, write)
    return _publish_local(Path(base) / name, write)


def _publish_local(final: Path, write: Callable[[BinaryIO], object]) -> bool:
    """Temp file, fsync, then a hard link: unlike a rename, a link fails if the target exists, so the
    first finisher of a level wins and a row is never overwritten (pyarrow.fs has no such primitive)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        # A writer SIGKILLed between its link and its cleanup left a temp file beside a published row;
        # the next writer of the level (a resumed trial) is the one that finds it.
        _clear_stale(final)
        return False
    tmp = temp_name(final)
    try:
        try:
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                check_fault(final)
                os.fsync(fh.fileno())
        except OSError as e:
            raise write_failed(final, e) from e
        pause = float(os.environ.get("LTHRAY_FAULT_WRITE_PAUSE") or 0)
        if pause > 0:  # fault-injection hook: lets a test SIGKILL us while a file is half-published
            time.sleep(pause)
        try:
            os.link(tmp, final)  # atomic and never overwrites: the first finisher wins
        except FileExistsError:
            return False
        except FileNotFoundError:
            if final.exists():  # a writer that published this level first cleared our temp file as stale
                return False
            raise
        _fsync_dir(final.parent)
        _clear_stale(final)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _clear_stale(final: Path) -> None:
    """Remove the temp files of `final` once it is published: left by writers killed mid-write or between
    link and cleanup. A live writer whose temp file goes finds `final` published and gives up (above)."""
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
