"""files: atomic writes (all or nothing, open()'s permissions), stale temporaries, the cache folder, safe names."""

import hashlib
import os
import pathlib
import stat
import types
import tempfile
import time

import pytest

from tutorial_utils import files


@pytest.fixture
def umask_022():
    """A known umask for permission checks, restored after."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_write_writes_the_bytes_and_returns_their_count(tmp_path):
    """Guards: the file holds exactly what write() wrote and the return value is its size."""
    path = tmp_path / "out.bin"
    payload = bytes(range(256)) * 3
    assert files.atomic_write(path, lambda f: f.write(payload)) == len(payload)
    assert path.read_bytes() == payload
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]  # no temporary left beside it


def test_atomic_write_replaces_an_existing_file_and_creates_parents(tmp_path):
    """Guards: missing parent folders are created, and an existing file is replaced, not appended to."""
    path = tmp_path / "a" / "b" / "out.bin"
    files.atomic_write(path, lambda f: f.write(b"old contents, longer"))
    assert files.atomic_write(str(path), lambda f: f.write(b"new")) == 3
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["out.bin"]


def test_atomic_write_gives_the_permissions_open_would(tmp_path, umask_022):
    """Guards: mkstemp's private 0600 must not leak into the result; others can read the file, as with open()."""
    with open(tmp_path / "reference.bin", "wb") as f:
        f.write(b"x")
    files.atomic_write(tmp_path / "atomic.bin", lambda f: f.write(b"x"))
    mode = stat.S_IMODE((tmp_path / "atomic.bin").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "reference.bin").stat().st_mode) == 0o644
    assert mode & stat.S_IROTH and mode & stat.S_IRGRP


