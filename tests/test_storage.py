import copy
import re
import hashlib
import json
import struct

import pytest
import torch

from tutorial_utils import measure, models, pruning, quantization, storage


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
    for a, b in zip(pruned.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(8, 784)
    assert torch.equal(pruned(x), loaded(x))


def _blob_lengths(layer):
    """{blob name: length} of every blob a header layer entry points to, its spec's included."""
    spans = {key: layer[key] for key in ("index", "values", "bias")}
    spans.update({key: layer["spec"][key] for key in ("scale", "zero_point", "centroids") if key in layer["spec"]})
    return spans


def _parse(path, written):
    """(header, payload bytes) of an uncompressed file, after checking the documented layout byte for byte:
    magic 4 + version 1 + compression 1 + hlen 4 + header hlen + payload + sha256 32, where the payload is
    exactly the blobs the header lists, back to back (no gaps, no overlaps, nothing extra)."""
    raw = path.read_bytes()
    assert len(raw) == written
    assert raw[:4] == b"DCMP" and raw[4] == 3 and raw[5] == 0  # magic, version 3, compression "none"
    (hlen,) = struct.unpack("<I", raw[6:10])
    header = json.loads(raw[10:10 + hlen])
    end = 0
    for offset, length in sorted(span for layer in header["layers"] for span in _blob_lengths(layer).values()):
        assert offset == end
        end += length
    assert len(raw) == 4 + 1 + 1 + 4 + hlen + end + 32
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()
    return header, end


def _relative_entries(weight, index_bits=5):
    """Entries relative indexing stores: one per non-zero, plus one filler per 2^index_bits positions
    of a gap longer than that (the encoding module's rule)."""
    entries, previous = 0, -1
    for position in weight.reshape(-1).nonzero().reshape(-1).tolist():
        entries += 1 + (position - previous - 1) // 2**index_bits
        previous = position
    return entries


def test_sizes_follow_the_encodings(pruned, tmp_path):
    """Exact byte accounting: a format change of a few bytes per layer must show, not hide in a tolerance."""
    sizes = {how: storage.save(pruned, tmp_path / f"{how}.dcmp", sparse=how)
             for how in ("dense", "bitmask", "relative", "auto")}
    linears = [m for m in pruned if isinstance(m, torch.nn.Linear)]
    headers, payloads = {}, {}
    for how in ("dense", "bitmask", "relative"):
        headers[how], payloads[how] = _parse(tmp_path / f"{how}.dcmp", sizes[how])
    # dense float32: exactly 4 bytes per weight and per bias, no index
    assert payloads["dense"] == 4 * 101_770
    for how, header in headers.items():
        for layer, linear in zip(header["layers"], linears, strict=True):
            n, stored = linear.weight.numel(), int(torch.count_nonzero(linear.weight))
            count = {"dense": n, "bitmask": stored, "relative": _relative_entries(linear.weight)}[how]
            index = {"dense": 0, "bitmask": (n + 7) // 8, "relative": (count * 5 + 7) // 8}[how]
            lengths = {key: length for key, (_, length) in _blob_lengths(layer).items()}
            assert layer["encoding"] == how and layer["count"] == count
            assert lengths == {"index": index, "values": 4 * count, "bias": 4 * linear.out_features}
    assert sizes["auto"] <= min(sizes["bitmask"], sizes["relative"])
    assert sizes["auto"] < sizes["dense"] / 7
    assert measure.csr_bytes(pruned, tmp_path / "csr.pt") > sizes["bitmask"]


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
    _, payload = _parse(tmp_path / "q4.dcmp", written)
    # 4-bit codes, then per output row a float16 scale, an int32 zero point and a float16 bias
    assert payload == 101_632 * 4 // 8 + (2 + 4 + 2) * 138


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


@pytest.mark.parametrize("config", [quantization.QuantConfig(bits=4), quantization.QuantConfig(bits=3, symmetric=False),
                                    quantization.QuantConfig(bits=6, per_channel=False, scale_dtype="float32")])
def test_one_config_from_qat_through_conversion_to_the_file(tmp_path, config):
    """The QuantConfig a model was trained with is what conversion uses and what the file gives back."""
    torch.manual_seed(0)
    converted = quantization.quantize_model(quantization.prepare_qat(models.student(), config))
    assert {m.config for m in converted if isinstance(m, quantization.QuantizedLinear)} == {config}
    storage.save(converted, tmp_path / "m.dcmp")
    loaded = storage.load(tmp_path / "m.dcmp")
    assert {m.config for m in loaded if isinstance(m, quantization.QuantizedLinear)} == {config}
    x = torch.randn(5, 784)
    assert torch.equal(loaded(x), converted(x))


def _models_the_package_makes() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    made = {name: models.preset(name) for name in models.PRESETS}  # big-teacher has dropout
    small = models.mlp([784, 16, 10])
    made["qat 4-bit"] = quantization.prepare_qat(small, quantization.QuantConfig(bits=4))
    made["qat 3-bit affine float32 scales"] = quantization.prepare_qat(
        small, quantization.QuantConfig(bits=3, symmetric=False, scale_dtype="float32"))
    made["quantized 2-bit per tensor"] = quantization.quantize_model(small, 2, per_channel=False)
    made["quantized k-means 3-bit"] = quantization.quantize_model(small, 3, method="kmeans")
    made["quantized 8-bit with activations"] = quantization.quantize_model(small, 8, act_bits=8,
                                                                           calibration=torch.randn(32, 784))
    made["compacted (neurons removed)"] = pruning.prune_neurons(models.teacher(), 0.5)
    made["tanh, gelu, flatten"] = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 8), torch.nn.Tanh(),
                                                      torch.nn.Linear(8, 8), torch.nn.GELU(approximate="tanh"),
                                                      torch.nn.Linear(8, 10), torch.nn.Sigmoid())
    return made


