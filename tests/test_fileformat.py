"""Hostile model files: seeded mutations that reach the parser, crafted headers, decompression bombs.

Every mutated file gets a correct SHA-256 again, so it passes the checksum and reaches the header and
payload checks. Each load must end in a ValueError that names the file, or in a model of the declared
architecture (same layer types, outputs of the right shape); never another exception, never a hang,
never a large allocation.
"""

import hashlib
import json
import lzma
import pathlib
import random
import resource
import struct
import time
import zlib

import pytest
import torch

from tutorial_utils import fileformat, fileheader, models, pruning, quantization, storage

CODERS = {0: (lambda b: b, lambda b: b), 1: (lambda b: zlib.compress(b, 6), zlib.decompress),
          2: (lambda b: lzma.compress(b, preset=0), lzma.decompress)}


def seal(path, version: int, code: int, block: bytes) -> None:
    """Write a file with the given block (compressed with `code`) and a correct checksum."""
    body = fileformat.MAGIC + struct.pack("<BB", version, code) + CODERS[code][0](block)
    path.write_bytes(body + hashlib.sha256(body).digest())


def unseal(path) -> tuple[int, dict, bytes]:
    raw = path.read_bytes()
    code = raw[5]
    block = CODERS[code][1](raw[6:-32])
    (hlen,) = struct.unpack("<I", block[:4])
    return code, json.loads(block[4:4 + hlen]), block[4 + hlen:]


def block_of(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(text)) + text + payload


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("real")
    torch.manual_seed(0)
    student = models.mlp([784, 24, 10])
    pruning.apply_masks_(student, pruning.magnitude_masks(student, 0.8, scope="global"))
    made = [(student, "relative", "none"), (quantization.quantize_model(student, 4), "auto", "lzma"),
            (quantization.quantize_model(student, 3, symmetric=False, per_channel=False), "bitmask", "zlib"),
            (quantization.quantize_model(student, 3, method="kmeans", act_bits=8,
                                         calibration=torch.randn(16, 784)), "auto", "none"),
            (quantization.prepare_qat(models.mlp([784, 12, 10], dropout=0.2), 4), "dense", "none")]
    paths = []
    for i, (model, sparse, compress) in enumerate(made):
        path = folder / f"real{i}.dcmp"
        storage.save(model, path, sparse=sparse, compress=compress)
        paths.append(path)
    return paths


def outcome(path) -> str:
    """'refused' (a clear ValueError naming the file) or 'loaded' (and the model works); anything else fails."""
    try:
        model = storage.load(path)
    except ValueError as exc:
        assert path.name in str(exc), f"the error does not name the file: {exc}"
        return "refused"
    sizes = models.layer_sizes(model)
    assert model(torch.zeros(2, sizes[0])).shape == (2, sizes[-1])
    return "loaded"


def mutate_header(header: dict, rng: random.Random) -> dict:
    """Change, delete or retype one field somewhere in the header."""
    header = json.loads(json.dumps(header))
    containers = []

    def walk(node):
        if isinstance(node, (dict, list)):
            containers.append(node)
            for child in (node.values() if isinstance(node, dict) else node):
                walk(child)

    walk(header)
    node = rng.choice(containers)
    if not node:
        return header
    key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
    choice = rng.random()
    replacements = [-1, 0, 1, 2**31, 2**62, 20000, 1.5, float(2**40), None, "x", True, [], {}, [0, 2**40], "relu"]
    if choice < 0.15 and isinstance(node, dict):
        del node[key]
    elif choice < 0.25 and isinstance(node, list):
        node.append(node[key])
    elif isinstance(node[key], int) and not isinstance(node[key], bool) and choice < 0.6:
        node[key] = node[key] + rng.choice([-3, -1, 1, 7, 1000, 10**6])
    else:
        node[key] = rng.choice(replacements)
    return header


def test_three_hundred_mutations_end_in_a_clear_error_or_a_working_model(real_files, tmp_path):
    rng, results, start = random.Random(1234), {"refused": 0, "loaded": 0}, time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for trial in range(300):
        source = real_files[trial % len(real_files)]
        code, header, payload = unseal(source)
        kind = trial % 3
        if kind == 0:
            block = block_of(mutate_header(header, rng), payload)
        elif kind == 1:  # flip bytes anywhere in the decompressed block
            block = bytearray(block_of(header, payload))
            for _ in range(rng.randint(1, 4)):
                block[rng.randrange(len(block))] ^= 1 << rng.randrange(8)
            block = bytes(block)
        else:  # cut or extend the payload
            cut = rng.randint(-len(payload), 64)
            block = block_of(header, payload[:cut] if cut < 0 else payload + bytes(cut))
        path = tmp_path / f"mutant{trial}.dcmp"
        seal(path, fileformat.VERSION, code, block)
        results[outcome(path)] += 1
    print(f"300 mutations: {results}")
    assert results["refused"] >= 150  # most mutations must be caught, not loaded as something else
    assert time.perf_counter() - start < 60
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300_000  # kilobytes: under 300 MB


