"""Files on disk: every file the package writes goes through `atomic_write`.

A file is first written to a temporary file in the same folder and then moved over the target with
os.replace, which is atomic on POSIX and Windows: an interrupted run leaves the old file or none,
never half a file.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> int:
    """Call write(f) on a temporary binary file beside `path`, then move it onto `path`; return its bytes.

    Side effects: creates missing parent folders; replaces `path`. On any error the temporary file is
    removed and `path` is left as it was.

    Example:
        >>> atomic_write("out.bin", lambda f: f.write(b"abc"))
        3
    """
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(f"path={str(path)!r} cannot be written ({exc.strerror}); choose a writable folder") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size
