"""One driver per sweep (sweeps/lock.py): the lock names its holder, refuses a second driver, and takes
over a stale one with one line: a dead PID on this host, an old heartbeat from another host."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps import lock
from sweeps.store import SweepFolder


def _said():
    lines: list[str] = []
    return lines, lines.append


def _write(store: SweepFolder, **info) -> None:
    Path(store.dir).mkdir(parents=True, exist_ok=True)
    with open(store.path(lock.LOCK), "w") as f:
        json.dump(info, f)


def test_a_second_driver_is_refused_and_named_while_the_first_holds_it(tmp_path):
    store = SweepFolder(str(tmp_path), "s")
    held = lock.acquire(store)
    try:
        with pytest.raises(lock.SweepLocked) as e:
            lock.acquire(store)  # another open file description: flock refuses it even in this process
        msg = str(e.value)
        assert f"PID {held.info['pid']} on host {socket.gethostname()}" in msg and "\n" not in msg
        info = json.loads(open(store.path(lock.LOCK)).read())
        assert info["pid"] == held.info["pid"] and info["host"] == socket.gethostname() and info["started"]
    finally:
        held.release()
    assert open(store.path(lock.LOCK)).read() == ""  # released: empty, never unlinked
    lines, say = _said()
    lock.acquire(store, say=say).release()
    assert lines == []  # a free lock is taken silently


def test_a_dead_pid_on_this_host_is_taken_over_with_one_line(tmp_path):
    store = SweepFolder(str(tmp_path), "s")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write(store, host=socket.gethostname(), pid=dead.pid, proc_start=None, started="then", heartbeat=time.time())
    lines, say = _said()
    lock.acquire(store, say=say).release()
    assert len(lines) == 1 and f"PID {dead.pid}" in lines[0] and "no longer running" in lines[0]


def test_a_live_pid_on_this_host_is_respected_even_without_its_flock(tmp_path):
    store = SweepFolder(str(tmp_path), "s")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write(store, host=socket.gethostname(), pid=alive.pid, proc_start=lock._proc_start(alive.pid),
               started="now", heartbeat=time.time())
        with pytest.raises(lock.SweepLocked, match=f"PID {alive.pid}"):
            lock.acquire(store)
        # the same PID number with another start time is a reused PID: stale
        _write(store, host=socket.gethostname(), pid=alive.pid, proc_start="1", started="long ago", heartbeat=0)
        lines, say = _said()
        lock.acquire(store, say=say).release()
        assert "no longer running" in lines[0]
    finally:
        alive.kill()
        alive.wait()


def test_another_hosts_lock_is_respected_until_its_heartbeat_is_stale(tmp_path):
    store = SweepFolder(str(tmp_path), "s")
    _write(store, host="elsewhere", pid=1234, started="now", heartbeat=time.time() - 10)
    with pytest.raises(lock.SweepLocked, match="PID 1234 on host elsewhere .* last heartbeat 10 s ago"):
        lock.acquire(store, stale_s=60)
    _write(store, host="elsewhere", pid=1234, started="then", heartbeat=time.time() - 90)
    lines, say = _said()
    lock.acquire(store, stale_s=60, say=say).release()
    assert len(lines) == 1 and "host elsewhere" in lines[0] and "last heartbeat was 90 s ago" in lines[0]


def test_the_holder_heartbeats(tmp_path):
    store = SweepFolder(str(tmp_path), "s")
    held = lock.acquire(store, heartbeat_s=0.05)
    try:
        first = json.loads(open(store.path(lock.LOCK)).read())["heartbeat"]
        time.sleep(0.4)
        assert json.loads(open(store.path(lock.LOCK)).read())["heartbeat"] > first
    finally:
        held.release()


def test_on_an_object_store_the_lock_is_advisory_by_heartbeat():
    from lthray import storage

    store = SweepFolder("mock://bucket/lthray", f"s{time.time_ns()}")
    storage.write_text(store.path(lock.LOCK), json.dumps({"host": "elsewhere", "pid": 7, "heartbeat": time.time()}))
    with pytest.raises(lock.SweepLocked, match="PID 7 on host elsewhere"):
        lock.acquire(store)
    held = lock.acquire(store, stale_s=0.0, say=lambda s: None)  # stale: taken over
    assert json.loads(storage.read_text(store.path(lock.LOCK)))["pid"] == held.info["pid"]
    held.release()
    assert storage.read_text(store.path(lock.LOCK)) == ""
