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

import contextlib
import ctypes
import glob
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

from tutorial_utils import validate

TMP_SUFFIX = ".tmp"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


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
        with os.fdopen(fd, "wb") as f:   # owns fd from here: closed whatever happens next
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the permissions open() would
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)   # the rename itself survives a power cut
    return path.stat().st_size


def _sync_folder(folder: pathlib.Path) -> None:
    """fsync a folder's entry list where the OS allows it (not on Windows, where a folder cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def source_digest(modules: list) -> str:
    """SHA-256 (hex) of the modules' source files, in order: part of a cache key, so that a change to the
    code that trains a model (a default, a loss, the loop) makes every entry it trained stale."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(pathlib.Path(module.__file__).read_bytes())
    return digest.hexdigest()


def remove_stale_temporaries(folder: str | os.PathLike, *, older_than_s: float = 3600.0) -> int:
    """Delete `.NAME.XXXX.tmp` files that atomic_write left in `folder` when a process was killed.

    Only files older than `older_than_s` seconds are removed, so a write still under way in another
    process is not disturbed. Returns how many were removed.
    """
    validate.nonnegative_float("older_than_s", older_than_s)
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    # mkstemp's own shape, .NAME.<8 random characters>.tmp: a '.notes.tmp' of the user's is not ours
    ours = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TMP_SUFFIX))
    for candidate in (c for c in folder.glob(f".*{TMP_SUFFIX}") if ours.fullmatch(c.name)):
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


def results_dir() -> pathlib.Path:
    """The committed measurements (results/*.json): the copy a wheel carries (tutorial_utils/_results), else
    the results/ folder beside the package in a source checkout or an editable install, so a notebook reads
    them from any working folder (a student edition, an nbgrader course). FileNotFoundError without either."""
    here = pathlib.Path(__file__).resolve()
    for folder in (here.parent / "_results", here.parents[1] / "results"):   # a wheel's own copy first
        if folder.is_dir() and any(folder.glob("*.json")):
            return folder
    raise FileNotFoundError(f"no results/*.json beside the package ({here.parents[1] / 'results'}) nor inside it "
                            f"({here.parent / '_results'}): install it from a clone or from a wheel built from one")


def safe_name(text: str) -> str:
    """text with every character outside [A-Za-z0-9._-] replaced by '_' and no leading dot: a file name
    that stays inside its folder whatever the text (dataset names, presets)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", str(text)).lstrip(".")
    return cleaned or "_"


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False  # e.g. a file system without RENAME_EXCHANGE: the caller falls back


def publish_folder(staged: str | os.PathLike, out: str | os.PathLike) -> None:
    """Make the complete folder `staged` appear as `out`, replacing the old `out` as a set, never file by file.

    Readers see the old set or the new one: where the OS can swap two folders atomically (Linux), it
    does; elsewhere `out` is moved aside, `staged` moved in, and the old set deleted, so an interruption
    leaves either the old folder (beside a hidden `.NAME.old-*`) or the new one. Both folders must be on
    the same file system (stage beside `out`). Side effects: `staged` is consumed; the old `out` is deleted.
    """
    staged, out = pathlib.Path(staged), pathlib.Path(out)
    if not out.exists():
        os.replace(staged, out)
        return
    if _exchange(staged, out):
        shutil.rmtree(staged)  # now holds the old set
        return
    aside = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, aside)
    try:
        os.replace(staged, out)
    except BaseException:
        os.replace(aside, out)  # put the old set back: never leave nothing at `out`
        raise
    shutil.rmtree(aside)


def remove_stale_stages(folder: str | os.PathLike, name: str, *, older_than_s: float = 3600.0) -> int:
    """Delete hidden `.NAME.stage-*` and `.NAME.old-*` folders that a killed publish left in `folder`.

    If NAME itself is missing (a publish killed between moving the old set aside and moving the new one
    in), the newest stale `.NAME.old-*` is moved back to NAME first: the old set, whole, not nothing.
    """
    removed, now, folder = 0, time.time(), pathlib.Path(folder)
    pattern = glob.escape(f".{name}.")   # a name like exp[1] is not a pattern
    asides = [p for p in folder.glob(pattern + "old-*") if p.is_dir() and now - p.stat().st_mtime > older_than_s]
    if asides and not (folder / name).exists():   # (a young one may belong to a publish in progress)
        os.replace(max(asides, key=lambda p: p.stat().st_mtime), folder / name)
    for candidate in folder.glob(pattern + "*"):
        if candidate.is_dir() and (".stage-" in candidate.name or ".old-" in candidate.name) \
                and now - candidate.stat().st_mtime > older_than_s:
            shutil.rmtree(candidate, ignore_errors=True)
            removed += 1
    return removed


MANIFEST = "MANIFEST.json"


def write_manifest(folder: str | os.PathLike) -> dict:
    """Write MANIFEST.json listing every other file of `folder` with its bytes and SHA-256; return it.

    Written last, so a folder with a manifest that verifies (`verify_manifest`) is a complete set.
    """
    folder = pathlib.Path(folder)
    entries = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
               for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}
    manifest = {"files": entries}
    atomic_write(folder / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    return manifest


def verify_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of `folder` if every file it lists is present with its bytes and SHA-256; else ValueError."""
    folder = pathlib.Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{folder}: no readable {MANIFEST}, so not a complete set of outputs ({exc})") from exc
    for name, entry in listed.items():
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            raise ValueError(f"{folder}: {name} is missing or differs from {MANIFEST}")
    return manifest
