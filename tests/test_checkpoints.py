"""checkpoints: a save/load round trip, and load refusing another meta, flipped bits, NaN weights and
truncated files with a ValueError that names the file; state_digest sees every name, shape, dtype and value."""

import struct

import pytest
import torch
from torch import nn

from tutorial_utils import checkpoints, models, quantization

META = {"preset": "student", "seed": 0, "epochs": 1}
MARKER = 1234.5678  # a float whose 4 bytes occur once in the file: where to flip a bit


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = models.mlp([6, 5, 3])
    with torch.no_grad():
        model[2].weight[1, 3] = MARKER
    return model


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_round_trip_gives_equal_tensors(model, tmp_path):
    """Guards: load returns exactly the saved tensors, and save returns the size of the file it wrote."""
    path = tmp_path / "student.pt"
    written = checkpoints.save(model, path, META)
    assert written == path.stat().st_size > 0
    state = checkpoints.load(path, dict(META))
    assert _same(state, model.state_dict())
    fresh = models.mlp([6, 5, 3])
    fresh.load_state_dict(state)
    x = torch.randn(4, 6)
    assert torch.equal(fresh(x), model(x))


def test_round_trip_of_a_quantized_model_keeps_integer_buffers(model, tmp_path):
    """Guards: int32 codes and zero points (not floating point) survive, and the NaN check skips them."""
    quantized = quantization.quantize_model(model, 4)
    checkpoints.save(quantized, tmp_path / "q.pt", META)
    state = checkpoints.load(tmp_path / "q.pt", META)
    assert _same(state, quantized.state_dict())
    assert state["0.codes"].dtype == torch.int32


@pytest.mark.parametrize("other", [
    {"preset": "student", "seed": 1, "epochs": 1},
    {"preset": "student", "seed": 0},
    {**META, "torch": "2.0"},
    {},
])
def test_load_refuses_a_checkpoint_made_for_another_meta(model, tmp_path, other):
    """Guards: a cached checkpoint of another recipe/seed must not be used silently."""
    checkpoints.save(model, tmp_path / "teacher-abc.pt", META)
    with pytest.raises(ValueError, match=r"checkpoint teacher-abc\.pt was made for another recipe or machine \(meta differs\)"):
        checkpoints.load(tmp_path / "teacher-abc.pt", other)


def test_load_refuses_a_flipped_bit_inside_tensor_data(model, tmp_path):
    """Guards: torch.load does not check zip CRCs; the SHA-256 must catch a flipped bit in a weight."""
    path = tmp_path / "flipped.pt"
    checkpoints.save(model, path, META)
    raw = bytearray(path.read_bytes())
    needle = struct.pack("<f", MARKER)
    assert raw.count(needle) == 1
    raw[raw.index(needle)] ^= 0x01  # lowest mantissa bit: 1234.5677 instead of 1234.5678
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as info:
        checkpoints.load(path, META)
    assert "flipped.pt" in str(info.value)
    # Whether torch.load read the corrupt zip (then the digest must catch it) or not, it is a ValueError;
    # if torch did read it, the reason given must be the digest.
    try:
        torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001  (any failure of torch.load: then load must call it unreadable)
        assert "unreadable" in str(info.value)
    else:
        assert "is corrupt: the SHA-256 of its tensors does not match" in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_load_refuses_nan_or_inf_weights_even_with_a_correct_digest(model, tmp_path, bad):
    """Guards: a model that diverged and was saved faithfully is still refused."""
    with torch.no_grad():
        model[0].bias[2] = bad
    checkpoints.save(model, tmp_path / "diverged.pt", META)
    with pytest.raises(ValueError, match=r"checkpoint diverged\.pt holds NaN or infinite weights"):
        checkpoints.load(tmp_path / "diverged.pt", META)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_load_refuses_a_truncated_file(model, tmp_path, keep):
    """Guards: a half-written file (a crash before atomic writes) is a ValueError, not a torch/zip traceback."""
    path = tmp_path / "cut.pt"
    checkpoints.save(model, path, META)
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * keep)])
    with pytest.raises(ValueError, match=r"checkpoint cut\.pt is unreadable"):
        checkpoints.load(path, META)


def test_load_refuses_a_missing_file_and_foreign_files(model, tmp_path):
    """Guards: a missing file, a plain state_dict (no meta) and a pickled object are all ValueErrors naming the file."""
    with pytest.raises(ValueError, match=r"checkpoint nothing\.pt is unreadable"):
        checkpoints.load(tmp_path / "nothing.pt", META)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"checkpoint plain\.pt was made for another recipe"):
        checkpoints.load(tmp_path / "plain.pt", META)
    torch.save({"meta": META, "model": model}, tmp_path / "pickled.pt")  # weights_only refuses the module
    with pytest.raises(ValueError, match=r"checkpoint pickled\.pt is unreadable"):
        checkpoints.load(tmp_path / "pickled.pt", META)


