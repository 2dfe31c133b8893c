"""Proof that a file was never opened: an audit hook for this process, inotify for another process (a server).

- :class:`OpenedPaths` records every ``open`` audit event (``open()``, ``io.open``, ``os.open``) raised in this
  process while it is active; a refused path must not appear in it.
- :class:`InotifyWatch` (Linux) watches files for ``IN_OPEN``, so a test can tell whether a ComfyUI server running
  in a subprocess opened them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
import threading

_ACTIVE: list[OpenedPaths] = []
_LOCK = threading.Lock()
_HOOKED = False


def _hook(event: str, args: tuple) -> None:
    if event != "open" or not _ACTIVE:
        return
    path = args[0] if args else None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if isinstance(path, str):
        for rec in list(_ACTIVE):
            rec.paths.append(path)


class OpenedPaths:
    """``with OpenedPaths() as seen: ...`` then ``seen.touched(path)``: was ``path`` (or its real path) opened?"""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __enter__(self) -> OpenedPaths:
        global _HOOKED
        with _LOCK:
            if not _HOOKED:  # audit hooks cannot be removed: install one, and let it record only while active
                sys.addaudithook(_hook)
                _HOOKED = True
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with _LOCK:
            _ACTIVE.remove(self)

    def touched(self, path: str) -> bool:
        targets = {os.path.abspath(path), os.path.realpath(path)}
        return any(os.path.abspath(p) in targets or os.path.realpath(p) in targets for p in self.paths)


IN_OPEN = 0x20
IN_ACCESS = 0x01


class InotifyWatch:
    """Linux inotify on a few paths for open/read events; ``events()`` drains what happened since the last call."""

    def __init__(self, paths: list[str]) -> None:
        name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(name, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.wd: dict[int, str] = {}
        for p in paths:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(p), IN_OPEN | IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {p}")
            self.wd[wd] = p

    def events(self) -> list[tuple[str, int]]:
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i + 16 <= len(buf):
                wd, mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                out.append((self.wd.get(wd, "?"), mask))
                i += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def inotify_available() -> bool:
    return sys.platform.startswith("linux") and ctypes.util.find_library("c") is not None
