import pytest

from tutorial_utils import storage


def test_atomic_write_writes_and_reports_bytes(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    assert storage.atomic_write(path, lambda f: f.write(b"12345")) == 5
    assert path.read_bytes() == b"12345"
    assert path.stat().st_mode & 0o044  # readable by others, like a file made by open()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        storage.atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    with pytest.raises(OSError, match="cannot be written"):
        storage.atomic_write(blocker / "inside.bin", lambda f: f.write(b"x"))
