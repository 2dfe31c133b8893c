"""Containment of file names that come from a prompt: reads stay inside one folder, writes stay inside one folder.

Every prompt is untrusted. A name a user typed (a layout file, a converter's output name) is resolved against its
folder with symlinks followed, and anything that lands outside that folder, is not a regular file (devices, FIFOs,
sockets, directories) or is larger than the caller's limit is refused with one message that says nothing about what
exists on the server. Pure ``os`` code: the ComfyUI glue (which folder, which file list) lives in ``nodes/paths.py``.
"""
from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable

_FORBIDDEN_NAME_CHARS = ("\x00", "/", "\\", ":")


class PathRefused(ValueError):
    """A user-given file name may not be used; the message reveals nothing about the file system."""


def read_refusal(name: object, folder_label: str, max_bytes: int) -> str:
    """The one message for every refused read, whatever the reason (outside, missing, a device, too large)."""
    shown = name[:200] if isinstance(name, str) else type(name).__name__
    return (f"file {shown!r} cannot be read: only regular files of at most {max_bytes / 2**20:g} MB inside "
            f"{folder_label} (or its subfolders) can be used; pick one from the list")


def contained_path(root: str, name: str) -> str | None:
    """The real path of ``name`` under ``root`` (symlinks resolved on both), or None if it is absolute, empty, holds
    a NUL, or resolves outside ``root`` (or to ``root`` itself). Touches no file: only ``realpath``'s lstat calls."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return None
    if os.path.isabs(name) or os.path.splitdrive(name)[0] or name.startswith(("/", "\\")):
        return None
    try:
        root_real = os.path.realpath(root)
        # realpath itself raises when a link is swapped for a file between its lstat and its readlink
        real = os.path.realpath(os.path.join(root_real, name))
        if real == root_real or os.path.commonpath([root_real, real]) != root_real:
            return None
    except (OSError, ValueError):  # a swap under realpath; different drives on Windows
        return None
    return real


def checked_file(root: str, name: str, max_bytes: int, folder_label: str) -> tuple[str, os.stat_result]:
    """(real path, stat) of a readable regular file ``name`` inside ``root`` of at most ``max_bytes``; raise
    :class:`PathRefused` otherwise. Uses ``stat`` only, never ``open``: a FIFO or a device is refused unopened."""
    real = contained_path(root, name)
    try:
        st = os.stat(real) if real is not None else None
    except (OSError, ValueError):
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
        raise PathRefused(read_refusal(name, folder_label, max_bytes))
    return real, st


def _open_flags() -> int:
    return (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
            | getattr(os, "O_CLOEXEC", 0))


def open_beneath(root_real: str, real: str, flags: int | None = None, mode: int = 0o644) -> int:
    """A read-only descriptor of ``real`` (a symlink-free path under the resolved folder ``root_real``), opened one
    component at a time from ``root_real`` without following a symlink at any step. A directory or file swapped for
    a symlink after ``realpath`` has looked makes the open fail (``OSError``) instead of leading outside the folder.
    Where the platform cannot open relative to a directory descriptor, only the last component is unfollowed.
    ``flags`` (default: read-only, non-blocking) apply to the last component, always with ``O_NOFOLLOW``."""
    flags = (_open_flags() if flags is None else flags) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return os.open(real, flags, mode)
    parts = os.path.relpath(real, root_real).split(os.sep)
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise FileNotFoundError(real)
    dfd = os.open(root_real, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                          dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(parts[-1], flags, mode, dir_fd=dfd)
    finally:
        os.close(dfd)


def read_contained(root: str, name: str, max_bytes: int, folder_label: str) -> bytes:
    """The bytes of ``name`` inside ``root`` (see :func:`checked_file`), read with at most ``max_bytes`` + 1 bytes
    buffered. The file is opened once, component by component from ``root`` with no symlink followed at any step
    (:func:`open_beneath`), and the opened file is re-checked (same inode, a regular file, within the size) before
    one byte is read, so swapping a file or a directory for a symlink between the check and the open is refused
    with the same message, never read and never a bare ``OSError``."""
    real, st = checked_file(root, name, max_bytes, folder_label)
    try:
        fd = open_beneath(os.path.realpath(root), real)
    except (OSError, ValueError):
        raise PathRefused(read_refusal(name, folder_label, max_bytes)) from None
    try:
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(f.fileno())
            if (not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
                    or now.st_size > max_bytes):
                raise PathRefused(read_refusal(name, folder_label, max_bytes))
            data = f.read(max_bytes + 1)
    except OSError:
        raise PathRefused(read_refusal(name, folder_label, max_bytes)) from None
    if len(data) > max_bytes:
        raise PathRefused(read_refusal(name, folder_label, max_bytes))
    return data


def create_new(dir_fd: int | None, folder: str, name: str, data: bytes) -> None:
    """Create the file ``name`` (a bare name) in an opened folder (``dir_fd``; ``folder`` where the platform has no
    directory descriptors) with ``data``: ``O_CREAT | O_EXCL | O_NOFOLLOW``, so an existing entry, a symlink
    (dangling or not) included, raises ``FileExistsError`` and is never written through."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))
    if dir_fd is None:
        fd = os.open(os.path.join(folder, name), flags, 0o644)
    else:
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def output_file(folder: str, name: str, suffix: str, overwrite: bool) -> str:
    """Path for writing ``name`` (``suffix`` appended when missing) directly inside ``folder``.

    ``name`` must be a bare file name (no folder separators, no drive, not only the suffix). An existing file is
    refused unless ``overwrite``; an existing symlink or non-regular entry is always refused (a write must never
    land outside ``folder``)."""
    clean = name.strip() if isinstance(name, str) else ""
    if clean and not clean.endswith(suffix):
        clean += suffix
    if (not clean or clean == suffix or clean in (".", "..") or any(c in clean for c in _FORBIDDEN_NAME_CHARS)
            or clean.startswith(".")):
        raise PathRefused(f"output name {str(name)[:200]!r} is not allowed: give a plain file name ending in "
                          f"{suffix} (no folders, not starting with '.'); it is written into the model folder")
    dst = os.path.join(folder, clean)
    if os.path.lexists(dst):
        if not overwrite:
            raise PathRefused(f"output {clean!r} already exists in the model folder; set overwrite to replace it "
                              "or choose another output name")
        if os.path.islink(dst) or not os.path.isfile(dst):
            raise PathRefused(f"output {clean!r} exists and is not a regular file; choose another output name")
    return dst


