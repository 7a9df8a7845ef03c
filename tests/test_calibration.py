"""calibration: ECE and reliability bins by hand on tiny tensors; temperature scaling recovers a known T."""

import pytest
import torch

from tutorial_utils import calibration


def test_ece_by_hand_on_four_images():
    # confidences 0.9, 0.9 (bin (0.8, 0.9] of 10) and 0.65, 0.65 (bin (0.6, 0.7])
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.35, 0.65], [0.35, 0.65]])
    logits = probabilities.log()
    y = torch.tensor([0, 1, 1, 1])                    # right, wrong, right, right
    rows = calibration.reliability(logits, y, bins=10)
    assert [(r["n"], round(r["accuracy"], 6), round(r["confidence"], 6)) for r in rows] == [(2, 1.0, 0.65), (2, 0.5, 0.9)]
    # ECE = 2/4 * |1.0 - 0.65| + 2/4 * |0.5 - 0.9| = 0.175 + 0.2
    assert calibration.expected_calibration_error(logits, y, bins=10) == pytest.approx(0.375)


def test_perfect_confidence_and_the_last_bin():
    logits = torch.tensor([[50.0, 0.0], [0.0, 50.0]])   # confidence 1.0 falls in the last bin, not past it
    rows = calibration.reliability(logits, torch.tensor([0, 1]), bins=15)
    assert len(rows) == 1 and rows[0]["high"] == 1.0
    assert calibration.expected_calibration_error(logits, torch.tensor([0, 1])) == pytest.approx(0.0, abs=1e-6)


def test_temperature_changes_confidence_not_predictions_and_is_recovered():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, 10, generator=generator) * 2
    y = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator).flatten()
    overconfident = true_logits * 3                    # a model 3x too sure of itself
    t = calibration.fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.05)
    before = calibration.expected_calibration_error(overconfident, y)
    after = calibration.expected_calibration_error(overconfident, y, temperature=t)
    assert after < before / 3
    assert torch.equal((overconfident / t).argmax(1), overconfident.argmax(1))


def test_bad_inputs_name_the_argument():
    logits, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"y holds 3 labels for 4 images"):
        calibration.expected_calibration_error(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y must hold labels in 0..2 \(3 classes\); got 0 to 7"):
        calibration.expected_calibration_error(logits, torch.tensor([0, 7, 1, 2]))     # was a number, silently
    with pytest.raises(ValueError, match=r"y must hold labels in 0..2 \(3 classes\); got 0 to 7"):
        calibration.fit_temperature(logits, torch.tensor([0, 7, 1, 2]))                # was a bare IndexError
    with pytest.raises(ValueError, match=r"y must be a 1-d integer tensor of class labels; got Tensor of shape \(4, 1\)"):
        calibration.brier_change(logits, y[:, None], temperature=2.0)
    with pytest.raises(ValueError, match="logits holds 1 NaN or infinite values"):
        calibration.expected_calibration_error(torch.tensor([[0.0, float("nan"), 0.0]] + [[0.0] * 3] * 3), y)
    with pytest.raises(ValueError, match="bins"):
        calibration.reliability(logits, y, bins=0)
    with pytest.raises(ValueError, match="temperature"):
        calibration.expected_calibration_error(logits, y, temperature=0)
    with pytest.raises(ValueError, match="logits must be a non-empty"):
        calibration.fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="high=0.01 must be larger than low=0.05"):
        calibration.fit_temperature(logits, y, high=0.01)


def test_a_minimum_at_the_end_of_the_grid_warns():
    """Guards: the best T outside [low, high] came back as the grid's end, silently; now it warns."""
    torch.manual_seed(0)
    y = torch.randint(0, 3, (300,))
    logits = torch.nn.functional.one_hot(y, 3).float() * 100.0      # always right: the best T is tiny
    with pytest.warns(UserWarning, match=r"the best T is the end of the grid.*low=0.05"):
        t = calibration.fit_temperature(logits, y)
    assert t == pytest.approx(0.05)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # an interior minimum: no warning
        calibration.fit_temperature(torch.randn(300, 3) + 2 * torch.nn.functional.one_hot(y, 3), y)


def test_a_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    """Guards: bins are ((b - 1) / B, b / B]: with B = 2, a confidence of exactly 0.5 (equal logits) is in the
    first bin. Image A: confidence 0.5, right; image B: confidence 0.75, wrong. By hand,
    ECE = 1/2 |1 - 0.5| + 1/2 |0 - 0.75| = 0.625; a floor rule would put both in one bin and give 0.125."""
    logits = torch.tensor([[0.0, 0.0], [torch.log(torch.tensor(3.0)).item(), 0.0]])
    y = torch.tensor([0, 1])
    assert torch.softmax(logits, 1).max(1).values.tolist() == pytest.approx([0.5, 0.75])
    assert calibration.expected_calibration_error(logits, y, bins=2) == pytest.approx(0.625)



def test_brier_change_is_the_mean_of_per_image_differences_with_its_interval():
    """Guards: by hand on two images, then the interval on random logits: mean +- 1.96 sd / sqrt(n)."""
    logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).repeat(20, 1), torch.tensor([0, 0]).repeat(20)
    p_right, p_wrong = torch.softmax(torch.tensor([2.0, 0.0]), 0), torch.softmax(torch.tensor([0.0, 1.0]), 0)
    before = ((p_right - torch.tensor([1.0, 0.0])) ** 2).sum() + ((p_wrong - torch.tensor([1.0, 0.0])) ** 2).sum()
    q_right, q_wrong = torch.softmax(torch.tensor([1.0, 0.0]), 0), torch.softmax(torch.tensor([0.0, 0.5]), 0)
    after = ((q_right - torch.tensor([1.0, 0.0])) ** 2).sum() + ((q_wrong - torch.tensor([1.0, 0.0])) ** 2).sum()
    result = calibration.brier_change(logits, y, temperature=2.0)
    assert result["change"] == pytest.approx(((after - before) / 2).item(), abs=1e-6)
    generator = torch.Generator().manual_seed(3)
    logits, y = torch.randn(400, 10, generator=generator) * 3, torch.randint(0, 10, (400,), generator=generator)
    one_hot = torch.nn.functional.one_hot(y, 10).double()
    d = (((torch.softmax(logits.double() / 1.7, 1) - one_hot) ** 2).sum(1) - ((torch.softmax(logits.double(), 1) - one_hot) ** 2).sum(1))
    result = calibration.brier_change(logits, y, temperature=1.7)
    assert result["change"] == pytest.approx(d.mean().item())
    assert result["high"] - result["change"] == pytest.approx(1.959964 * d.std().item() / 20, rel=1e-5)
    assert result["low"] == pytest.approx(2 * result["change"] - result["high"])
    for bad, match in (({"temperature": 0.0}, "temperature"), ({"temperature": 1.0, "confidence": 1.5}, "confidence")):
        with pytest.raises(ValueError, match=match):
            calibration.brier_change(logits, y, **bad)
    with pytest.raises(ValueError, match="at least 30"):
        calibration.brier_change(logits[:10], y[:10], temperature=1.5)
