"""One place for argument checks: every bad value is refused with its name, its value and the valid range.

The same checks serve the Python API (`validate.positive_int("epochs", epochs)`) and the command line
(`argparse` type converters from `validate.cli(validate.positive_int)`), so a value the library would
refuse is refused by the CLI before any training starts, with the same words.

Integers: Python and NumPy integers are accepted; floats (even 2.0) and bools are refused, since a
float where a count is meant is usually a mistake (a learning rate passed as epochs).
Real numbers: Python and NumPy ints and floats; NaN and infinities are refused unless a check says otherwise.

Example:
    >>> positive_int("epochs", 3)
    3
    >>> fraction("sparsity", 1.0)
    Traceback (most recent call last):
    ValueError: sparsity=1.0 must be a number in [0, 1)
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """value as an int if it is an integer in [low, high] (either bound may be open); else ValueError."""
    inside = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not inside:
        where = ("any integer" if low is None and high is None else f"an integer >= {low}" if high is None
                 else f"an integer <= {high}" if low is None else f"an integer in {low}..{high}")
        raise ValueError(f"{name}={value!r} must be {where}")
    return int(value)


def positive_int(name: str, value: object) -> int:
    """value as an int if it is an integer >= 1."""
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def nonnegative_int(name: str, value: object) -> int:
    """value as an int if it is an integer >= 0."""
    if not (_is_int(value) and value >= 0):
        raise ValueError(f"{name}={value!r} must be a non-negative integer")
    return int(value)


def _real(name: str, value: object, inside: Callable[[float], bool], expected: str) -> float:
    """value as a float if it is a real number for which inside(value) holds (NaN never is)."""
    if not (_is_real(value) and not math.isnan(value) and inside(float(value))):
        raise ValueError(f"{name}={value!r} must be {expected}")
    return float(value)


def positive_float(name: str, value: object) -> float:
    """value as a float if it is a finite real number > 0."""
    return _real(name, value, lambda v: math.isfinite(v) and v > 0, "a positive finite number")


def nonnegative_float(name: str, value: object) -> float:
    """value as a float if it is a finite real number >= 0."""
    return _real(name, value, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def fraction(name: str, value: object) -> float:
    """value as a float if it lies in [0, 1): a share that cannot be all (sparsity, amount pruned)."""
    return _real(name, value, lambda v: 0 <= v < 1, "a number in [0, 1)")


def probability(name: str, value: object) -> float:
    """value as a float if it lies in [0, 1] (a weight between two terms, such as alpha)."""
    return _real(name, value, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def confidence(name: str, value: object) -> float:
    """value as a float if it lies strictly inside (0, 1): the coverage of an interval (0.95 is 95%)."""
    return _real(name, value, lambda v: 0 < v < 1, "a float in (0, 1)")


def temperature(name: str, value: object) -> float:
    """value as a float if it is a finite number > 0 (a softmax temperature)."""
    return _real(name, value, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def bits(name: str, value: object, *, high: int = 16) -> int:
    """value as an int if it is an integer in 1..high (bits per code)."""
    if not (_is_int(value) and 1 <= value <= high):
        raise ValueError(f"{name}={value!r} must be an integer in 1..{high}")
    return int(value)


def flag(name: str, value: object) -> bool:
    """value if it is True or False: a string such as 'no' is truthy, and would silently mean True."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False")
    return value


def choice(name: str, value: object, options: Sequence[str]) -> str:
    """value if it is one of `options`."""
    if value not in tuple(options):
        raise ValueError(f"{name}={value!r} must be one of {tuple(options)}")
    return value  # type: ignore[return-value]


def cli(check: Callable[[str, object], T], *, parse: Callable[[str], object] | None = None,
        name: str = "value") -> Callable[[str], T]:
    """An argparse `type=` converter: parse the string (int for integer checks, float otherwise), then check it.

    argparse turns the ArgumentTypeError into "argument --x: <message>" and exit status 2, before any
    work starts.
    """
    integer_checks = (positive_int, nonnegative_int, integer, bits)
    parse = parse or (int if check in integer_checks else float)

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            kind = "an integer" if parse is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        try:
            return check(name, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(f"{name}=", "", 1)) from None

    convert.__name__ = check.__name__  # argparse names the converter in some messages
    return convert