def test_atomic_write_follows_a_stricter_umask(tmp_path):
    """Guards: the umask is honoured (not a fixed 0644): umask 077 gives 0600, as open() would."""
    previous = os.umask(0o077)
    try:
        files.atomic_write(tmp_path / "private.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    """Guards: an exception (Ctrl-C included) half way through leaves the old file intact and removes the temporary."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"old model")

    def write(f):
        f.write(b"half of a new")
        raise error

    with pytest.raises(type(error)):
        files.atomic_write(path, write)
    assert path.read_bytes() == b"old model"
    assert os.listdir(tmp_path) == ["model.pt"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    """Guards: when there was no old file, a failed write must not leave a partial one behind."""
    def write(f):
        f.write(b"abc")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        files.atomic_write(tmp_path / "new.bin", write)
    assert os.listdir(tmp_path) == []


def test_an_unwritable_path_is_a_clear_oserror(tmp_path):
    """Guards: a destination whose parent is a regular file is an OSError naming the path, not a bare traceback."""
    (tmp_path / "plain-file").write_bytes(b"")
    target = tmp_path / "plain-file" / "out.bin"
    with pytest.raises(OSError) as info:
        files.atomic_write(target, lambda f: f.write(b"x"))
    assert str(target) in str(info.value) and "cannot be written" in str(info.value)
    assert os.listdir(tmp_path) == ["plain-file"]


@pytest.mark.parametrize("path", ["", ".", "..", "folder/.."])
def test_a_path_naming_no_file_is_a_valueerror(path, tmp_path, monkeypatch):
    """Guards: '' or '.' must not turn into a hidden temporary renamed onto a folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="names no file"):
        files.atomic_write(path, lambda f: f.write(b"x"))
    assert os.listdir(tmp_path) == []


def _age(path: pathlib.Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_remove_stale_temporaries_removes_only_old_leftovers(tmp_path):
    """Guards: old `.NAME.XXXX.tmp` files go; recent ones (a write under way) and every other file stay."""
    def leftover(name: str) -> pathlib.Path:   # named as atomic_write's mkstemp names them
        return pathlib.Path(tempfile.mkstemp(dir=tmp_path, prefix=f".{name}.", suffix=".tmp")[1])
    old = [leftover("model.pt"), leftover("data.npz")]
    recent = leftover("model.pt")
    others = [tmp_path / "model.pt", tmp_path / "old.tmp", tmp_path / ".hidden", tmp_path / ".model.pt.tmp.bak",
              tmp_path / ".notes.tmp", tmp_path / ".model.pt.k3j9x2.tmp"]   # the user's own dot files
    for path in [*old, recent, *others]:
        path.write_bytes(b"x")
    stale_folder = tmp_path / ".folder.x.tmp"
    stale_folder.mkdir()
    for path in [*old, *others, stale_folder]:
        _age(path, 2 * 3600)
    _age(recent, 60)

    assert files.remove_stale_temporaries(tmp_path) == 2
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {recent.name, stale_folder.name, *(p.name for p in others)}


def test_remove_stale_temporaries_honours_the_age_threshold(tmp_path):
    """Guards: older_than_s is the cut-off: a 10-minute-old temporary stays at 1 h and goes at 5 min."""
    leftover = tmp_path / ".x.bin.abcd_123.tmp"   # mkstemp's 8 random characters
    leftover.write_bytes(b"x")
    _age(leftover, 600)
    assert files.remove_stale_temporaries(tmp_path) == 0 and leftover.exists()
    assert files.remove_stale_temporaries(tmp_path, older_than_s=300) == 1 and not leftover.exists()


def test_remove_stale_temporaries_finds_what_atomic_write_leaves(tmp_path, monkeypatch):
    """Guards: the temporary name atomic_write uses is the one the cleaner looks for."""
    made = []
    real_mkstemp = files.tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        made.append(pathlib.Path(name))
        return fd, name

    monkeypatch.setattr(files.tempfile, "mkstemp", recording_mkstemp)
    files.atomic_write(tmp_path / "model.pt", lambda f: f.write(b"abc"))
    (temporary,) = made
    assert temporary.parent == tmp_path and temporary.name.startswith(".model.pt.")
    temporary.write_bytes(b"ab")  # what a process killed before the rename would leave
    _age(temporary, 7200)
    assert files.remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_remove_stale_temporaries_on_a_missing_folder_is_zero(tmp_path):
    """Guards: cleaning a cache that does not exist yet is not an error."""
    assert files.remove_stale_temporaries(tmp_path / "missing") == 0


# --- cache_dir and safe_name --------------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No cache variables set, HOME in a temporary folder."""
    monkeypatch.delenv("DC_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_cache_dir_defaults_to_home_cache(clean_env, tmp_path):
    """Guards: without variables the cache is ~/.cache/distill-and-compress, never the source tree."""
    assert files.cache_dir() == tmp_path / "home" / ".cache" / "distill-and-compress"
    assert files.cache_dir("teachers") == tmp_path / "home" / ".cache" / "distill-and-compress" / "teachers"
    assert not (tmp_path / "home").exists()  # not created here


def test_cache_dir_follows_xdg_cache_home(clean_env, tmp_path):
    """Guards: $XDG_CACHE_HOME replaces ~/.cache; an empty one is ignored, as the XDG spec says."""
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir("a", "b") == tmp_path / "xdg" / "distill-and-compress" / "a" / "b"
    clean_env.setenv("XDG_CACHE_HOME", "")
    assert files.cache_dir() == tmp_path / "home" / ".cache" / "distill-and-compress"


def test_dc_cache_dir_wins_over_everything(clean_env, tmp_path):
    """Guards: $DC_CACHE_DIR is used as is (no distill-and-compress suffix), before XDG, with ~ expanded."""
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("DC_CACHE_DIR", str(tmp_path / "mine"))
    assert files.cache_dir() == tmp_path / "mine"
    assert files.cache_dir("notebooks") == tmp_path / "mine" / "notebooks"
    clean_env.setenv("DC_CACHE_DIR", "~/c")
    assert files.cache_dir() == tmp_path / "home" / "c"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_dc_cache_dir_is_refused(clean_env, value):
    """Guards: DC_CACHE_DIR='' must not silently mean the current folder."""
    clean_env.setenv("DC_CACHE_DIR", value)
    with pytest.raises(ValueError, match="DC_CACHE_DIR is set but empty"):
        files.cache_dir()


@pytest.mark.parametrize("part", ["a/b", "..", ".", ".hidden", "", "../etc", "a\\b", "x y", 3, None])
def test_cache_dir_refuses_names_that_could_leave_the_cache(clean_env, part):
    """Guards: a sub-folder name cannot climb out of the cache or hide itself."""
    with pytest.raises(ValueError, match="cache folder name"):
        files.cache_dir("ok", part)


@pytest.mark.parametrize("text, expected", [
    ("../x", "_x"),
    ("a/b", "a_b"),
    ("mnist-5k", "mnist-5k"),
    ("v1.2_final", "v1.2_final"),
    ("...", "_"),
    ("", "_"),
    (".bashrc", "bashrc"),
    ("é é", "___"),
])
def test_safe_name_maps_any_text_to_a_plain_file_name(text, expected):
    """Guards: safe_name has no '/', no leading '.', and is accepted by cache_dir as one folder inside it."""
    name = files.safe_name(text)
    assert name == expected
    assert "/" not in name and not name.startswith(".")


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b/c", "./.", "..\\..", "fashion mnist (v2)", "/abs"])
def test_safe_names_stay_inside_the_cache(clean_env, text):
    """Guards: whatever the text, cache_dir(safe_name(text)) is accepted and is a direct child of the cache."""
    path = files.cache_dir(files.safe_name(text))
    assert path.parent == files.cache_dir()


def test_results_dir_is_the_repositorys_results_folder():
    folder = files.results_dir()
    assert folder.name == "results" and (folder / "kd-sweep.json").is_file()


def test_only_old_stage_and_old_set_folders_of_that_name_are_removed(tmp_path):
    """Guards: a killed publish leaves .NAME.stage-* / .NAME.old-* folders; only those, only for NAME, only
    older than the threshold (a run in progress beside it keeps its young stage folder), never files."""
    old = time.time() - 7200
    for name in (".run.stage-abc", ".run.old-def", ".run.stage-young", ".other.stage-x", ".run.keep", "run"):
        (tmp_path / name).mkdir()
    (tmp_path / ".run.stage-file").write_text("a file, not a folder")
    for name in (".run.stage-abc", ".run.old-def", ".other.stage-x", ".run.keep", "run", ".run.stage-file"):
        os.utime(tmp_path / name, (old, old))
    assert files.remove_stale_stages(tmp_path, "run") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.stage-x", ".run.keep", ".run.stage-file",
                                                          ".run.stage-young", "run"]


def test_a_publish_killed_between_its_two_moves_gets_the_old_set_back_not_nothing(tmp_path):
    # where folders cannot be swapped atomically: `run` moved aside, then killed before the new set moved in
    old = time.time() - 7200
    (tmp_path / ".run.old-4242").mkdir()
    (tmp_path / ".run.old-4242" / "ledger.json").write_text("the old set")
    (tmp_path / ".run.stage-abc").mkdir()
    for name in (".run.old-4242", ".run.stage-abc"):
        os.utime(tmp_path / name, (old, old))
    assert files.remove_stale_stages(tmp_path, "run") == 1               # the stage; the old set is restored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (tmp_path / "run" / "ledger.json").read_text() == "the old set"
    # a young old set may be another publish between its two moves: left alone, neither restored nor deleted
    (tmp_path / "run").rename(tmp_path / ".run.old-99")
    os.utime(tmp_path / ".run.old-99")                                 # moved aside just now
    assert files.remove_stale_stages(tmp_path, "run") == 0 and not (tmp_path / "run").exists()


def test_source_digest_changes_with_any_module_and_with_their_order(tmp_path):
    first, second = tmp_path / "a.py", tmp_path / "b.py"
    first.write_text("LR = 1e-3\n")
    second.write_text("EPOCHS = 15\n")
    modules = [types.SimpleNamespace(__file__=str(first)), types.SimpleNamespace(__file__=str(second))]
    before = files.source_digest(modules)
    assert before == hashlib.sha256(b"LR = 1e-3\nEPOCHS = 15\n").hexdigest()     # the bytes, in order
    assert files.source_digest(modules[::-1]) != before
    first.write_text("LR = 2e-3\n")                                                  # a changed default
    assert files.source_digest(modules) != before
