"""One driver per sweep: a lock file STORAGE/NAME/driver.lock naming its holder.

The holder keeps an exclusive `flock` on the file for its whole life, which the kernel releases when the
process dies however it dies (kill -9 included), and writes into it who it is (host, PID, start time)
and a heartbeat every HEARTBEAT_S. A second driver:
- finds the flock held: exits 2 naming the holder;
- gets the flock but the file names another driver: on this host, a PID that is no longer running (or a
  reused PID) is stale and taken over with one line saying so; on another host, where a shared file
  system may not carry flocks across hosts, a heartbeat older than STALE_S is stale, a fresher one means
  that driver is alive and this one exits 2.
An empty file is a free lock (a driver that ends cleanly empties it; it is never unlinked, so two
drivers can never hold flocks on two different files of one name).

Object stores have neither flocks nor create-if-absent: there the lock is advisory (heartbeat only; two
drivers started within one upload of each other can both pass), and what protects the sweep is that
every row and mask file is written once per (run, level) whoever writes it (lthray.results).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lthray import storage
from sweeps.store import SweepFolder

LOCK = "driver.lock"
HEARTBEAT_S = 15.0
STALE_S = 120.0  # a heartbeat this old on another host means its driver is gone (8 missed beats)


class SweepLocked(Exception):
    """Another driver is running this sweep: one line naming it, exit code 2."""


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID from its holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    now = _proc_start(pid)
    return start is None or now is None or now == start


def _me(started: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()),
            "started": started, "heartbeat": time.time()}


def _who(info: dict[str, Any]) -> str:
    return f"driver PID {info.get('pid')} on host {info.get('host')} (started {info.get('started', '?')})"


def _parse(text: str) -> dict[str, Any] | None:
    try:
        info = json.loads(text) if text.strip() else None
    except ValueError:
        return None  # half-written by a holder killed mid-write: nobody holds it (we have the flock)
    return info if isinstance(info, dict) else None


def judge(info: dict[str, Any] | None, stale_s: float) -> str | None:
    """Why the holder `info` is stale ('' when there is no holder), or None when it must be respected.
    Called with the flock in hand (or on an object store, which has none): a holder alive without its
    flock means a file system that does not carry flocks, so liveness is checked, never assumed."""
    if not info:
        return ""
    if info.get("host") == socket.gethostname():
        if info.get("pid") == os.getpid():
            return ""
        if _alive(int(info.get("pid", -1)), info.get("proc_start")):
            return None
        return "that process is no longer running"
    age = time.time() - float(info.get("heartbeat", 0))
    if age < stale_s:
        return None
    return f"its last heartbeat was {age:.0f} s ago (stale after {stale_s:.0f} s)"


class DriverLock:
    """The held lock; `release()` (or leaving `hold`) frees it."""

    def __init__(self, path: str, fd: int | None, info: dict[str, Any], heartbeat_s: float) -> None:
        self.path, self.fd, self.info = path, fd, info
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._loop, args=(heartbeat_s,), daemon=True, name="lthray-lock")
        self._beat.start()

    def _write(self) -> None:
        text = json.dumps({**self.info, "heartbeat": time.time()})
        if self.fd is None:  # object store: a whole-object upload
            storage.write_text(self.path, text)
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)
        os.fsync(self.fd)

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            with contextlib.suppress(OSError):  # a missed beat is retried; STALE_S allows 8 of them
                self._write()

    def release(self, discard: bool = False) -> None:
        """Free the lock; `discard` also removes the file (a driver refused before it wrote anything)."""
        self._stop.set()
        self._beat.join(timeout=5)
        if self.fd is None:
            with contextlib.suppress(OSError):
                storage.write_text(self.path, "")
            return
        if discard:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        else:
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # drops the flock


def acquire(store: SweepFolder, *, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S,
            say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> DriverLock:
    """Take the sweep's lock, or raise SweepLocked naming its holder."""
    path = store.path(LOCK)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if store.uri:
        old = _parse(storage.read_text(path)) if storage.exists(path) else None
        why = judge(old, stale_s)
    else:
        Path(store.dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            old = _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise SweepLocked(f"sweep {store.dir} is already being run by {_who(old or {})}; wait for it to end, "
                              f"or stop it (kill {(old or {}).get('pid', '<pid>')}) and resume") from None
        old = _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
        why = judge(old, stale_s)
        if why is None:
            os.close(fd)
    if why is None:
        assert old is not None
        beat = time.time() - float(old.get("heartbeat", 0))
        raise SweepLocked(f"sweep {store.dir} is already being run by {_who(old)}, last heartbeat {beat:.0f} s ago; "
                          f"wait for it to end, or stop it and resume (a lock whose heartbeat is over "
                          f"{stale_s:.0f} s old is taken over)")
    if why:
        say(f"taking over the lock of sweep {store.dir} from {_who(old or {})}: {why}")
    lock = DriverLock(path, None if store.uri else fd, _me(started), heartbeat_s)
    lock._write()
    return lock


@contextlib.contextmanager
def hold(store: SweepFolder, **kw: Any) -> Iterator[DriverLock]:
    lock = acquire(store, **kw)
    try:
        yield lock
    finally:
        lock.release()