def hostile(tmp_path, layers: list, modules: list, payload: bytes = b"", code: int = 0):
    path = tmp_path / "hostile.dcmp"
    seal(path, fileformat.VERSION, code, block_of({"modules": modules, "layers": layers}, payload))
    return path


def dense_layer(out: int, n_in: int, offset: int = 0) -> dict:
    return {"name": "0", "shape": [out, n_in], "encoding": "dense", "index_bits": 5, "count": out * n_in,
            "index": [offset, 0], "values": [offset, 4 * out * n_in], "spec": {"kind": "float32"},
            "bias_dtype": "<f4", "bias": [offset + 4 * out * n_in, 4 * out]}


@pytest.mark.parametrize("layers, modules, message", [
    ([dense_layer(20000, 20000)], [{"kind": "linear", "layer": 0}], "max_parameters"),
    ([dense_layer(4, 3)], [{"kind": "linear", "layer": 0}], "ends inside the payload"),
    ([], [{"kind": "linear", "layer": 0}], "modules[0].layer"),
    ([dense_layer(4, 3), dense_layer(4, 3)], [{"kind": "linear", "layer": 0}], "layers="),
    ([dense_layer(4, 3)], [{"kind": "conv2d", "layer": 0}], "modules[0].kind"),
    ([dense_layer(4, 3)], [], "modules="),
    ([{**dense_layer(4, 3), "index": [-8, 0]}], [{"kind": "linear", "layer": 0}], "layers[0].index"),
    ([{**dense_layer(4, 3), "count": 13}], [{"kind": "linear", "layer": 0}], "layers[0].count"),
    ([{**dense_layer(4, 3), "encoding": "huffman"}], [{"kind": "linear", "layer": 0}], "layers[0].encoding"),
    ([dense_layer(4, 3), {**dense_layer(2, 5, offset=64), "name": "2"}],
     [{"kind": "linear", "layer": 0}, {"kind": "relu"}, {"kind": "linear", "layer": 1}], "to follow the previous layer"),
    ([dense_layer(4, 3)], [{"kind": "linear", "layer": 0}, {"kind": "linear", "layer": 0}], "a layer no other module uses"),
    ([dense_layer(4, 3)], [{"kind": "dropout", "p": 2}], "modules[0].p"),
])
def test_crafted_headers_are_refused_before_anything_is_allocated(tmp_path, layers, modules, message):
    path = hostile(tmp_path, layers, modules)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        storage.load(path)
    assert time.perf_counter() - start < 1.0


def test_nan_weights_and_an_empty_header_are_refused(tmp_path):
    payload = struct.pack("<12f", *([float("nan")] * 12)) + bytes(16)
    with pytest.raises(ValueError, match="values holds NaN"):
        storage.load(hostile(tmp_path, [dense_layer(4, 3)], [{"kind": "linear", "layer": 0}], payload))
    path = tmp_path / "empty.dcmp"
    seal(path, fileformat.VERSION, 0, struct.pack("<I", 2) + b"{}")
    with pytest.raises(ValueError, match="header"):
        storage.load(path)


@pytest.mark.parametrize("code", [1, 2])
def test_a_decompression_bomb_is_refused_without_inflating_it(tmp_path, code):
    """256 MiB of zeros behind a valid header for a tiny model: refused after reading only what the header
    allows, in well under a second and without the memory the bomb would need."""
    text = json.dumps({"modules": [{"kind": "linear", "layer": 0}], "layers": [dense_layer(4, 3)]}).encode()
    compressor = zlib.compressobj(9) if code == 1 else lzma.LZMACompressor(preset=0)
    zeros = bytes(1 << 20)
    coded = compressor.compress(struct.pack("<I", len(text)) + text)
    coded += b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
    body = fileformat.MAGIC + struct.pack("<BB", fileformat.VERSION, code) + coded
    path = tmp_path / "bomb.dcmp"
    path.write_bytes(body + hashlib.sha256(body).digest())
    assert path.stat().st_size < 2_000_000  # a file of a few hundred KB or a MB
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(ValueError, match="data follows the payload"):
        storage.load(path)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kilobytes


def test_the_parameter_limit_can_be_raised(tmp_path):
    model = models.mlp([784, 64, 10])
    storage.save(model, tmp_path / "m.dcmp")
    with pytest.raises(ValueError, match="max_parameters=1,000"):
        storage.load(tmp_path / "m.dcmp", max_parameters=1000)
    assert models.layer_sizes(storage.load(tmp_path / "m.dcmp", max_parameters=60_000)) == [784, 64, 10]
    assert fileheader.MAX_PARAMETERS > 10 * 2_395_210  # the big teacher loads with the default limit


