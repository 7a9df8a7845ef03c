"""A sweep of bad inputs across the public API and the command line: each is a ValueError, TypeError or
FileNotFoundError (or, on the command line, exit status 2) whose message names the argument or the file,
shows the value, and says what is allowed. Nothing is silently clamped."""

import gzip

import numpy as np
import pytest
import torch

from tutorial_utils import (calibration, centroids, data, distillation, encoding, evaluation, files, hints, int8,
                            measure, models, nbits, pipeline, privacy, pruning, quantization, recipes, robustness,
                            stats, storage, training, validate)

T = torch.randn(4, 4)
STUDENT = models.student()


@pytest.mark.parametrize("call, error, message", [
    (lambda: data.load("cifar10"), ValueError, r"name='cifar10' must be one of \('mnist-5k'"),
    (lambda: data.load("fashion-mnist", root="/no/such/folder"), FileNotFoundError, r"root='/no/such/folder' does not exist"),
    (lambda: data.random_shift(torch.zeros(2, 784), max_shift=30), ValueError, r"max_shift=30 must be an integer in 0..27"),
    (lambda: models.mlp([784, 0, 10]), ValueError, r"sizes=\[784, 0, 10\] must list"),
    (lambda: models.mlp([784, 10], dropout=-0.1), ValueError, r"dropout=-0.1 must be a number in \[0, 1\)"),
    (lambda: models.preset("vgg"), ValueError, r"name='vgg' must be one of \('big-teacher'"),
    (lambda: training.setup(seed=-5), ValueError, r"seed=-5 must be an integer in 0..4294967295"),
    (lambda: training.fit(STUDENT, None, epochs=0), ValueError, r"epochs=0 must be a positive integer"),
    (lambda: training.fit(STUDENT, None, epochs=1, lr=-1.0), ValueError, r"lr=-1.0 must be a positive finite number"),
    (lambda: training.fit(STUDENT, None, epochs=1, batch_size=0), ValueError, r"batch_size=0 must be a positive integer"),
    (lambda: pruning.magnitude_masks(STUDENT, 1.0), ValueError, r"sparsity=1.0 must be a number in \[0, 1\)"),
    (lambda: pruning.magnitude_masks(STUDENT, float("nan")), ValueError, r"sparsity=nan must be a number in \[0, 1\)"),
    (lambda: pruning.magnitude_masks(STUDENT, 0.5, scope="row"), ValueError, r"scope='row' must be one of"),
    (lambda: pruning.apply_masks_(STUDENT, {"0.weight": torch.ones(2, 2)}), ValueError, r"masks\['0.weight'\] has shape \(2, 2\)"),
    (lambda: pruning.agp_sparsity(11, 10, 0.9), ValueError, r"step=11 must be an integer in 0..10"),
    (lambda: pruning.prune_neurons(STUDENT, -0.5), ValueError, r"amount=-0.5 must be a number in \[0, 1\)"),
    (lambda: quantization.quantize(T, 0), ValueError, r"bits=0 must be an integer in 1..16"),
    (lambda: quantization.quantize(T, 17), ValueError, r"bits=17 must be an integer in 1..16"),
    (lambda: quantization.quantize(T, 4.5), ValueError, r"bits=4.5 must be an integer in 1..16"),
    (lambda: quantization.quantize(torch.tensor([]), 8), ValueError, r"x is empty"),
    (lambda: quantization.quantize(torch.tensor([float("inf")]), 8), ValueError, r"NaN or inf"),
    (lambda: quantization.quantize(torch.ones(3), 8, per_channel=True), ValueError, r"per_channel needs a tensor of at least 2 dimensions"),
    (lambda: quantization.kmeans_quantize(T, 4, iterations=0), ValueError, r"iterations=0 must be a positive integer"),
    (lambda: distillation.kd_loss(T, T, torch.zeros(4, dtype=torch.long), temperature=0), ValueError, r"temperature=0 must be a finite number > 0"),
    (lambda: distillation.kd_loss(T, T, torch.zeros(4, dtype=torch.long), alpha=1.2), ValueError, r"alpha=1.2 must be a number in \[0, 1\]"),
    (lambda: distillation.kd_loss(T, torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), ValueError, r"student_logits \(4, 4\) and teacher_logits \(4, 3\)"),
    (lambda: encoding.pack_bits(torch.tensor([9]).numpy(), 3), ValueError, r"codes must lie in \[0, 7\] for bits=3"),
    (lambda: storage.save(STUDENT, "/tmp/x.dcmp", sparse="coo"), ValueError, r"sparse='coo' must be one of"),
    (lambda: storage.load("/no/such/file.dcmp"), FileNotFoundError, r"path='/no/such/file.dcmp' is not a file"),
    (lambda: measure.latency_ms(STUDENT, 0), ValueError, r"batch_size=0 must be a positive integer"),
    (lambda: measure.Ledger().add(""), ValueError, r"stage='' must be a non-empty string"),
    (lambda: training.fit(STUDENT, None, epochs=2.0), ValueError, r"epochs=2.0 must be a positive integer"),
    (lambda: training.fit(STUDENT, None, epochs=1, batch_size=32.0), ValueError, r"batch_size=32.0 must be a positive integer"),
    (lambda: training.fit(STUDENT, None, epochs=1, schedule="step"), ValueError, r"schedule='step' must be one of"),
    (lambda: training.fit(STUDENT, None, epochs=1, weight_decay=float("inf")), ValueError, r"weight_decay=inf must be a finite number >= 0"),
    (lambda: training.fit(STUDENT, None, config=training.TrainConfig(), epochs=3), ValueError, r"either config= or the keywords \['epochs'\]"),
    (lambda: training.TrainConfig(lr=float("nan")), ValueError, r"lr=nan must be a positive finite number"),
    (lambda: training.setup(0, threads=0), ValueError, r"threads=0 must be a positive integer"),
    (lambda: training.load_or_train_teacher(None, preset="vgg"), ValueError, r"name='vgg' must be one of"),
    (lambda: data.batches(T, T[:, 0], batch_size=2.5), ValueError, r"batch_size=2.5 must be a positive integer"),
    (lambda: data.load("mnist-5k").holdout(0), ValueError, r"n=0 must be an integer in 1..3999"),
    (lambda: distillation.KDConfig(temperature=float("inf")), ValueError, r"temperature=inf must be a finite number > 0"),
    (lambda: distillation.distillation_loss(STUDENT, kd=4.0), TypeError, r"kd must be a distillation.KDConfig"),
    (lambda: distillation.distill(STUDENT, STUDENT, None, kd=distillation.KDConfig(), alpha=0.5), ValueError, r"either kd= or temperature=/alpha="),
    (lambda: quantization.kmeans_quantize(T, 12), ValueError, r"bits=12 must be an integer in 1..8"),
    (lambda: quantization.kmeans_quantize(T, 5), ValueError, r"bits=5 asks for 32 centroids but x has only 16 values"),
    (lambda: quantization.QuantConfig(bits=4, scale_dtype="bfloat16"), ValueError, r"scale_dtype='bfloat16' must be one of"),
    (lambda: quantization.prepare_qat(STUDENT, quantization.QuantConfig(bits=4), per_channel=False), ValueError, r"may only be given with bits"),
    (lambda: quantization.quantize_model(quantization.prepare_qat(STUDENT, 4), 8), ValueError, r"differs from the config the QAT model was trained with"),
    (lambda: pruning.to_torch_prune_(models.mlp([4, 3]), {"0.bias": torch.ones(3)}), ValueError,
     r"masks has key '0.bias': to_torch_prune_ hands over weight masks only"),
    (lambda: centroids.prepare(quantization.quantize_model(STUDENT, 2, method="kmeans", act_bits=4,
                                                           calibration=torch.rand(8, 784))), ValueError,
     r"CentroidLinear trains weights only; this layer rounds its input to act_bits=4"),
    # clustering weights trained on a uniform grid converts them to another function (up to 0.1 in the logits)
    (lambda: quantization.quantize_model(quantization.prepare_qat(STUDENT, 4), method="kmeans"), ValueError,
     r"method='kmeans' would cluster weights that QAT trained on a uniform grid"),
    (lambda: quantization.quantize_model(STUDENT), ValueError, r"config=None: give a QuantConfig or bits"),
    (lambda: quantization.quantize_model(STUDENT, 4, method="huffman"), ValueError, r"method='huffman' must be one of"),
    (lambda: quantization.quantize_model(STUDENT, 4, act_bits=8), ValueError, r"calibration must be a non-empty 2-d floating-point tensor; got NoneType"),
    (lambda: recipes.quantize_aware(STUDENT, None, quant=1, masks={}), ValueError, r"bits=1 cannot keep pruned weights at zero"),
    (lambda: recipes.prune_(STUDENT, None, sparsity=1.5), ValueError, r"sparsity=1.5 must be a number in \[0, 1\)"),
    (lambda: pruning.random_masks(STUDENT, -0.1), ValueError, r"sparsity=-0.1 must be a number in \[0, 1\)"),
    (lambda: pruning.magnitude_masks(torch.nn.ReLU(), 0.5), TypeError, r"model of type ReLU has no nn.Linear layers"),
    (lambda: measure.latency_ms(STUDENT, 1, threads=0), ValueError, r"threads=0 must be a positive integer"),
    (lambda: measure.Ledger(repeats=0), ValueError, r"repeats=0 must be a positive integer"),
    (lambda: measure.pareto_front([{"stage": "a", "accuracy": 0.5}]), ValueError, r"row 'a' has bytes=None"),
    (lambda: storage.save(STUDENT, "/tmp/x.dcmp", compress="brotli"), ValueError, r"compress='brotli' must be one of"),
    (lambda: storage.save(STUDENT, "/tmp/x.dcmp", index_bits=0), ValueError, r"index_bits=0 must be an integer in 1..16"),
    (lambda: storage.load(__file__), ValueError, r"test_bad_inputs.py is not a distill-and-compress model file"),
    (lambda: storage.load(__file__, max_parameters=0), ValueError, r"max_parameters=0 must be a positive integer"),
    (lambda: files.cache_dir("../escape"), ValueError, r"cache folder name '../escape' must be"),
    (lambda: files.atomic_write("", lambda f: None), ValueError, r"path='\.' names no file|path='' names no file"),
    (lambda: encoding.unpack_bits(b"\x00", 8, 2), ValueError, r"buffer of 1 bytes is too short for 2 codes"),
    (lambda: calibration.fit_temperature(T, torch.zeros(4, dtype=torch.long), high=float("inf")), ValueError,
     r"high=inf must be a positive finite number"),
    (lambda: distillation.match_class_prior_(models.mlp([4, 3, 2]), T, True), ValueError,
     r"class_index=True must be an integer in 0..1"),
    (lambda: distillation.match_class_prior_(models.mlp([4, 3, 2]), T, 1, steps=0), ValueError,
     r"steps=0 must be a positive integer"),
    (lambda: privacy.auc_standard_error(1.5, 10, 10), ValueError, r"value=1.5 must be a number in \[0, 1\]"),
    (lambda: privacy.auc_standard_error(0.5, 0, 10), ValueError, r"members=0 must be a positive integer"),
    (lambda: evaluation.confusion_matrix(models.mlp([4, 3, 2]), T, torch.tensor([0, 1, 2, 1]), classes=2),
     ValueError, r"y must hold labels in 0..1 \(2 classes\); got 0 to 2"),
    (lambda: evaluation.confusion_matrix(models.mlp([4, 3, 2]), T, torch.tensor([0, 1]), classes=2),
     ValueError, r"y holds 2 labels for 4 images; they must match"),
    (lambda: evaluation.confusion_matrix(models.mlp([4, 3, 2]), T, torch.tensor([0, 1, 0, 1]), classes=0),
     ValueError, r"classes=0 must be a positive integer"),
    (lambda: nbits.block_size_for(0), ValueError, r"k=0 must be a positive integer"),
    (lambda: int8.quantize_input(T, bits=9), ValueError, r"bits=9 must be an integer in 1..8"),
    (lambda: stats.wilson_interval(5, 10, 1.5), ValueError, r"confidence=1.5 must be a float in \(0, 1\)"),
    (lambda: evaluation.predict(models.mlp([4, 3, 2]), T, batch_size=0), ValueError, r"batch_size=0 must be a positive integer"),
    (lambda: calibration.fit_temperature(T, torch.zeros(4, dtype=torch.long), points=0), ValueError,
     r"points=0 must be a positive integer"),
    (lambda: calibration.fit_temperature(T, torch.zeros(4, dtype=torch.long), low=0.0), ValueError,
     r"low=0.0 must be a positive finite number"),
    (lambda: hints.hint_distillation_loss(hints.HintStudent(models.mlp([4, 3, 2]), 3), models.mlp([4, 3, 2]), None,
                                          beta=-1.0), ValueError, r"beta=-1.0 must be a finite number >= 0"),
    (lambda: nbits.pack_4bit(torch.zeros(2, 8, dtype=torch.long), 7), ValueError,
     r"block_size=7 must be a power of two >= 16"),
    (lambda: nbits.pack_4bit(torch.full((2, 8), 16), 16), ValueError, r"unsigned 4-bit values 0..15; got values 16 to 16"),
    (lambda: nbits.pack_4bit(torch.tensor([[3.7, 14.9]]), 16), TypeError,       # was packed as 3 and 14
     r"codes must be an integer tensor \(values 0..15\); got dtype torch.float32"),
    (lambda: nbits.inputs(quantization.QuantizedLinear(quantization.quantize(torch.randn(16, 16), 4, per_channel=True,
                                                                             axis=1), torch.zeros(16)), 16), ValueError,
     r"one scale per output row \(axis 0\) or one per layer; this layer has 16 scales along axis=1 for 16 rows"),
    # labels that would broadcast, or name no class, were a silent wrong accuracy
    (lambda: evaluation.evaluate(models.mlp([4, 3]), T, torch.zeros(4, 1, dtype=torch.long)), ValueError,
     r"y must be a 1-d integer tensor of class labels; got Tensor of shape \(4, 1\)"),
    (lambda: evaluation.evaluate(models.mlp([4, 3]), T, torch.full((4,), 9)), ValueError,
     r"y must hold labels in 0..2 \(3 classes\); got 9 to 9"),
    (lambda: evaluation.correct(models.mlp([4, 3]), T, torch.zeros(3, dtype=torch.long)), ValueError,
     r"y holds 3 labels for 4 images"),
    (lambda: evaluation.evaluate(models.mlp([4, 3]), T, torch.zeros(4)), ValueError, r"1-d integer tensor.*float32"),
    (lambda: pruning.magnitude_masks(STUDENT, 0.9995), ValueError,
     r"sparsity=0.9995 \(scope='layer'\) removes every weight of 2.weight"),
    (lambda: pruning.random_masks(STUDENT, 0.99999, scope="global"), ValueError,
     r"sparsity=0.99999 \(scope='global'\) removes every weight of \d\.weight"),
    (lambda: pruning.apply_masks(models.mlp([4, 3]), {"0.weight": torch.full((3, 4), 0.5)}), ValueError,
     r"masks\['0.weight'\] must hold only 0 and 1 \(keep or prune\); it holds 0.5"),
    (lambda: pruning.apply_masks(models.mlp([4, 3]), {"0.weight": torch.full((3, 4), float("nan"))}), ValueError,
     r"it holds nan"),
    (lambda: robustness.fgsm(models.mlp([4, 3]), T, torch.zeros(4, dtype=torch.long), epsilon=1.5), ValueError,
     r"epsilon=1.5 must be a number in \[0, 1\]"),
    (lambda: stats.mean_std([0.9, float("nan")]), ValueError, r"values holds nan: every result must be a finite number"),
    (lambda: stats.paired_over_seeds([0.9, 0.8], [0.9, float("nan")]), ValueError, r"values_b holds nan"),
    (lambda: stats.paired_difference([float("inf"), 0.8], [0.9, 0.9]), ValueError, r"values_a holds inf"),
    (lambda: quantization.quantize_model(models.mlp([4, 3]), 8, calibration=T), ValueError,
     r"calibration is used only with act_bits"),
    (lambda: quantization.quantize_model(models.mlp([4, 3]), 8, act_bits=8, calibration=torch.zeros(5, 7)), ValueError,
     r"calibration has 7 features per row; the model takes 4"),
    (lambda: encoding.pack_bits(np.array([2.7, 1.2]), 3), ValueError, r"codes must be integers; got dtype float64"),
    (lambda: encoding.unpack_bits(b"\x01\x02", 8, -1), ValueError, r"count=-1 must be a non-negative integer"),
    (lambda: encoding.relative_decode(np.array([-3, 0]), 10), ValueError, r"codes must be gap codes >= 0; got -3"),
    (lambda: files.remove_stale_temporaries(".", older_than_s=-1), ValueError, r"older_than_s=-1 must be"),
    (lambda: data.Splits(torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long), T[:, :3],
                         torch.zeros(4, dtype=torch.long)), ValueError, r"x_train holds 12 NaN or infinite values"),
    (lambda: data.Splits(T, torch.zeros(4), T, torch.zeros(4, dtype=torch.long)), ValueError,
     r"y_train must be a 1-d integer tensor of class labels"),
    (lambda: data.Splits(T, torch.zeros(4, dtype=torch.long), T[:, :3], torch.zeros(4, dtype=torch.long)), ValueError,
     r"x_train has 4 features per image but x_test 3"),
    (lambda: data.Splits(T, torch.full((4,), -1), T, torch.zeros(4, dtype=torch.long)), ValueError,
     r"y_train must hold class labels >= 0; got -1"),
    (lambda: data.Splits(T[:0], torch.zeros(0, dtype=torch.long), T, torch.zeros(4, dtype=torch.long)), ValueError,
     r"x_train must be a non-empty 2-d floating-point tensor"),
    (lambda: evaluation.predict(models.mlp([4, 3]), T[:0]), ValueError, r"x must be a non-empty tensor of inputs"),
    (lambda: quantization.qrange(0, True), ValueError, r"bits=0 must be an integer in 1..32"),
    (lambda: privacy.permutation_test(torch.rand(5), torch.rand(4), seed=1.5), ValueError, r"seed=1.5 must be an integer"),
    (lambda: distillation.kd_loss(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), ValueError,
     r"the batch is empty: kd_loss needs at least one image"),
    (lambda: quantization.quantize(T, 4, symmetric="no"), TypeError, r"symmetric='no' must be True or False"),
    (lambda: quantization.fake_quantize(T, 4, per_channel=1), TypeError, r"per_channel=1 must be True or False"),
    (lambda: measure.macs(models.mlp([4, 3])), ValueError, r"in_features=784 but the model's first layer takes 4"),
    (lambda: measure.macs(models.mlp([4, 3]), in_features=0), ValueError, r"in_features=0 must be a positive integer"),
    (lambda: measure.latency_ms(models.mlp([4, 3]), 1), ValueError, r"in_features=784 but the model's first layer takes 4"),
    (lambda: pruning.sensitivity_scan(STUDENT, None, sparsities=[0.5, 1.0]), ValueError,
     r"sparsities\[1\]=1.0 must be a number in \[0, 1\)"),
])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_scalars_are_accepted_where_numbers_are():
    assert pruning.magnitude_masks(STUDENT, np.float32(0.5))["0.weight"].mean().item() == pytest.approx(0.5, abs=1e-3)
    assert training.TrainConfig(epochs=np.int64(3)).epochs == 3
    assert quantization.quantize(T, np.int32(4)).bits == 4


