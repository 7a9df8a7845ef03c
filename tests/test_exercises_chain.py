"""Notebook 05's checks pass the notebook's solution and fail plausible wrong answers with a precise message."""

import pytest

from tutorial_utils import exercises_chain


def estimate_right(model, bits):
    total = 600
    for layer in (model[0], model[2]):
        n, nonzero = layer.weight.numel(), int((layer.weight != 0).sum())
        total += (nonzero * bits + min(n, 5 * nonzero)) / 8 + 4 * layer.out_features
    return total


def estimate_dense_float(model, bits):
    return sum(4 * layer.weight.numel() for layer in (model[0], model[2]))


def estimate_codes_only(model, bits):
    return sum(int((layer.weight != 0).sum()) * bits / 8 for layer in (model[0], model[2]))  # no positions


def choose_right(points, max_bytes, min_accuracy):
    if max_bytes <= 0:
        raise ValueError("max_bytes")
    fits = [p for p in points if p["bytes"] <= max_bytes and p["val_accuracy"] >= min_accuracy]
    return min(fits, key=lambda p: (-p["val_accuracy"], p["bytes"]), default=None)


def choose_by_test(points, max_bytes, min_accuracy):
    if max_bytes <= 0:
        raise ValueError("max_bytes")
    fits = [p for p in points if p["bytes"] <= max_bytes and p["accuracy"] >= min_accuracy]
    return max(fits, key=lambda p: p["accuracy"], default=None)


def choose_first_of_ties(points, max_bytes, min_accuracy):
    if max_bytes <= 0:
        raise ValueError("max_bytes")
    fits = [p for p in points if p["bytes"] <= max_bytes and p["val_accuracy"] >= min_accuracy]
    return max(fits, key=lambda p: p["val_accuracy"], default=None)  # a tie goes to the larger file listed first


def choose_strict(points, max_bytes, min_accuracy):
    if max_bytes <= 0:
        raise ValueError("max_bytes")
    fits = [p for p in points if p["bytes"] < max_bytes and p["val_accuracy"] > min_accuracy]
    return min(fits, key=lambda p: (-p["val_accuracy"], p["bytes"]), default=None)


def front_right(points):
    def beaten(p):
        return any(q["bytes"] <= p["bytes"] and q["accuracy"] >= p["accuracy"]
                   and (q["bytes"] < p["bytes"] or q["accuracy"] > p["accuracy"]) for q in points)
    return sorted((p for p in points if not beaten(p)), key=lambda p: (p["bytes"], -p["accuracy"]))


def front_strict(points):
    def beaten(p):  # any point at least as good beats it, so equal points knock each other out
        return any(q is not p and q["bytes"] <= p["bytes"] and q["accuracy"] >= p["accuracy"] for q in points)
    return sorted((p for p in points if not beaten(p)), key=lambda p: p["bytes"])


def front_running_max(points):
    kept, best = [], -1.0
    for p in sorted(points, key=lambda p: p["bytes"]):  # ties in bytes are kept in input order
        if p["accuracy"] > best:
            kept.append(p)
            best = p["accuracy"]
    return kept


def front_unsorted(points):
    return list(reversed(front_right(points)))


CASES = [
    (exercises_chain.check_size_estimate, estimate_right, [estimate_dense_float, estimate_codes_only]),
    (exercises_chain.check_pareto_front, front_right, [front_strict, front_running_max, front_unsorted]),
    (exercises_chain.check_operating_point, choose_right, [choose_by_test, choose_first_of_ties, choose_strict]),
]


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_the_solution_and_fails_wrong_answers(check, right, wrongs, exercise_check):
    exercise_check(check, right, wrongs)
