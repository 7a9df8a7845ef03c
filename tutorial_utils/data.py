"""Datasets as in-memory tensors: the bundled MNIST subset, full MNIST, Fashion-MNIST.

Every dataset comes back as a `Splits` of flat, normalised float32 images and int64 labels:

    x = (pixel / 255 - MEAN) / STD        # (n, 784), MEAN = 0.1307, STD = 0.3081

MEAN and STD are the pixel statistics of the full MNIST training set (the usual constants); the
same ones are used for Fashion-MNIST so that every model sees inputs on one scale.

Example:
    >>> splits = load("mnist-5k")
    >>> splits.x_train.shape, splits.y_test.shape
    (torch.Size([4000, 784]), torch.Size([1000]))
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tutorial_utils import files, idx, validate
from tutorial_utils.idx import DatasetUnavailableError, read_idx  # noqa: F401  (public here: data.read_idx)

MEAN, STD = 0.1307, 0.3081
BACKGROUND = ((torch.zeros(()) / 255.0 - MEAN) / STD).item()  # a black pixel, computed as _normalise does


def _bundled_root() -> pathlib.Path:
    """Where the bundled data lives: inside the installed package (a wheel maps data/ to tutorial_utils/_data),
    else the data/ folder beside the package in a source checkout or an editable install."""
    here = pathlib.Path(__file__).resolve().parent
    installed = here / "_data"
    return installed if (installed / "mnist-5k").is_dir() else here.parent / "data"


DATA_DIR = _bundled_root()  # holds mnist-5k/ (read-only: nothing is ever written here)
DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
FILES = idx.FILES
# SHA-256 of the bundled files, as printed by scripts/build_mnist_5k.py (see data/README.md).
BUNDLED_SHA256 = {
    "train-images-idx3-ubyte.gz": "ac0cdb9727cb33e2729ffad732589b918699dc168a10e794b78d3d4a25fe2342",
    "train-labels-idx1-ubyte.gz": "7d0eab0cb879e54c4a0f8c29aeced7db2bed3387b722fb3666c0e4acc10e40f1",
    "t10k-images-idx3-ubyte.gz": "d6147023a1b75822c16a76d0ef631d099033596dfa677a9537dcd2948732c2fb",
    "t10k-labels-idx1-ubyte.gz": "162d11e7a798e7d8dec532d63a1b12d4fb040bc5292ffdeae1fe5e4cb243ad2e",
}
DEBIAN_FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


@dataclass(frozen=True)
class Splits:
    """Train and test tensors: x (n, 784) float32 normalised, y (n,) int64 in 0..9."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str = "custom"

    def __post_init__(self) -> None:
        for part in ("train", "test"):   # checked once here, so training and evaluation never meet a NaN image
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            validate.finite(f"x_{part}", x, ndim=2)
            validate.labels(f"y_{part}", y, n=len(x))
            if y.min() < 0:
                raise ValueError(f"y_{part} must hold class labels >= 0; got {y.min().item()}")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError(f"x_train has {self.x_train.shape[1]} features per image but x_test "
                             f"{self.x_test.shape[1]}; they must match")

    def holdout(self, n: int = 500) -> Splits:
        """Train on all but the last n training rows and "test" on those n: a validation split for choosing
        recipes, so that the real test split is never used for tuning."""
        validate.integer("n", n, low=1, high=len(self.x_train) - 1)
        return Splits(self.x_train[:-n], self.y_train[:-n], self.x_train[-n:], self.y_train[-n:],
                      name=f"{self.name}-holdout{n}")

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES["fashion-mnist" if self.name.startswith("fashion-mnist") else "mnist"]