def test_deeply_nested_or_non_finite_json_is_a_clear_error(tmp_path):
    path = tmp_path / "deep.dcmp"
    text = b"[" * 300_000 + b"]" * 300_000
    seal(path, fileformat.VERSION, 0, struct.pack("<I", len(text)) + text)
    with pytest.raises(ValueError, match="deep.dcmp: the header is not valid"):
        storage.load(path)
    layer = {**dense_layer(4, 3), "spec": {"kind": "float32", "act": {"bits": 8, "scale": float("nan"), "zero_point": 0}}}
    with pytest.raises(ValueError, match=r"act.scale=nan must be a finite number > 0"):
        storage.load(hostile(tmp_path, [layer], [{"kind": "linear", "layer": 0}]))


@pytest.mark.parametrize("code", [1, 2])
def test_an_empty_payload_does_not_open_the_decompressor_wide(tmp_path, code):
    """A header with no weight layers implies a 0-byte payload: the reader must not inflate what follows."""
    text = json.dumps({"modules": [{"kind": "relu"}], "layers": []}).encode()
    compressor = zlib.compressobj(9) if code == 1 else lzma.LZMACompressor(preset=0)
    coded = compressor.compress(struct.pack("<I", len(text)) + text)
    coded += b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64)) + compressor.flush()
    body = fileformat.MAGIC + struct.pack("<BB", fileformat.VERSION, code) + coded
    path = tmp_path / "empty-bomb.dcmp"
    path.write_bytes(body + hashlib.sha256(body).digest())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="data follows the payload"):
        storage.load(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000
    storage.save(torch.nn.Sequential(torch.nn.ReLU()), tmp_path / "relu.dcmp", compress="lzma")
    assert isinstance(storage.load(tmp_path / "relu.dcmp")[0], torch.nn.ReLU)


@pytest.mark.parametrize("change, field", [
    (lambda layer: layer.update(bias_dtype=[]), "bias_dtype"),
    (lambda layer: layer.pop("name"), "name"),
    (lambda layer: layer.update(name="x" * 1000), "name"),
    (lambda layer: layer["spec"].update(kind="uniform", bits=4, symmetric=True, scale_shape=[], scale_dtype="<f4",
                                        scale=[0, 0]), "axis"),
])
def test_malformed_fields_are_value_errors_not_type_or_key_errors(tmp_path, change, field):
    layer = dense_layer(4, 3)
    change(layer)
    kind = "quantized" if layer["spec"]["kind"] == "uniform" else "linear"
    if kind == "quantized":  # 4-bit codes: 6 bytes of values, then the spec's scale, then the bias
        layer.update(values=[0, 6])
        layer["spec"]["scale"] = [6, 4]
        layer["bias"] = [10, 16]
    with pytest.raises(ValueError, match=field):
        storage.load(hostile(tmp_path, [layer], [{"kind": kind, "layer": 0}]))


def test_huge_integers_and_float32_overflowing_scales_are_refused(tmp_path):
    path = tmp_path / "digits.dcmp"
    text = b'{"modules": [], "layers": [], "x": ' + b"9" * 5000 + b"}"
    seal(path, fileformat.VERSION, 0, struct.pack("<I", len(text)) + text)
    with pytest.raises(ValueError, match="digits.dcmp: the header is not valid"):
        storage.load(path)
    layer = {**dense_layer(4, 3), "spec": {"kind": "float32", "act": {"bits": 8, "scale": 1e39, "zero_point": 0}}}
    with pytest.raises(ValueError, match="that float32 holds"):
        storage.load(hostile(tmp_path, [layer], [{"kind": "linear", "layer": 0}]))


def test_a_small_file_with_a_large_sparse_layer_stays_within_its_declared_size(tmp_path):
    """2,000,000 weights, all zero, relative indices of 16 bits: the codes decode in bounded chunks."""
    model = torch.nn.Sequential(torch.nn.Linear(2000, 1000))
    with torch.no_grad():
        model[0].weight.zero_()
    storage.save(model, tmp_path / "zeros.dcmp", sparse="relative", index_bits=16, compress="zlib")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loaded = storage.load(tmp_path / "zeros.dcmp")
    assert torch.equal(loaded[0].weight, model[0].weight)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 120_000  # kilobytes


def test_a_file_too_large_for_any_allowed_model_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.dcmp"
    path.write_bytes(b"\0" * (2 << 20))                     # 2 MB: more than a 1-parameter model can take
    read = []
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(ValueError, match=r"huge.dcmp holds 2,097,152 bytes, more than a model of at most 1 parameters"):
        storage.load(path, max_parameters=1)
    assert read == []
