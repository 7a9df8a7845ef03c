"""evaluation.predict_memoized: the teacher's logits remembered, never stale (checked against predict)."""

import pytest
import torch
from torch import nn

from tutorial_utils import evaluation, models, quantization


@pytest.fixture
def computed(monkeypatch) -> list[int]:
    """The number of rows evaluation.predict computed, one entry per memo miss."""
    calls, predict = [], evaluation.predict
    monkeypatch.setattr(evaluation, "predict", lambda model, x, **kw: calls.append(len(x)) or predict(model, x, **kw))
    return calls


def test_the_same_model_and_images_run_the_model_once(computed):
    torch.manual_seed(0)
    model, x = models.mlp([12, 6, 3]), torch.randn(40, 12)
    first = evaluation.predict_memoized(model, x)
    first.zero_()                                               # the caller's copy, not the memo
    again = evaluation.predict_memoized(model, x.clone())       # equal images, another tensor
    assert computed == [40] and torch.equal(again, evaluation.predict(model, x))


def test_any_change_to_weights_structure_images_or_threads_runs_it_again(computed):
    torch.manual_seed(1)
    model, x = models.mlp([12, 6, 3]), torch.randn(40, 12)
    evaluation.predict_memoized(model, x)
    with torch.no_grad():
        model[0].weight[0, 0] += 1.0                            # in place
    assert torch.equal(evaluation.predict_memoized(model, x), evaluation.predict(model, x))
    model[2].bias.data = torch.zeros(3)                         # .data: no version counter moves
    assert torch.equal(evaluation.predict_memoized(model, x), evaluation.predict(model, x))
    model[1] = nn.Tanh()                                        # no weights change, the function does
    assert torch.equal(evaluation.predict_memoized(model, x), evaluation.predict(model, x))
    y = x.clone()
    y[0, 0] += 1.0
    assert torch.equal(evaluation.predict_memoized(model, y), evaluation.predict(model, y))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)         # other threads, other low bits: computed again
        assert torch.equal(evaluation.predict_memoized(model, y), evaluation.predict(model, y))
    finally:
        torch.set_num_threads(threads)
    model.double()                                              # equal values, another dtype
    assert evaluation.predict_memoized(model, y.double()).dtype == torch.float64
    assert len(computed) == 12                                  # the first call, 6 misses, 5 references


def test_buffers_count_and_hooked_models_are_never_remembered(computed):
    torch.manual_seed(2)
    model, x = quantization.quantize_model(quantization.prepare_qat(models.mlp([12, 6, 3]), 4)), torch.randn(40, 12)
    evaluation.predict_memoized(model, x)
    with torch.no_grad():
        model[0].weight.zero_()                                 # a derived buffer outside the state_dict
    assert torch.equal(evaluation.predict_memoized(model, x), evaluation.predict(model, x))
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(1))
    evaluation.predict_memoized(model, x)
    evaluation.predict_memoized(model, x)
    assert len(seen) == 2 and len(computed) == 5                # computed, and the hook ran, on both calls


def test_another_model_with_equal_weights_is_not_taken_for_it_and_only_two_are_kept(computed, monkeypatch):
    torch.manual_seed(3)
    a, x = models.mlp([12, 6, 3]), torch.randn(40, 12)
    b, c = models.mlp([12, 6, 3]), models.mlp([12, 6, 3])
    b.load_state_dict(a.state_dict())
    for model in (a, b, c, a):                                  # a was pushed out by b and c
        evaluation.predict_memoized(model, x)
    evaluation.predict_memoized(c, x)                           # c is still remembered
    assert len(computed) == 4
