"""validate: every check accepts good values (NumPy scalars included) and refuses bad ones with a
ValueError naming `name=value` and the valid range; the argparse converters refuse the same values."""

import argparse
import math
import re

import numpy as np
import pytest

from tutorial_utils import validate

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("check, value, expected", [
    (validate.positive_int, 1, 1),
    (validate.positive_int, 7, 7),
    (validate.positive_int, np.int64(3), 3),
    (validate.positive_int, np.int32(5), 5),
    (validate.positive_int, np.uint8(2), 2),
    (validate.nonnegative_int, 0, 0),
    (validate.nonnegative_int, np.int16(9), 9),
    (validate.positive_float, 1, 1.0),
    (validate.positive_float, 2.5e-4, 2.5e-4),
    (validate.positive_float, np.float32(0.5), 0.5),
    (validate.positive_float, np.int64(3), 3.0),
    (validate.nonnegative_float, 0.0, 0.0),
    (validate.nonnegative_float, np.float64(1.5), 1.5),
    (validate.fraction, 0, 0.0),
    (validate.fraction, 0.999, 0.999),
    (validate.fraction, np.float32(0.25), 0.25),
    (validate.probability, 0.0, 0.0),
    (validate.probability, 1, 1.0),
    (validate.probability, np.float64(1.0), 1.0),
    (validate.confidence, 0.95, 0.95),
    (validate.confidence, np.float32(0.5), 0.5),
    (validate.temperature, 4, 4.0),
    (validate.temperature, np.float16(0.5), 0.5),
    (validate.bits, 1, 1),
    (validate.bits, 16, 16),
    (validate.bits, np.int8(4), 4),
])
def test_good_values_are_returned_as_plain_python_numbers(check, value, expected):
    """Guards: NumPy scalars (from arrays, configs) must be accepted and come back as int/float, not np types."""
    result = check("x", value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("check, value, allowed", [
    (validate.positive_int, 0, "a positive integer"),
    (validate.positive_int, -3, "a positive integer"),
    (validate.positive_int, 2.0, "a positive integer"),          # a float where a count is meant
    (validate.positive_int, True, "a positive integer"),         # bool is an int subclass, still refused
    (validate.positive_int, np.bool_(True), "a positive integer"),
    (validate.positive_int, np.float64(2.0), "a positive integer"),
    (validate.positive_int, "3", "a positive integer"),
    (validate.positive_int, None, "a positive integer"),
    (validate.nonnegative_int, -1, "a non-negative integer"),
    (validate.nonnegative_int, np.int64(-1), "a non-negative integer"),
    (validate.nonnegative_int, 0.0, "a non-negative integer"),
    (validate.nonnegative_int, False, "a non-negative integer"),
    (validate.positive_float, 0.0, "a positive finite number"),
    (validate.positive_float, -1e-9, "a positive finite number"),
    (validate.positive_float, NAN, "a positive finite number"),
    (validate.positive_float, INF, "a positive finite number"),
    (validate.positive_float, np.float32("nan"), "a positive finite number"),
    (validate.positive_float, True, "a positive finite number"),
    (validate.positive_float, "1e-3", "a positive finite number"),
    (validate.positive_float, 1j, "a positive finite number"),
    (validate.nonnegative_float, -0.5, "a finite number >= 0"),
    (validate.nonnegative_float, INF, "a finite number >= 0"),
    (validate.nonnegative_float, NAN, "a finite number >= 0"),
    (validate.nonnegative_float, False, "a finite number >= 0"),
    (validate.fraction, 1.0, "a number in [0, 1)"),
    (validate.fraction, 1, "a number in [0, 1)"),
    (validate.fraction, -0.1, "a number in [0, 1)"),
    (validate.fraction, NAN, "a number in [0, 1)"),
    (validate.fraction, INF, "a number in [0, 1)"),
    (validate.fraction, True, "a number in [0, 1)"),
    (validate.fraction, "0.5", "a number in [0, 1)"),
    (validate.probability, 1.0000001, "a number in [0, 1]"),
    (validate.probability, -1e-12, "a number in [0, 1]"),
    (validate.probability, NAN, "a number in [0, 1]"),
    (validate.probability, np.bool_(False), "a number in [0, 1]"),
    (validate.confidence, 0.0, "a float in (0, 1)"),
    (validate.confidence, 1.0, "a float in (0, 1)"),
    (validate.confidence, 95, "a float in (0, 1)"),
    (validate.confidence, NAN, "a float in (0, 1)"),
    (validate.confidence, True, "a float in (0, 1)"),
    (validate.temperature, 0, "a finite number > 0"),
    (validate.temperature, -2.0, "a finite number > 0"),
    (validate.temperature, INF, "a finite number > 0"),
    (validate.temperature, NAN, "a finite number > 0"),
    (validate.bits, 0, "an integer in 1..16"),
    (validate.bits, 17, "an integer in 1..16"),
    (validate.bits, 4.0, "an integer in 1..16"),
    (validate.bits, True, "an integer in 1..16"),
    (validate.bits, np.float32(8), "an integer in 1..16"),
])
def test_bad_values_are_refused_with_name_value_and_range(check, value, allowed):
    """Guards: each bad value is a ValueError whose message shows name=value and what is allowed."""
    with pytest.raises(ValueError) as info:
        check("knob", value)
    message = str(info.value)
    assert f"knob={value!r}" in message
    assert allowed in message


def test_bits_honours_a_custom_upper_bound():
    """Guards: bits(high=8) (k-means) refuses 9 and names the smaller range."""
    assert validate.bits("bits", 8, high=8) == 8
    with pytest.raises(ValueError, match=re.escape("bits=9 must be an integer in 1..8")):
        validate.bits("bits", 9, high=8)


@pytest.mark.parametrize("kwargs, good, bad, words", [
    ({}, [-10**20, 0, 10**20, np.int64(-4)], [1.0, True, NAN], "any integer"),
    ({"low": 2}, [2, 100], [1, 2.0], "an integer >= 2"),
    ({"high": 5}, [-7, 5], [6, 5.0], "an integer <= 5"),
    ({"low": 0, "high": 3}, [0, 3, np.uint16(1)], [-1, 4, False], "an integer in 0..3"),
])
def test_integer_bounds_are_inclusive_and_named(kwargs, good, bad, words):
    """Guards: integer() includes both bounds, and the message says which bounds (open or closed) apply."""
    for value in good:
        assert validate.integer("seed", value, **kwargs) == int(value)
        assert type(validate.integer("seed", value, **kwargs)) is int
    for value in bad:
        with pytest.raises(ValueError) as info:
            validate.integer("seed", value, **kwargs)
        assert f"seed={value!r}" in str(info.value) and words in str(info.value)


def test_choice_accepts_an_option_and_lists_them_when_refusing():
    """Guards: choice returns the option and refuses anything else with the tuple of options."""
    assert validate.choice("scope", "layer", ["layer", "global"]) == "layer"
    with pytest.raises(ValueError, match=re.escape("scope='row' must be one of ('layer', 'global')")):
        validate.choice("scope", "row", ["layer", "global"])
    with pytest.raises(ValueError, match=re.escape("scope=None must be one of")):
        validate.choice("scope", None, ("layer",))


# --- argparse converters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("check, text, expected", [
    (validate.positive_int, "3", 3),
    (validate.positive_int, " 12 ", 12),
    (validate.nonnegative_int, "0", 0),
    (validate.bits, "16", 16),
    (validate.fraction, "0.9", 0.9),
    (validate.fraction, "0", 0.0),
    (validate.probability, "1", 1.0),
    (validate.positive_float, "1e-3", 1e-3),
    (validate.nonnegative_float, "0.0", 0.0),
    (validate.temperature, "4", 4.0),
])
def test_cli_converts_good_strings(check, text, expected):
    """Guards: integer checks parse with int, the others with float, and the checked value is returned."""
    value = validate.cli(check)(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("check, text, message", [
    (validate.positive_int, "abc", "'abc' is not an integer"),
    (validate.positive_int, "2.0", "'2.0' is not an integer"),   # an integer check does not take floats
    (validate.positive_int, "", "'' is not an integer"),
    (validate.bits, "four", "'four' is not an integer"),
    (validate.fraction, "lots", "'lots' is not a number"),
    (validate.temperature, "", "'' is not a number"),
    (validate.positive_int, "0", "0 must be a positive integer"),
    (validate.nonnegative_int, "-1", "-1 must be a non-negative integer"),
    (validate.bits, "17", "17 must be an integer in 1..16"),
    (validate.fraction, "1.0", "1.0 must be a number in [0, 1)"),
    (validate.fraction, "nan", "nan must be a number in [0, 1)"),
    (validate.positive_float, "inf", "inf must be a positive finite number"),
    (validate.probability, "1.5", "1.5 must be a number in [0, 1]"),
])
def test_cli_refuses_bad_strings_with_a_clear_message(check, text, message):
    """Guards: non-numeric text and out-of-range values become ArgumentTypeError with a readable message."""
    with pytest.raises(argparse.ArgumentTypeError) as info:
        validate.cli(check)(text)
    assert str(info.value) == message
    assert "value=" not in str(info.value)  # the placeholder name is not shown; argparse names the option


def test_cli_with_an_explicit_parser_and_bounds():
    """Guards: parse= overrides the default parser, so bounded integer checks work on the command line."""
    def seed(name, value):
        return validate.integer(name, value, low=0, high=9)

    convert = validate.cli(seed, parse=int)
    assert convert("9") == 9
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape("10 must be an integer in 0..9")):
        convert("10")
    with pytest.raises(argparse.ArgumentTypeError, match="is not an integer"):
        convert("x")


