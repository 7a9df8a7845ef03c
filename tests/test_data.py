import gzip
import shutil
import socket
import struct
import time

import numpy as np
import pytest
import torch

from tutorial_utils import data


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def make_folder(folder, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test))
    return folder


def test_bundled_shapes_types_and_balance(splits):
    assert splits.x_train.shape == (4000, 784) and splits.x_test.shape == (1000, 784)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert torch.bincount(splits.y_train).tolist() == [400] * 10
    assert torch.bincount(splits.y_test).tolist() == [100] * 10


def test_bundled_normalisation_matches_formula(splits):
    raw = data.read_idx(data.DATA_DIR / "mnist-5k" / "t10k-images-idx3-ubyte.gz")
    expected = (torch.from_numpy(raw).float().reshape(1000, 784) / 255 - data.MEAN) / data.STD
    torch.testing.assert_close(splits.x_test, expected)
    # black pixels map to -MEAN/STD, white ones to (1-MEAN)/STD
    assert splits.x_train.min().item() == pytest.approx(-data.MEAN / data.STD, abs=1e-6)
    assert splits.x_train.max().item() == pytest.approx((1 - data.MEAN) / data.STD, abs=1e-6)


def test_train_and_test_do_not_overlap(splits):
    train = {row.numpy().tobytes() for row in splits.x_train}
    assert not any(row.numpy().tobytes() in train for row in splits.x_test)


def test_bundled_loads_fast():
    start = time.perf_counter()
    data.load("mnist-5k")
    assert time.perf_counter() - start < 2.0  # "well under a second" with slack for a busy CI machine


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"name='cifar'.*mnist-5k"):
        data.load("cifar")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="root=.*does not exist"):
        data.load("fashion-mnist", root=tmp_path / "missing")


def test_corrupt_bundled_file_is_detected(tmp_path):
    folder = tmp_path / "mnist-5k"
    shutil.copytree(data.DATA_DIR / "mnist-5k", folder)
    target = folder / "train-labels-idx1-ubyte.gz"
    payload = bytearray(target.read_bytes())
    payload[-9] ^= 0xFF
    target.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz is corrupt or altered"):
        data.load("mnist-5k", root=folder)


def test_truncated_idx_file_is_detected(tmp_path):
    folder = make_folder(tmp_path / "fashion")
    raw = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="truncated"):
        data.load("fashion-mnist", root=folder)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)


def test_local_folder_of_idx_files(tmp_path):
    splits = data.load("fashion-mnist", root=make_folder(tmp_path / "fashion"))
    assert splits.x_train.shape == (12, 784) and splits.x_test.shape == (5, 784)
    assert splits.name == "fashion-mnist" and splits.class_names[9] == "Ankle boot"


def test_a_folder_of_empty_idx_files_is_a_named_error(tmp_path):
    # zero test images used to fail inside numpy ("zero-size array to reduction operation maximum")
    folder = make_folder(tmp_path / "fashion", n_test=0)
    with pytest.raises(ValueError, match=r"fashion test files do not hold 28x28 images \(at least one\)"):
        data.load("fashion-mnist", root=folder)


