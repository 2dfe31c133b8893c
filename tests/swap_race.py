"""An attacker swapping two directory entries while the pack reads a file (Linux): ``renameat2(RENAME_EXCHANGE)``
in a tight loop in a separate process, so the swaps land between any two system calls of the reader.

``with Swapper(a, b, seconds=3): ...`` exchanges the entries ``a`` and ``b`` (a file, a directory or a symlink each)
until the block ends or ``seconds`` have passed; ``available()`` says whether the system can do it.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

_SWAP_LOOP = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, until = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), time.monotonic() + float(sys.argv[3])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("ready", flush=True)
n = 0
while time.monotonic() < until:
    for _ in range(200):
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            sys.exit(f"renameat2: errno {ctypes.get_errno()}")
    n += 200
if n % 400:  # leave the entries as they were found
    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
"""


def available() -> bool:
    """True on Linux with a libc that exports ``renameat2`` (glibc 2.28+)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL(None), "renameat2")
    except OSError:
        return False


class Swapper:
    """Context manager: a child process exchanges ``a`` and ``b`` for at most ``seconds`` (an even number of
    swaps, so both entries are back in place afterwards)."""

    def __init__(self, a: str, b: str, seconds: float = 3.0) -> None:
        self.a, self.b, self.seconds = os.fspath(a), os.fspath(b), seconds
        self.proc: subprocess.Popen | None = None
        self.deadline = 0.0

    def __enter__(self) -> Swapper:
        self.proc = subprocess.Popen([sys.executable, "-c", _SWAP_LOOP, self.a, self.b, str(self.seconds)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()
        self.deadline = time.monotonic() + self.seconds
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and time.monotonic() < self.deadline

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            _out, err = self.proc.communicate(timeout=self.seconds + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        if exc[0] is None:
            assert self.proc.returncode == 0, err
