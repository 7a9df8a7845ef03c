"""The model file's header, checked field by field before anything is allocated (see `fileformat`).

`check` walks the header in the order `storage.save` writes it and refuses, with a ValueError naming
the file and the field: unknown kinds, encodings or specs; shapes out of range or that do not chain;
counts larger than the tensor; bit widths out of range; blobs that are not exactly where and as long
as the counts imply; more parameters than `max_parameters`. It returns the payload's length, so the
reader can decompress exactly that much.

Example:
    >>> payload_bytes = check(header, name="model.dcmp")
"""

from __future__ import annotations

import math

MAX_PARAMETERS = 25_000_000      # 100 MB of float32 weights, 10x the big teacher; raise it with max_parameters=
MAX_MODULES = 10_000
LINEAR_KINDS = ("linear", "quantized", "fake_quant")
PLAIN_KINDS = ("relu", "tanh", "sigmoid", "gelu", "dropout", "flatten", "identity")
ENCODED = ("dense", "bitmask", "relative")
SPECS = ("float32", "uniform", "kmeans")
FLOATS = {"<f2": 2, "<f4": 4}
FLOAT32_TINY, FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38


def _fail(name: str, field: str, value: object, expected: str) -> None:
    shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "..."
    raise ValueError(f"{name}: {field}={shown} must be {expected}")


def _int(name: str, field: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        _fail(name, field, value, f"an integer in {low}..{high}")
    return value


def _span(name: str, field: str, value: object, length: int, end: list[int]) -> None:
    """A blob [offset, length]: the exact length the header implies, starting where the previous one ended."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in value)):
        _fail(name, field, value, "an [offset, length] pair of integers")
    if value != [end[0], length]:
        _fail(name, field, value, f"[{end[0]}, {length}] (blobs follow each other; the length follows the counts)")
    end[0] += length


def check(header: object, *, name: str, max_parameters: int = MAX_PARAMETERS) -> int:
    """Check every field of a header; return the payload's length in bytes (the sum of its blobs)."""
    if not isinstance(header, dict) or not isinstance(header.get("modules"), list) \
            or not isinstance(header.get("layers"), list):
        _fail(name, "header", type(header).__name__, 'an object with "modules" and "layers" lists')
    modules, layers = header["modules"], header["layers"]
    if not 1 <= len(modules) <= MAX_MODULES:
        _fail(name, "modules", f"{len(modules)} entries", f"1..{MAX_MODULES} entries")
    end, parameters, used, previous_out = [0], 0, set(), None
    for i, module in enumerate(modules):
        field = f"modules[{i}]"
        kind = module.get("kind") if isinstance(module, dict) else None
        if kind not in LINEAR_KINDS + PLAIN_KINDS:
            _fail(name, f"{field}.kind", kind, f"one of {LINEAR_KINDS + PLAIN_KINDS}")
        if kind == "dropout" and not (isinstance(module.get("p"), (int, float)) and 0 <= module["p"] < 1):
            _fail(name, f"{field}.p", module.get("p"), "a number in [0, 1)")
        if kind == "flatten":
            for key in ("start_dim", "end_dim"):
                _int(name, f"{field}.{key}", module.get(key), -8, 8)
        if kind == "gelu" and module.get("approximate") not in ("none", "tanh"):
            _fail(name, f"{field}.approximate", module.get("approximate"), "'none' or 'tanh'")
        if kind not in LINEAR_KINDS:
            continue
        index = _int(name, f"{field}.layer", module.get("layer"), 0, len(layers) - 1)
        if index in used:
            _fail(name, f"{field}.layer", index, "a layer no other module uses")
        used.add(index)
        shape = _check_layer(layers[index], f"layers[{index}]", kind, module, name, end)
        parameters += shape[0] * shape[1] + shape[0]
        if parameters > max_parameters:
            raise ValueError(f"{name}: the layers hold more than max_parameters={max_parameters:,} parameters; "
                             f"pass a larger max_parameters to load a model this large")
        if previous_out is not None and shape[1] != previous_out:
            _fail(name, f"layers[{index}].shape", shape, f"[out, {previous_out}] to follow the previous layer")
        previous_out = shape[0]
    if len(used) != len(layers):
        _fail(name, "layers", f"{len(layers)} entries", f"{len(used)} entries, one per linear module")
    return end[0]


def _check_layer(layer: object, field: str, kind: str, module: dict, name: str, end: list[int]) -> list[int]:
    """Check one layer entry and its blobs (in the order `storage.save` writes them); return its shape."""
    if not isinstance(layer, dict):
        _fail(name, field, type(layer).__name__, "an object")
    if not (isinstance(layer.get("name"), str) and 0 < len(layer["name"]) <= 64):
        _fail(name, f"{field}.name", layer.get("name"), "a string of 1..64 characters")
    shape = layer.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2):
        _fail(name, f"{field}.shape", shape, "[out_features, in_features]")
    out, n_in = (_int(name, f"{field}.shape[{i}]", v, 1, 1 << 24) for i, v in enumerate(shape))
    n = out * n_in
    how = layer.get("encoding")
    if how not in ENCODED:
        _fail(name, f"{field}.encoding", how, f"one of {ENCODED}")
    index_bits = _int(name, f"{field}.index_bits", layer.get("index_bits"), 1, 16)
    count = _int(name, f"{field}.count", layer.get("count"), n if how == "dense" else 0, n)
    spec = layer.get("spec")
    if not isinstance(spec, dict) or spec.get("kind") not in SPECS:
        _fail(name, f"{field}.spec.kind", spec.get("kind") if isinstance(spec, dict) else spec, f"one of {SPECS}")
    if (spec["kind"] == "float32") != (kind in ("linear", "fake_quant")):
        _fail(name, f"{field}.spec.kind", spec["kind"], f"the kind a {kind} module stores")
    index_length = {"dense": 0, "bitmask": math.ceil(n / 8), "relative": math.ceil(count * index_bits / 8)}[how]
    _span(name, f"{field}.index", layer.get("index"), index_length, end)
    bits = 32 if spec["kind"] == "float32" else _int(name, f"{field}.spec.bits", spec.get("bits"), 1,
                                                       8 if spec["kind"] == "kmeans" else 16)
    _span(name, f"{field}.values", layer.get("values"), math.ceil(count * bits / 8), end)
    _check_spec(spec, f"{field}.spec", out, name, end)
    if not isinstance(layer.get("bias_dtype"), str) or layer["bias_dtype"] not in FLOATS:
        _fail(name, f"{field}.bias_dtype", layer.get("bias_dtype"), f"one of {tuple(FLOATS)}")
    _span(name, f"{field}.bias", layer.get("bias"), out * FLOATS[layer["bias_dtype"]], end)
    if kind == "fake_quant":
        config = module.get("config")
        if not isinstance(config, dict) or set(config) != {"bits", "symmetric", "per_channel", "scale_dtype"}:
            _fail(name, "modules[].config", config, "an object with bits, symmetric, per_channel, scale_dtype")
    return [out, n_in]


