"""centroids: the codebook's gradient is the scatter-add of the weights' gradients; zero stays zero."""

import pytest
import torch
from torch import nn

from tutorial_utils import centroids, models, pruning, quantization, training


def _kmeans_model(sparsity: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    model = models.mlp([20, 8, 3])
    if sparsity:
        pruning.apply_masks_(model, pruning.magnitude_masks(model, sparsity))
    return quantization.quantize_model(model, 2, method="kmeans")


def test_centroid_gradient_is_the_sum_of_the_shared_weights_gradients():
    quantized = _kmeans_model()
    trainable = centroids.prepare(quantized)
    x, y = torch.randn(16, 20), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(trainable(x), y).backward()
    # reference: the same network with an ordinary weight, its gradient summed per code (Han et al.)
    weight = quantized[0].weight.clone().requires_grad_(True)
    hidden = torch.relu(nn.functional.linear(x, weight, quantized[0].bias))
    nn.functional.cross_entropy(quantized[2](hidden), y).backward()
    codes = quantized[0].codes.long().flatten()
    expected = torch.zeros_like(trainable[0].centroids).index_add_(0, codes, weight.grad.flatten())
    torch.testing.assert_close(trainable[0].centroids.grad, expected)


def test_prepare_and_convert_keep_the_function_and_the_pruned_zeros():
    quantized = _kmeans_model(sparsity=0.5)
    trainable = centroids.prepare(quantized)
    x = torch.randn(8, 20)
    torch.testing.assert_close(trainable(x), quantized(x))
    optimizer = torch.optim.Adam(trainable.parameters(), lr=0.05)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(trainable(x), torch.zeros(8, dtype=torch.long)).backward()
        optimizer.step()
    back = centroids.to_quantized(trainable)
    torch.testing.assert_close(back(x), trainable(x).detach())
    assert torch.equal(back[0].weight == 0, quantized[0].weight == 0)      # pruned weights still exactly 0
    assert torch.equal(back[0].codes, quantized[0].codes)                  # assignments unchanged


def test_training_with_the_one_loop_improves_a_2_bit_model(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=2, progress=False)
    quantized = quantization.quantize_model(model, 2, method="kmeans")
    trainable = centroids.prepare(quantized)
    history = training.fit(trainable, small_splits, epochs=2, lr=1e-3, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]


def test_refuses_uniform_codes():
    with pytest.raises(TypeError, match="k-means codes"):
        centroids.prepare(quantization.quantize_model(models.mlp([4, 2]), 4))