def test_load_refuses_tensors_swapped_behind_the_digest(model, tmp_path):
    """Guards: a file whose sha256 field does not describe its tensors (edited by hand) is refused."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    digest = checkpoints.state_digest(state)
    state["0.bias"] += 1
    torch.save({"meta": META, "state_dict": state, "sha256": digest}, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"checkpoint edited\.pt is corrupt"):
        checkpoints.load(tmp_path / "edited.pt", META)


# --- state_digest ---------------------------------------------------------------------------------------

BASE = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a.bias": torch.tensor([0.5, -1.0])}


def _digest(**changes):
    return checkpoints.state_digest({**{k: v.clone() for k, v in BASE.items()}, **changes})


def test_state_digest_is_a_sha256_that_ignores_key_order_and_layout():
    """Guards: the same tensors give the same hex digest whatever the dict order or memory layout."""
    digest = _digest()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert checkpoints.state_digest(dict(reversed(list(BASE.items())))) == digest
    transposed = BASE["a.weight"].T.contiguous().T  # same values, column-major storage
    assert not transposed.is_contiguous()
    assert _digest(**{"a.weight": transposed}) == digest


def test_state_digest_changes_with_any_value():
    """Guards: one changed element (even the smallest float step) changes the digest."""
    w = BASE["a.weight"].clone()
    w[1, 2] = torch.nextafter(w[1, 2], torch.tensor(100.0))
    assert _digest(**{"a.weight": w}) != _digest()
    assert _digest(**{"a.bias": torch.tensor([0.5, 1.0])}) != _digest()


def test_state_digest_changes_with_a_name():
    """Guards: the same tensor under another key is another checkpoint."""
    renamed = {"b.weight": BASE["a.weight"], "a.bias": BASE["a.bias"]}
    assert checkpoints.state_digest(renamed) != _digest()


def test_state_digest_changes_with_a_shape():
    """Guards: the same bytes in another shape (3x2 instead of 2x3, or flat) are another model."""
    assert _digest(**{"a.weight": BASE["a.weight"].reshape(3, 2)}) != _digest()
    assert _digest(**{"a.weight": BASE["a.weight"].reshape(6)}) != _digest()


def test_state_digest_changes_with_a_dtype():
    """Guards: the same bytes read as another dtype (int32 view of float32) are another model."""
    as_int = BASE["a.weight"].view(torch.int32)
    assert as_int.numpy().tobytes() == BASE["a.weight"].numpy().tobytes()
    assert _digest(**{"a.weight": as_int}) != _digest()
    assert _digest(**{"a.bias": BASE["a.bias"].double()}) != _digest()


def test_state_digest_sees_where_one_tensor_ends_and_the_next_begins():
    """Guards: moving an element from one tensor to the next (same concatenated bytes) changes the digest."""
    a = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([3.0])}
    b = {"x": torch.tensor([1.0]), "y": torch.tensor([2.0, 3.0])}
    assert checkpoints.state_digest(a) != checkpoints.state_digest(b)


def test_state_digest_handles_every_dtype_a_model_holds():
    """Guards: bool, int, half, bfloat16, 0-d and empty tensors can all be digested (no numpy dtype gaps)."""
    state = {"b": torch.tensor([True, False]), "i": torch.arange(3, dtype=torch.int32), "h": torch.ones(2).half(),
             "bf": torch.ones(2, dtype=torch.bfloat16), "s": torch.tensor(1.5), "e": torch.zeros(0, 3)}
    digest = checkpoints.state_digest(state)
    flipped = {**state, "bf": torch.tensor([1.0, 1.0078125], dtype=torch.bfloat16)}
    assert checkpoints.state_digest(flipped) != digest


def test_save_writes_atomically(model, tmp_path, monkeypatch):
    """Guards: a failed save leaves the previous checkpoint loadable and no temporary behind."""
    path = tmp_path / "model.pt"
    checkpoints.save(model, path, META)

    def broken_save(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(nn.Linear(2, 2), path, META)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert _same(checkpoints.load(path, META), model.state_dict())


def test_a_state_dict_of_non_tensors_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"meta": {"k": 1}, "state_dict": {"w": [1, 2]}, "sha256": "x"}, path)
    with pytest.raises(ValueError, match="does not hold a state_dict of named tensors"):
        checkpoints.load(path, {"k": 1})