def from_idx_folder(folder: str | os.PathLike, *, name: str = "custom", verify: dict[str, str] | None = None) -> Splits:
    """Load the four IDX files of an MNIST-style folder (torchvision's file names) into a Splits.

    If `verify` maps file names to SHA-256 digests, each file is checked first (ValueError on mismatch).
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"root={str(folder)!r} is not a folder; pass a folder holding the four IDX files {FILES}")
    paths = [idx.find(folder, stem) for stem in FILES]
    for path in paths:
        if verify is not None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != verify.get(path.name):
                raise ValueError(f"{path.name} is corrupt or altered: SHA-256 {digest[:16]}..., expected "
                                 f"{verify.get(path.name, '?')[:16]}...; restore it with `git checkout data/` "
                                 f"or rebuild it with scripts/build_mnist_5k.py")
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y) or len(y) == 0 or y.max() > 9:
            raise ValueError(f"{folder} {part} files do not hold 28x28 images (at least one) with labels 0..9: "
                             f"images {x.shape}, labels {y.shape}")
    return Splits(_normalise(x_train), torch.from_numpy(y_train.astype(np.int64)),
                  _normalise(x_test), torch.from_numpy(y_test.astype(np.int64)), name=name)


def _normalise(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))  # (n, 784)
    return (x / 255.0 - MEAN) / STD


def _torchvision_download(name: str, root: pathlib.Path) -> pathlib.Path:
    """Download with torchvision into root; return the folder of raw IDX files. Fails fast offline."""
    import torchvision  # imported here: only needed for downloads

    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}[name]
    raw = root / cls.__name__ / "raw"
    if all(any((raw / f"{s}{ext}").is_file() for ext in ("", ".gz")) for s in FILES):
        return raw
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # an offline machine must get an answer in seconds, not hang
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        hint = (f"or install Debian's dataset-fashion-mnist and pass root={str(DEBIAN_FASHION_DIR)!r}"
                if name == "fashion-mnist" else "or copy the four MNIST IDX .gz files there")
        raise DatasetUnavailableError(
            f"could not download {name!r} ({type(exc).__name__}: {exc}). This machine looks offline. Run once "
            f"with internet to cache it under {raw}, {hint}; or use the bundled 'mnist-5k'.") from exc
    finally:
        socket.setdefaulttimeout(previous)
    return raw


def load(name: str = "mnist-5k", root: str | os.PathLike | None = None) -> Splits:
    """Load a dataset as in-memory tensors.

    - "mnist-5k": the bundled 4,000/1,000 subset (checksums verified; no network).
    - "mnist": full MNIST (60,000/10,000) from `root` if given (a folder holding the four IDX files),
      else a torchvision download into files.cache_dir("datasets") ($DC_CACHE_DIR).
    - "fashion-mnist": from `root` if it holds the four IDX files (e.g. /usr/share/datasets/fashion-mnist
      from Debian's dataset-fashion-mnist), else that Debian folder if present, else a torchvision download
      into the cache folder. A `root` is only ever read: a folder without the files is an error, never a
      download target.

    Raises ValueError for an unknown name, FileNotFoundError for a missing root folder,
    DatasetUnavailableError when the data cannot be had offline.
    """
    validate.choice("name", name, DATASETS)
    if name == "mnist-5k":
        folder = pathlib.Path(root) if root is not None else DATA_DIR / "mnist-5k"
        return from_idx_folder(folder, name=name, verify=BUNDLED_SHA256)
    if root is not None:
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"root={str(root)!r} does not exist; pass a folder with the four IDX files "
                                    f"{FILES}, or leave root=None to use the cache folder")
        return from_idx_folder(root, name=name)
    if name == "fashion-mnist" and DEBIAN_FASHION_DIR.is_dir():
        return from_idx_folder(DEBIAN_FASHION_DIR, name=name)
    return from_idx_folder(_torchvision_download(name, files.cache_dir("datasets")), name=name)


def batches(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (x, y, index) minibatches from in-memory tensors; shuffled by `generator` if given.

    The last batch may be smaller. `index` holds the rows of x that the batch took, so that per-sample
    tables (such as precomputed teacher logits) can be looked up.
    """
    validate.positive_int("batch_size", batch_size)  # checked now, not at the first next()

    def generate() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            yield x[index], y[index], index

    return generate()


def random_shift(x: torch.Tensor, *, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each flat 28x28 image by a random (dy, dx) in [-max_shift, max_shift]^2; the gap is background.

    Returns a new tensor of x's shape; the background is the normalised value of a black pixel,
    BACKGROUND = -MEAN / STD. Jittering inputs by a pixel or two (as Hinton et al. 2015 did) shows a model more
    digits than the 4,000 bundled ones.
    """
    validate.integer("max_shift", max_shift, low=0, high=27)
    if x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(f"x must be flat images of shape (batch, 784); got {tuple(x.shape)}")
    s, width = max_shift, 28 + 2 * max_shift
    padded = torch.nn.functional.pad(x.reshape(-1, 28, 28), (s, s, s, s), value=BACKGROUND)  # (batch, 28+2s, 28+2s)
    offsets = torch.randint(0, 2 * s + 1, (len(x), 2), generator=generator).to(x.device)      # (batch, 2): dy, dx
    # Output pixel (i, j) of an image reads padded pixel (i + dy, j + dx): one gather for the whole batch.
    i = torch.arange(28, device=x.device)
    corner = (i[:, None] * width + i[None, :]).reshape(1, 784)                                # (1, 784)
    return padded.reshape(len(x), -1).gather(1, corner + (offsets[:, 0] * width + offsets[:, 1])[:, None])
