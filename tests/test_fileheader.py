"""fileheader: every field of a model file's header checked before a tensor is built, by name and range."""

import copy

import pytest

from tutorial_utils import fileformat, fileheader, models, pruning, quantization, storage


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(header, payload) of a real file: a pruned, 4-bit quantized 784-16-10 MLP with dropout."""
    model = models.mlp([784, 16, 10], dropout=0.2)
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.8))
    path = tmp_path_factory.mktemp("h") / "m.dcmp"
    storage.save(quantization.quantize_model(model, 4), path)
    return fileformat.read(path)


def test_a_written_header_passes_and_describes_its_whole_payload(written):
    header, payload = written
    assert fileheader.check(copy.deepcopy(header), name="m.dcmp") == len(payload)


def _edit(header: dict, path: str, value: object) -> dict:
    """A copy of header with one field (a dotted path, list indices as numbers) set to value."""
    edited = copy.deepcopy(header)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = edited
    for part in parents:
        target = target[part]
    target[last] = value
    return edited


@pytest.mark.parametrize("path, value, message", [
    ("modules", [], r"m.dcmp: modules"),
    ("modules.0.kind", "conv2d", r"modules\[0\]\.kind"),
    ("modules.0.layer", 7, r"modules\[0\]\.layer"),
    ("modules.3.layer", 0, r"modules\[3\]\.layer.*a layer no other module uses"),
    ("modules.2.p", 1.5, r"modules\[2\]\.p.*a number in \[0, 1\)"),
])
def test_a_field_out_of_range_is_named(written, path, value, message):
    header, _ = written
    assert [m["kind"] for m in header["modules"]] == ["quantized", "relu", "dropout", "quantized"]
    with pytest.raises(ValueError, match=message):
        fileheader.check(_edit(header, path, value), name="m.dcmp")


def test_the_parameter_limit_is_checked_before_anything_is_allocated(written):
    header, _ = written
    with pytest.raises(ValueError, match=r"more than max_parameters=1,000 parameters"):
        fileheader.check(copy.deepcopy(header), name="m.dcmp", max_parameters=1_000)
    with pytest.raises(ValueError, match=r"m.dcmp: header"):
        fileheader.check([], name="m.dcmp")
