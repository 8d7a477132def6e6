"""File plumbing shared by the readers and writers: checked opening and atomic writes.

Every reader starts with `check_readable` so that a missing path, a directory or an empty file gets the same
clear FormatError whatever the format. Every writer goes through `atomic_write`, so a failure half-way never
leaves a truncated file where a good one (or nothing) was before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import FormatError


def check_readable(path: str | os.PathLike, *, allow_empty: bool = False) -> Path:
    """`path` as a Path after checking that it is an existing, readable, (non-empty) regular file."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir():
        raise FormatError(p, "is a directory, not a scene file")
    if not p.is_file():
        raise FormatError(p, "is not a regular file")
    if not os.access(p, os.R_OK):
        raise FormatError(p, "permission denied (file is not readable)")
    if not allow_empty and p.stat().st_size == 0:
        raise FormatError(p, "file is empty (0 bytes)")
    return p


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure delete it.

    The temporary file lives in the destination folder so the final `os.replace` is a same-filesystem
    rename (atomic on POSIX and Windows).
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FormatError(target, f"cannot write: folder '{parent}' does not exist")
    if target.is_dir():
        raise FormatError(target, "cannot write: a directory exists at this path")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the result the permissions any new file would get (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
