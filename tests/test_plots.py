import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_utils import plots  # noqa: E402


def test_figures_draw(splits):
    figures = [
        plots.image_grid(splits.x_test, splits.y_test, predicted=torch.zeros(1000, dtype=torch.long)),
        plots.training_curves([{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5, "test_accuracy": 0.4},
                               {"epoch": 2, "loss": 0.5, "train_accuracy": 0.7, "test_accuracy": 0.6}]),
        plots.confusion_matrix(torch.eye(10, dtype=torch.long) * 9),
        plots.weight_histogram({"0.weight": torch.randn(20, 30), "2.weight": torch.randn(5, 20)}),
        plots.soft_targets(splits.x_test[:2], {"T=1": torch.softmax(torch.randn(2, 10), 1),
                                               "T=4": torch.softmax(torch.randn(2, 10), 1)}),
        plots.pareto([{"stage": "a", "bytes": 100, "accuracy": 0.9, "latency_ms": 1.0},
                      {"stage": "b", "bytes": 10, "accuracy": 0.8, "latency_ms": 0.5},
                      {"stage": "c", "bytes": 50, "accuracy": 0.7, "latency_ms": 0.9}], reference_bytes=100),
        plots.curves([0.1, 0.5, 0.9], {"one run": [0.9, 0.8, 0.5], "three seeds": [[0.9, 0.8], [0.7, 0.6], [0.4, 0.2]]},
                     xlabel="sparsity", ylabel="accuracy", logx=True),
    ]
    assert len(figures[0].axes) == 20
    # mistakes are red in the image grid: label 0 predicted 0 is black, any other label is red
    colors = [ax.title.get_color() for ax in figures[0].axes]
    assert "red" in colors
    for fig in figures:
        fig.canvas.draw()
        plt.close(fig)


def test_image_grid_rejects_empty_input():
    with pytest.raises(ValueError, match="no images"):
        plots.image_grid(torch.zeros(0, 784), torch.zeros(0, dtype=torch.long))


def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_the_plotted_numbers_are_the_data():
    """Guards: a figure that draws is not yet a figure that is right: the Pareto line passes through the
    undominated rows only (c is beaten by b: fewer bytes, more accurate), at x = reference / bytes; a series
    over seeds is drawn as its mean with a min-max band; the reliability line is each bin's (confidence,
    accuracy), beside the diagonal."""
    rows = [{"stage": "a", "bytes": 100, "accuracy": 0.9}, {"stage": "b", "bytes": 10, "accuracy": 0.8},
            {"stage": "c", "bytes": 50, "accuracy": 0.7}]
    fig = plots.pareto(rows, reference_bytes=100)
    front = _line(fig.axes[0], "Pareto front")
    assert list(front.get_xdata()) == [1.0, 10.0] and list(front.get_ydata()) == [0.9, 0.8]
    plt.close(fig)

    fig = plots.curves([0.1, 0.5], {"seeds": [[0.9, 0.7, 0.8], [0.4, 0.6, 0.2]]}, xlabel="s", ylabel="a")
    mean = _line(fig.axes[0], "seeds")
    assert list(mean.get_ydata()) == pytest.approx([0.8, 0.4])
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.2) and band[:, 1].max() == pytest.approx(0.9)
    plt.close(fig)

    bins = [{"confidence": 0.55, "accuracy": 0.5, "n": 10}, {"confidence": 0.95, "accuracy": 0.97, "n": 200}]
    fig = plots.reliability_diagram({"model": bins})
    line = _line(fig.axes[0], "model")
    assert list(line.get_xdata()) == [0.55, 0.95] and list(line.get_ydata()) == [0.5, 0.97]
    assert list(_line(fig.axes[0], "perfectly calibrated").get_xdata()) == [0, 1]
    plt.close(fig)