def _check_spec(spec: dict, field: str, out: int, name: str, end: list[int]) -> None:
    """The extra blobs of quantized layers (scale, zero point, centroids) and the activation grid."""
    if spec["kind"] == "kmeans":
        if "zero_code" not in spec:
            _fail(name, f"{field}.zero_code", "(absent)", "null or a code")
        zero_code = spec["zero_code"]
        if zero_code is not None:
            _int(name, f"{field}.zero_code", zero_code, 0, 2 ** spec["bits"] - 1)
        _span(name, f"{field}.centroids", spec.get("centroids"), 4 * 2 ** spec["bits"], end)
    elif spec["kind"] == "uniform":
        if not isinstance(spec.get("symmetric"), bool):
            _fail(name, f"{field}.symmetric", spec.get("symmetric"), "true or false")
        if "axis" not in spec or spec["axis"] not in (None, 0) or isinstance(spec["axis"], bool):
            _fail(name, f"{field}.axis", spec.get("axis"), "null (per tensor) or 0 (per channel)")
        expected_shape = [out, 1] if spec["axis"] == 0 else []
        if spec.get("scale_shape") != expected_shape:
            _fail(name, f"{field}.scale_shape", spec.get("scale_shape"), str(expected_shape))
        if not isinstance(spec.get("scale_dtype"), str) or spec["scale_dtype"] not in FLOATS:
            _fail(name, f"{field}.scale_dtype", spec.get("scale_dtype"), f"one of {tuple(FLOATS)}")
        scales = out if spec["axis"] == 0 else 1
        _span(name, f"{field}.scale", spec.get("scale"), scales * FLOATS[spec["scale_dtype"]], end)
        if not spec["symmetric"]:
            _span(name, f"{field}.zero_point", spec.get("zero_point"), 4 * scales, end)
        elif "zero_point" in spec:
            _fail(name, f"{field}.zero_point", spec["zero_point"], "absent for a symmetric grid")
    if "act" in spec:
        act = spec["act"]
        if not isinstance(act, dict):
            _fail(name, f"{field}.act", act, "an object")
        bits = _int(name, f"{field}.act.bits", act.get("bits"), 1, 16)
        scale = act.get("scale")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and FLOAT32_TINY <= scale <= FLOAT32_MAX):
            _fail(name, f"{field}.act.scale", scale, "a finite number > 0 that float32 holds")
        _int(name, f"{field}.act.zero_point", act.get("zero_point"), 0, 2**bits - 1)
        if spec["kind"] == "float32":
            _fail(name, f"{field}.act", act, "absent for a float32 layer (only quantized layers round their inputs)")