def write_into(dst: str, write: Callable[[str], None], overwrite: bool) -> None:
    """Run ``write(tmp)`` on a fresh temporary file next to ``dst`` and move it into place: replacing ``dst`` only
    when ``overwrite``, otherwise failing with :class:`PathRefused` if ``dst`` appeared meanwhile. A partial write
    never leaves a half file under the final name, and a symlink at ``dst`` is replaced, never written through."""
    folder = os.path.dirname(dst)
    fd, tmp = tempfile.mkstemp(prefix=".ifa-", suffix=".part", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, dst)
            return
        try:
            os.link(tmp, dst)  # atomic "create only if absent"
        except FileExistsError:
            raise PathRefused(f"output {os.path.basename(dst)!r} already exists in the model folder; set overwrite "
                              "to replace it") from None
        except OSError:  # a file system without hard links
            if os.path.lexists(dst):
                raise PathRefused(f"output {os.path.basename(dst)!r} already exists in the model folder") from None
            os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def model_name_ok(name: object) -> bool:
    """True if a model-list name is a relative path that cannot climb out of its folder (no absolute path, no
    drive, no ``..`` component, no NUL)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return False
    if os.path.isabs(name) or os.path.splitdrive(name)[0] or name.startswith(("/", "\\")):
        return False
    return ".." not in name.replace("\\", "/").split("/")