@pytest.mark.parametrize("check, argv, message", [
    (validate.positive_int, ["--x", "0"], "0 must be a positive integer"),
    (validate.positive_int, ["--x", "1.5"], "'1.5' is not an integer"),
    (validate.fraction, ["--x", "1"], "1.0 must be a number in [0, 1)"),
    (validate.fraction, ["--x", "half"], "'half' is not a number"),
])
def test_argparse_exits_with_status_2_and_names_the_option(check, argv, message, capsys):
    """Guards: a bad CLI value stops argparse with exit status 2 and 'argument --x: <reason>' on stderr."""
    parser = argparse.ArgumentParser(prog="prog")
    parser.add_argument("--x", type=validate.cli(check))
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --x: {message}" in err


def test_argparse_accepts_good_values():
    """Guards: a good value goes through argparse converted, with the right type."""
    parser = argparse.ArgumentParser(prog="prog")
    parser.add_argument("--epochs", type=validate.cli(validate.positive_int))
    parser.add_argument("--sparsity", type=validate.cli(validate.fraction))
    args = parser.parse_args(["--epochs", "5", "--sparsity", "0.75"])
    assert args.epochs == 5 and type(args.epochs) is int
    assert math.isclose(args.sparsity, 0.75) and type(args.sparsity) is float


@pytest.mark.parametrize("text, expected", [(None, [9]), ("0,1,2", [0, 1, 2]), (" 3 , 4", [3, 4])])
def test_env_list_reads_a_comma_separated_variable(monkeypatch, text, expected):
    """The notebooks' DC_SEEDS: unset gives the default; items are stripped and checked one by one."""
    if text is None:
        monkeypatch.delenv("DC_SEEDS", raising=False)
    else:
        monkeypatch.setenv("DC_SEEDS", text)
    assert validate.env_list("DC_SEEDS", [9], validate.nonnegative_int) == expected


@pytest.mark.parametrize("text, message", [("0,,1", r"DC_SEEDS='0,,1': '' is not an integer"),
                                           ("-1", r"DC_SEEDS='-1': -1 must be a non-negative integer"),
                                           ("", r"DC_SEEDS='': '' is not an integer"),
                                           ("1,2,1", r"DC_SEEDS='1,2,1' lists \[1\] more than once")])
def test_env_list_names_the_variable_and_the_bad_item(monkeypatch, text, message):
    monkeypatch.setenv("DC_SEEDS", text)
    with pytest.raises(ValueError, match=r"environment variable " + message):
        validate.env_list("DC_SEEDS", [9], validate.nonnegative_int)