def test_environment_variables_are_named_in_their_errors(monkeypatch):
    monkeypatch.setenv("DC_EPOCHS", "abc")
    with pytest.raises(ValueError, match=r"environment variable DC_EPOCHS='abc': 'abc' is not an integer"):
        validate.env("DC_EPOCHS", 15, validate.positive_int)
    monkeypatch.setenv("DC_EPOCHS", "0")
    with pytest.raises(ValueError, match=r"environment variable DC_EPOCHS='0': 0 must be a positive integer"):
        validate.env("DC_EPOCHS", 15, validate.positive_int)


def test_a_truncated_data_file_names_itself(tmp_path):
    good = gzip.compress(bytes(4 + 4 + 16))
    (tmp_path / "labels-idx1-ubyte.gz").write_bytes(good[:10])
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte.gz cannot be read as an IDX file"):
        data.read_idx(tmp_path / "labels-idx1-ubyte.gz")


@pytest.mark.parametrize("argv, message", [
    (["--sparsity", "-0.5"], "argument --sparsity: -0.5 must be a number in [0, 1)"),
    (["--sparsity", "abc"], "argument --sparsity: 'abc' is not a number"),
    (["--epochs", "2.5"], "argument --epochs: '2.5' is not an integer"),
    (["--finetune-epochs", "-1"], "argument --finetune-epochs: -1 must be a positive integer"),
    (["--qat-epochs", "0"], "argument --qat-epochs: 0 must be a positive integer"),
    (["--temperature=-inf"], "argument --temperature: -inf must be a finite number > 0"),
    (["--alpha", "nan"], "argument --alpha: nan must be a number in [0, 1]"),
    (["--seed", "x"], "argument --seed: 'x' is not an integer"),
    (["--threads", "1.5"], "argument --threads: '1.5' is not an integer"),
    (["--teacher", "gpt"], "argument --teacher: invalid choice: 'gpt'"),
    (["--student", "resnet"], "argument --student: invalid choice: 'resnet'"),
    (["--dataset", "cifar10"], "argument --dataset: invalid choice: 'cifar10'"),
    (["--schedule", "step"], "argument --schedule: invalid choice: 'step'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--data-dir", "/no/such/folder", "--dataset", "mnist"], "root='/no/such/folder' does not exist"),
])
def test_bad_command_lines_are_refused_before_any_work(tmp_path, capsys, argv, message):
    assert pipeline.main(["--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_failed_prior_match_leaves_the_bias_as_it_was(monkeypatch):
    """match_class_prior_ changes the bias in place: an error on the way must undo what it tried."""
    model = models.mlp([4, 3, 2])
    before = model[-1].bias.detach().clone()
    with pytest.raises(ValueError, match="x has 7 features per row; the model takes 4"):
        distillation.match_class_prior_(model, torch.randn(5, 7), 1)
    with pytest.raises(ValueError, match="x must be a non-empty 2-d floating-point tensor"):
        distillation.match_class_prior_(model, torch.empty(0, 4), 1)
    calls, predict = [], distillation.training.predict

    def interrupted(*args, **kwargs):   # an interrupt in the middle of the bisection
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return predict(*args, **kwargs)
    monkeypatch.setattr(distillation.training, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distillation.match_class_prior_(model, torch.randn(6, 4), 1)
    assert torch.equal(model[-1].bias, before)


def test_remove_stale_temporaries_takes_only_its_own_files(tmp_path):
    """Only atomic_write's own .NAME.<8 random characters>.tmp files, and only old ones, are removed."""
    import os
    ours, mine = tmp_path / ".ledger.json.ab12cd_9.tmp", tmp_path / ".notes.tmp"
    for path in (ours, mine):
        path.write_text("x")
        os.utime(path, (0, 0))                     # very old
    assert files.remove_stale_temporaries(tmp_path, older_than_s=60) == 1
    assert not ours.exists() and mine.exists()
