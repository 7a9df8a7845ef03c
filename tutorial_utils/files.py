"""Files: atomic writes that never leave half a file, stale temporaries, and where caches live.

A file is written to a temporary name beside its destination, flushed to disk, then renamed onto the
destination with `os.replace`, which is atomic on POSIX and Windows: a reader sees the old file or the
new one, never a mix. A process killed mid-write leaves only a hidden `.NAME.XXXX.tmp`;
`remove_stale_temporaries` deletes such leftovers.

Example:
    >>> atomic_write("out.bin", lambda f: f.write(b"abc"))
    3
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> int:
    """Call write(f) on a temporary binary file beside `path`, then move it onto `path`; return its bytes.

    Side effects: creates missing parent folders; replaces `path`. On any error (KeyboardInterrupt
    included) the temporary file is removed and `path` is left as it was.
    """
    path = pathlib.Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"path={str(path)!r} names no file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
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


def remove_stale_temporaries(folder: str | os.PathLike, *, older_than_s: float = 3600.0) -> int:
    """Delete `.NAME.XXXX.tmp` files that atomic_write left in `folder` when a process was killed.

    Only files older than `older_than_s` seconds are removed, so a write still under way in another
    process is not disturbed. Returns how many were removed.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    for candidate in folder.glob(f".*{TMP_SUFFIX}"):
        try:
            if candidate.is_file() and now - candidate.stat().st_mtime > older_than_s:
                candidate.unlink()
                removed += 1
        except OSError:  # removed by someone else meanwhile
            continue
    return removed


def cache_dir(*parts: str) -> pathlib.Path:
    """The folder for caches (teacher checkpoints, notebook files, downloads), optionally a named sub-folder.

    $DC_CACHE_DIR if set, else $XDG_CACHE_HOME/distill-and-compress, else ~/.cache/distill-and-compress:
    never inside the installed package or the source tree. Each part must be a plain name (letters,
    digits, '.', '_', '-', not starting with '.'), so a name cannot lead outside the cache.
    The folder is not created here.
    """
    for part in parts:
        if not isinstance(part, str) or not _SAFE_NAME.fullmatch(part):
            raise ValueError(f"cache folder name {part!r} must be letters, digits, '.', '_' or '-', "
                             f"not starting with '.'")
    configured = os.environ.get("DC_CACHE_DIR")
    if configured is not None and not configured.strip():
        raise ValueError("DC_CACHE_DIR is set but empty; unset it or name a folder")
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "distill-and-compress"
    return pathlib.Path(configured).expanduser().joinpath(*parts) if configured else base.joinpath(*parts)


def safe_name(text: str) -> str:
    """text with every character outside [A-Za-z0-9._-] replaced by '_' and no leading dot: a file name
    that stays inside its folder whatever the text (dataset names, presets)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", str(text)).lstrip(".")
    return cleaned or "_"