@pytest.mark.parametrize("name", list(_models_the_package_makes()))
def test_every_model_the_package_makes_round_trips(tmp_path, name):
    """Save then load gives the same layers and the same function (the big teacher has dropout)."""
    model = _models_the_package_makes()[name].eval()
    # lzma on the 9.6 MB big teacher takes seconds; the entropy stage is tested on the smaller models
    storage.save(model, tmp_path / "m.dcmp", compress="none" if name in models.PRESETS else "auto")
    loaded = storage.load(tmp_path / "m.dcmp")
    assert [type(m) for m in loaded] == [type(m) for m in model]
    x = torch.randn(4, 784)
    assert torch.equal(loaded(x), model(x))
    for a, b in zip(model, loaded, strict=True):
        if isinstance(a, torch.nn.Dropout):
            assert a.p == b.p
        if isinstance(a, quantization.FakeQuantLinear):
            assert a.config == b.config


@pytest.mark.parametrize("model, layer", [
    (torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.ReLU())), "model[1] is a Sequential"),
    (torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LeakyReLU()), "model[1] is a LeakyReLU"),
    (torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False)), "model[0] is a Linear without bias"),
    # a subclass would load as a plain Linear, with another forward (it was saved as one)
    (torch.nn.Sequential(type("Clipped", (torch.nn.Linear,), {"forward": lambda self, x: x.clamp(-0.1, 0.1)})(4, 4)),
     "model[0] is a Clipped"),
])
def test_what_the_file_cannot_hold_is_refused_at_save_time(tmp_path, model, layer):
    with pytest.raises(TypeError, match=re.escape(layer)):
        storage.save(model, tmp_path / "m.dcmp")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(TypeError, match="must be an nn.Sequential"):
        storage.save(torch.nn.Linear(4, 4), tmp_path / "m.dcmp")


def test_nan_weights_are_refused_before_overwriting_a_good_file(tmp_path):
    good = models.student()
    storage.save(good, tmp_path / "m.dcmp")
    before = (tmp_path / "m.dcmp").read_bytes()
    broken = copy.deepcopy(good)
    with torch.no_grad():
        broken[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"model\[0\] holds NaN or infinite weights"):
        storage.save(broken, tmp_path / "m.dcmp")
    assert (tmp_path / "m.dcmp").read_bytes() == before


def test_what_load_would_refuse_is_refused_before_overwriting_a_good_file(tmp_path):
    """Guards: a layer with one scale per column, or a codebook of fewer than 2^bits centroids, was saved into
    a file that load refuses, replacing the good file that was there."""
    storage.save(models.student(), tmp_path / "m.dcmp")
    before = (tmp_path / "m.dcmp").read_bytes()
    columns = quantization.QuantizedLinear(quantization.quantize(torch.randn(3, 4), 4, per_channel=True, axis=1),
                                           torch.zeros(3))
    small_book = quantization.QuantizedLinear(
        quantization.Codebook(torch.tensor([[0, 1, 2, 1]], dtype=torch.int32), torch.tensor([-1.0, 0.0, 1.0]), 2, 1),
        torch.zeros(1))
    for layer, field in ((columns, r"spec.axis=1 must be null"), (small_book, r"spec.centroids=\[1, 12\] must be")):
        with pytest.raises(ValueError, match=field):
            storage.save(torch.nn.Sequential(layer), tmp_path / "m.dcmp")
        assert (tmp_path / "m.dcmp").read_bytes() == before


def test_a_float16_label_on_scales_that_are_not_float16_is_refused():
    # the file would have stored them rounded: a model other than the one in memory
    with pytest.raises(ValueError, match="scale_dtype='float16' but the scales are not float16 values"):
        quantization.QuantizedLinear(quantization.quantize(torch.randn(3, 4), 4), torch.zeros(3), scale_dtype="float16")
