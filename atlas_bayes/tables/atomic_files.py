"""Durable, atomic file writes: a reader (or a process killed mid-write) sees the old file or
the new one, never a part of either.

    atomic_write(out / "summary.json", text)          # text or bytes
    with atomic_file(out / "fit.png") as tmp:         # writers that want a file name
        fig.savefig(tmp)

The data go to a unique temporary name in the target's folder (`.<name>.<random>.tmp<suffix>`:
hidden, and keeping the suffix that writers such as matplotlib read the format from), are
flushed and fsynced, then `os.replace`d onto the target, and the folder is fsynced so the
rename survives a power cut. On any error the temporary file is removed and the target is left
as it was. New files get the permissions of an ordinary `open()` (0666 less the umask); a
replaced file keeps its own.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: str | Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8, or bytes) to `path` atomically and durably."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary path beside `path`; when the block ends without an error, fsync it and
    rename it onto `path` (then fsync the folder). On an error, remove it and re-raise."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: str | Path) -> None:
    """Make renames in `folder` durable (where the platform lets a folder be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    """The target's current permissions, or those `open()` would give a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