@pytest.mark.skipif(not data.DEBIAN_FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_full_fashion_mnist_from_debian_folder():
    splits = data.load("fashion-mnist", root=data.DEBIAN_FASHION_DIR)
    assert len(splits.x_train) == 60_000 and len(splits.x_test) == 10_000
    assert torch.bincount(splits.y_test).tolist() == [1000] * 10


def test_offline_download_fails_fast_with_advice(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (simulated)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("DC_CACHE_DIR", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(data.DatasetUnavailableError, match="offline.*mnist-5k"):
        data.load("mnist")  # no root: a download into the cache folder is tried, and fails fast
    assert time.perf_counter() - start < 30


def test_a_data_folder_is_never_a_download_target(tmp_path):
    """root= names a folder to read: one without the files is an error, and nothing is created inside it."""
    with pytest.raises(data.DatasetUnavailableError, match="has no train-images-idx3-ubyte"):
        data.load("mnist", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_compressed_bomb_or_a_truncated_gzip_is_a_clear_error(tmp_path):
    import gzip
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as f:  # 300 MB of zeros in well under 1 MB
        f.write(b"\x00\x00\x08\x01" + (300 * 2**20).to_bytes(4, "big"))
        for _ in range(300):
            f.write(bytes(2**20))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(ValueError, match="bomb-idx3-ubyte.gz holds more than"):
        data.read_idx(bomb)
    truncated = tmp_path / "cut-idx1-ubyte.gz"
    truncated.write_bytes(bomb.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut-idx1-ubyte.gz cannot be read"):
        data.read_idx(truncated)


def test_batches_cover_every_row_once():
    x, y = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    seen = torch.cat([index for _, _, index in data.batches(x, y, batch_size=3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    batch_x, batch_y, index = next(data.batches(x, y, batch_size=4, shuffle=False))
    assert batch_y.tolist() == [0, 1, 2, 3] and index.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="batch_size=0"):
        next(data.batches(x, y, batch_size=0))


def test_random_shift_moves_pixels_and_keeps_background(splits):
    x = splits.x_train[:64]
    shifted = data.random_shift(x, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    assert torch.equal(data.random_shift(x, max_shift=0), x)
    # a pure shift keeps the multiset of ink pixels unless ink falls off the edge (rare in MNIST's 4-px border)
    background = -data.MEAN / data.STD
    ink_before = (x > background + 1e-4).sum(dim=1)
    ink_after = (shifted > background + 1e-4).sum(dim=1)
    assert (ink_before == ink_after).float().mean() > 0.9
    assert not torch.equal(shifted, x)
    with pytest.raises(ValueError, match="max_shift=-1"):
        data.random_shift(x, max_shift=-1)
    with pytest.raises(ValueError, match=r"\(batch, 784\)"):
        data.random_shift(x.reshape(-1, 28, 28), max_shift=1)


def test_random_shift_equals_a_roll_by_at_most_max_shift(splits):
    # MNIST digits have an empty border, so a shift with background fill equals torch.roll for them.
    images = splits.x_train.reshape(-1, 28, 28)
    border = torch.ones(28, 28, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    x = splits.x_train[(images[:, border] == images.min()).all(dim=1)][:256]
    assert len(x) == 256
    shifted = data.random_shift(x, max_shift=2, generator=torch.Generator().manual_seed(1))
    offsets = set()
    for original, moved in zip(x.reshape(-1, 28, 28), shifted.reshape(-1, 28, 28)):
        matches = [(a, b) for a in range(-2, 3) for b in range(-2, 3)
                   if torch.equal(torch.roll(original, shifts=(a, b), dims=(0, 1)), moved)]
        assert matches, "each image must be a shifted copy of itself"
        offsets.add(matches[0])
    assert len(offsets) == 25  # every offset in [-2, 2]^2 occurs


@pytest.mark.parametrize("max_shift", [0, 1, 2, 5])
def test_random_shift_matches_a_per_image_crop_with_the_same_draws(splits, max_shift):
    # The reference: pad each image and crop it at its own (dy, dx), drawn exactly as random_shift draws them,
    # so a faster implementation must give the same pixels and leave the generator in the same state.
    x = splits.x_train[:300]
    s = max_shift
    reference_generator = torch.Generator().manual_seed(7)
    offsets = torch.randint(0, 2 * s + 1, (len(x), 2), generator=reference_generator)
    padded = torch.nn.functional.pad(x.reshape(-1, 28, 28), (s, s, s, s), value=data.BACKGROUND)
    expected = torch.stack([padded[i, dy:dy + 28, dx:dx + 28] for i, (dy, dx) in enumerate(offsets.tolist())])
    generator = torch.Generator().manual_seed(7)
    assert torch.equal(data.random_shift(x, max_shift=s, generator=generator), expected.reshape(-1, 784))
    assert torch.equal(generator.get_state(), reference_generator.get_state())


def test_holdout_takes_validation_rows_from_train_only(splits):
    holdout = splits.holdout(500)
    assert holdout.x_train.shape == (3500, 784) and holdout.x_test.shape == (500, 784)
    assert torch.equal(holdout.x_test, splits.x_train[-500:])
    assert holdout.name == "mnist-5k-holdout500"
    for n in (0, 4000, 2.5):
        with pytest.raises(ValueError, match=f"n={n}"):
            splits.holdout(n)
