import copy

import pytest
import torch

from tutorial_utils import measure, models, pruning, storage


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


@pytest.fixture
def pruned():
    torch.manual_seed(0)
    model = models.teacher()
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.9, scope="global"))
    return model


@pytest.mark.parametrize("sparse", ["auto", "dense", "bitmask", "relative"])
def test_round_trip_is_exact(pruned, tmp_path, sparse):
    path = tmp_path / "model.dcmp"
    written = storage.save(pruned, path, sparse=sparse)
    assert written == path.stat().st_size
    loaded = storage.load(path)
    for a, b in zip(pruned.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
    x = torch.randn(8, 784)
    assert torch.equal(pruned(x), loaded(x))


def test_sizes_follow_the_encodings(pruned, tmp_path):
    sizes = {how: storage.save(pruned, tmp_path / f"{how}.dcmp", sparse=how)
             for how in ("dense", "bitmask", "relative", "auto")}
    assert sizes["dense"] == pytest.approx(4 * 101_770, rel=0.01)
    nonzeros = measure.count_nonzeros(pruned)
    # bitmask: one bit per weight + 4 bytes per stored value (+ dense biases and a small header)
    assert sizes["bitmask"] == pytest.approx(101_632 / 8 + 4 * nonzeros, rel=0.02)
    assert sizes["auto"] <= min(sizes["bitmask"], sizes["relative"])
    assert sizes["auto"] < sizes["dense"] / 7
    assert storage.csr_bytes(pruned, tmp_path / "csr.pt") > sizes["bitmask"]


def test_corrupt_truncated_and_foreign_files(pruned, tmp_path):
    path = tmp_path / "model.dcmp"
    storage.save(pruned, path)
    raw = path.read_bytes()
    (tmp_path / "short.dcmp").write_bytes(raw[:-100])
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    (tmp_path / "flipped.dcmp").write_bytes(bytes(flipped))
    torch.save(pruned.state_dict(), tmp_path / "foreign.pt")
    for name in ("short.dcmp", "flipped.dcmp"):
        with pytest.raises(ValueError, match="truncated or corrupt"):
            storage.load(tmp_path / name)
    with pytest.raises(ValueError, match="not a distill-and-compress model file"):
        storage.load(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        storage.load(tmp_path / "missing.dcmp")


def test_bad_encoding_name(pruned, tmp_path):
    with pytest.raises(ValueError, match="sparse='csr'"):
        storage.save(pruned, tmp_path / "x.dcmp", sparse="csr")


def test_save_does_not_change_the_model(pruned, tmp_path):
    before = copy.deepcopy(pruned.state_dict())
    storage.save(pruned, tmp_path / "x.dcmp")
    assert all(torch.equal(v, before[k]) for k, v in pruned.state_dict().items())


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantized_round_trip_is_exact(pruned, tmp_path, bits, per_channel):
    from tutorial_utils import quantization

    model = quantization.quantize_model(pruned, bits, per_channel=per_channel)
    storage.save(model, tmp_path / "q.dcmp")
    loaded = storage.load(tmp_path / "q.dcmp")
    x = torch.randn(8, 784)
    assert torch.equal(model(x), loaded(x))
    assert torch.equal(loaded[0].qweight.q, model[0].qweight.q)


def test_kmeans_and_activation_quantized_round_trip(pruned, tmp_path):
    from tutorial_utils import quantization

    for model in (quantization.quantize_model(pruned, 3, method="kmeans"),
                  quantization.quantize_model(pruned, 8, act_bits=8, calibration=torch.randn(64, 784))):
        storage.save(model, tmp_path / "m.dcmp")
        x = torch.randn(8, 784)
        assert torch.equal(model(x), storage.load(tmp_path / "m.dcmp")(x))


def test_packed_codes_take_bits_per_weight(tmp_path):
    from tutorial_utils import quantization

    torch.manual_seed(0)
    model = quantization.quantize_model(models.teacher(), 4, symmetric=False)  # asymmetric: few codes are zero
    written = storage.save(model, tmp_path / "q4.dcmp", sparse="dense")
    assert written == pytest.approx(101_632 / 2 + 4 * 138 + 8 * 138, rel=0.02)  # codes + biases + scales + zero points


@pytest.mark.parametrize("compress", ["zlib", "lzma", "auto"])
def test_entropy_coding_round_trips_and_shrinks(pruned, tmp_path, compress):
    from tutorial_utils import quantization

    model = quantization.quantize_model(pruned, 4)
    plain = storage.save(model, tmp_path / "plain.dcmp")
    coded = storage.save(model, tmp_path / "coded.dcmp", compress=compress)
    assert coded < plain
    x = torch.randn(4, 784)
    assert torch.equal(model(x), storage.load(tmp_path / "coded.dcmp")(x))


def test_bad_compression_and_old_versions(pruned, tmp_path):
    with pytest.raises(ValueError, match="compress='gzip'"):
        storage.save(pruned, tmp_path / "x.dcmp", compress="gzip")
    path = tmp_path / "v.dcmp"
    storage.save(pruned, path)
    raw = bytearray(path.read_bytes()[:-32])
    raw[4] = 1  # an older format version, with a valid checksum
    import hashlib
    path.write_bytes(bytes(raw) + hashlib.sha256(bytes(raw)).digest())
    with pytest.raises(ValueError, match="format version 1"):
        storage.load(path)
