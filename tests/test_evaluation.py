"""evaluation.predict_memoized: the teacher's logits remembered, never stale (checked against predict)."""

import torch
from torch import nn

from tutorial_utils import evaluation, models


def _counted(model: nn.Module) -> list[int]:
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    return calls


def test_the_same_model_and_images_run_the_model_once():
    torch.manual_seed(0)
    model, x = models.mlp([12, 6, 3]), torch.randn(40, 12)
    calls = _counted(model)
    first = evaluation.predict_memoized(model, x)
    first.zero_()                                               # the caller's copy, not the memo
    again = evaluation.predict_memoized(model, x.clone())       # equal images, another tensor
    assert calls == [40] and torch.equal(again, evaluation.predict(model, x))


def test_any_change_to_weights_structure_or_images_runs_it_again():
    torch.manual_seed(1)
    model, x = models.mlp([12, 6, 3]), torch.randn(40, 12)
    calls = _counted(model)
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
    assert len(calls) == 11                                     # the first call, 5 misses, 5 references


def test_another_model_with_equal_weights_is_not_taken_for_it_and_only_two_are_kept():
    torch.manual_seed(2)
    a, x = models.mlp([12, 6, 3]), torch.randn(40, 12)
    b, c = models.mlp([12, 6, 3]), models.mlp([12, 6, 3])
    b.load_state_dict(a.state_dict())
    calls = {name: _counted(model) for name, model in (("a", a), ("b", b), ("c", c))}
    for model in (a, b, c, a):                                  # a was pushed out by b and c
        evaluation.predict_memoized(model, x)
    evaluation.predict_memoized(c, x)                           # c is still remembered
    assert {name: len(found) for name, found in calls.items()} == {"a": 2, "b": 1, "c": 1}