def env(name: str, default: T, check: Callable[[str, object], T] | None = None) -> T:
    """The environment variable `name` parsed and checked like the CLI's options, or `default` if unset.

    Without `check` the text is returned as is (a name or a path). A bad value is a ValueError that
    names the variable: "environment variable DC_EPOCHS='abc' is not an integer".
    Example: EPOCHS = validate.env("DC_EPOCHS", 15, validate.positive_int)
    """
    text = os.environ.get(name)
    if text is None:
        return default
    if check is None:
        return text  # type: ignore[return-value]
    try:
        return cli(check, name=name)(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"environment variable {name}={text!r}: {exc}") from None


def env_list(name: str, default: list[T], check: Callable[[str, object], T]) -> list[T]:
    """A comma-separated environment variable ("0,1,2"), each item parsed and checked, no item twice (seeds
    listed twice would make one run count as two); `default` if unset."""
    text = os.environ.get(name)
    if text is None:
        return default
    convert = cli(check, name=name)
    try:
        values = [convert(item.strip()) for item in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"environment variable {name}={text!r}: {exc}") from None
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"environment variable {name}={text!r} lists {repeated} more than once; give distinct values")
    return values


def shape_of(value: object) -> str:
    """'Tensor of shape (2, 3), torch.float32' or the type's name: how an error shows what it got."""
    return f"{type(value).__name__} of shape {tuple(value.shape)}, {value.dtype}" if isinstance(
        value, torch.Tensor) else f"{type(value).__name__}"


def labels(name: str, value: object, *, n: int, classes: int | None = None) -> torch.Tensor:
    """value if it is a (n,) integer tensor of class labels, each in 0..classes-1 when classes is given:
    a (n, 1) label tensor would broadcast against (n,) predictions into an (n, n) comparison."""
    if not isinstance(value, torch.Tensor) or value.ndim != 1 or value.dtype.is_floating_point \
            or value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must be a 1-d integer tensor of class labels; got {shape_of(value)}")
    if len(value) != n:
        raise ValueError(f"{name} holds {len(value)} labels for {n} images; they must match")
    if classes is not None and len(value) and (value.min() < 0 or value.max() >= classes):
        raise ValueError(f"{name} must hold labels in 0..{classes - 1} ({classes} classes); got "
                         f"{value.min().item()} to {value.max().item()}")
    return value


def finite(name: str, value: object, *, ndim: int | None = None) -> torch.Tensor:
    """value if it is a non-empty floating-point tensor (with ndim dimensions, when given) and no NaN or inf."""
    if not isinstance(value, torch.Tensor) or not value.dtype.is_floating_point or value.numel() == 0 \
            or (ndim is not None and value.ndim != ndim):
        wanted = f"a non-empty {ndim}-d" if ndim is not None else "a non-empty"
        raise ValueError(f"{name} must be {wanted} floating-point tensor; got {shape_of(value)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} holds {int((~torch.isfinite(value)).sum())} NaN or infinite values")
    return value


def _model_features(model: object) -> int | None:
    """in_features of the model's first layer (anything with `in_features`), or None if it has none."""
    first = next((m for m in model.modules() if hasattr(m, "in_features")), None)
    return None if first is None else first.in_features


def in_features(model: object, value: object) -> int:
    """value if the model's first layer reads that many features (not torch's 'mat1 and mat2' error later)."""
    positive_int("in_features", value)
    wanted = _model_features(model)
    if wanted is not None and wanted != value:
        raise ValueError(f"in_features={value} but the model's first layer takes {wanted}")
    return int(value)


def inputs(name: str, value: object, model: object) -> torch.Tensor:
    """value if it is a non-empty, finite (n, features) tensor with as many features as the model reads."""
    finite(name, value, ndim=2)
    wanted = _model_features(model)
    if wanted is not None and value.shape[1] != wanted:
        raise ValueError(f"{name} has {value.shape[1]} features per row; the model takes {wanted}")
    return value
