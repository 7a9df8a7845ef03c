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
# # 07 · Beyond accuracy: what compression does to mistakes, attacks, confidence and privacy
#
# The ledger of notebooks 01-06 measures top-1 accuracy, bytes, time and energy. Two models with the
# same accuracy can still differ in *which* images they get wrong, in how easily a small change of the
# pixels fools them, in how confident they are when they are wrong, and in how much they reveal about
# the images they were trained on. The article this tutorial answers asks, in its outlook, how to keep
# compressed and distilled models private and secure; here we measure, on the same chain of models.
#
# **What you will learn**
# - which test images compression "forgets" (Hooker et al. 2019), per class, with intervals;
# - adversarial examples: FGSM from scratch, PGD, accuracy against the size of the perturbation, and
#   how a model that rounds its input can *look* robust (gradient masking);
# - calibration: the expected calibration error, the reliability diagram, temperature scaling;
# - membership inference: the loss-threshold attack and its ROC AUC, how to read an AUC of 0.52, and how to
#   compare two models' AUCs on the same images (DeLong's paired test);
# - to report a null result as a result: every figure over three seeds or with its interval.
#
# **Prerequisites**: notebooks 01 (intervals, paired tests), 04 (temperature) and 05 (the chain). About
# 15 to 20 s with the chain's models cached (by `python -m tutorial_utils teachers`; else `chain.build` trains
# them the first time, a few seconds more: README's table of run times has a 2-core Intel Xeon's figures).
# Numbers in the text are this run's, on the machine in the ledger's record (notebook 01 says more).

# %%
import collections

import torch

from tutorial_utils import (calibration, chain, data, distillation, exercises_beyond, files, measure, plots,
                            privacy, quantization, robustness, stats, storage, training, validate)

# %%
DATASET = validate.env("DC_DATASET", "mnist-5k")
DATA_DIR = validate.env("DC_DATA_DIR", None)
EPOCHS = validate.env("DC_EPOCHS", 15, validate.positive_int)
SEED = validate.env("DC_SEED", 0, validate.nonnegative_int)
SEEDS = validate.env_list("DC_SEEDS", [SEED, SEED + 1, SEED + 2], validate.nonnegative_int)
THREADS = validate.env("DC_THREADS", 2, validate.positive_int)

device = training.setup(SEED, threads=THREADS)
splits = data.load(DATASET, root=DATA_DIR)

# %% [markdown]
# One big teacher (the first seed, `SEED`) for every student, as in notebook 05's section 3; per seed the 784-128-10
# reference and the five models of the chain, with their test accuracies over the seeds:

# %%
big_teacher = training.load_or_train_teacher(splits, **distillation.BIG_TEACHER_RECIPE, seed=SEED, device=device)
zoo = {}   # seed -> {"teacher": the 784-128-10 reference, "scratch", "distilled", "pruned", "qat", "final"}
for seed in SEEDS:   # one big teacher (as in notebook 05's section 3); the students and the reference per seed
    reference = training.load_or_train_teacher(splits, epochs=EPOCHS, seed=seed, device=device)
    zoo[seed] = {"teacher": reference, **chain.build(splits, big_teacher, seed=seed, epochs=EPOCHS)}
NAMES = {"teacher": "teacher 784-128-10", "scratch": "student from scratch", "distilled": "distilled student",
         "pruned": "pruned 90%", "qat": "4-bit QAT", "final": "final (90% + 4-bit)"}
for stage, name in NAMES.items():
    accuracies = [training.evaluate(zoo[s][stage], splits.x_test, splits.y_test) for s in SEEDS]
    print(f"{name:>22}: {measure.over_seeds(accuracies)}")

# %% [markdown]
# Six models per seed: the 784-128-10 reference teacher and the chain of notebook 05 (`chain.build`
# loads them from the cache after the first run). Their mean accuracies lie within 1.1 points of each
# other. Here and below, "±" is the standard deviation over the three seeds, not a standard error
# (divide by √3 for that). (The distilled, pruned, QAT and final models learned from the 784-1200-1200-10 big teacher of
# notebook 04; "teacher" in the tables below is the 784-128-10 reference.)
# Now look past that number.
#
# ## 1. What compression forgets
#
# Compare the final model with the distilled student it was compressed from, image by image. The paired
# test of notebook 01 counts the images only one of them gets right; per class, each accuracy gets its
# Wilson interval:

# %%
report = robustness.disagreement(zoo[SEED]["distilled"], zoo[SEED]["final"], splits.x_test, splits.y_test)
print(f"the two models disagree on {len(report['differ'])} of {len(splits.y_test):,} test images; "
      f"distilled - final: {report['paired']}")
for row in report["per_class"]:
    (low_a, high_a), (low_b, high_b) = row["interval_a"], row["interval_b"]
    print(f"class {row['class']} ({row['n']:>3} images): distilled {row['accuracy_a']:.1%} [{low_a:.0%}, {high_a:.0%}]"
          f"  final {row['accuracy_b']:.1%} [{low_b:.0%}, {high_b:.0%}]  change {row['accuracy_b'] - row['accuracy_a']:+.1%}")
right = {stage: training.correct(zoo[SEED][stage], splits.x_test, splits.y_test) for stage in ("distilled", "final")}
forgotten = (right["distilled"] & ~right["final"]).nonzero().flatten()    # right before compression, wrong after
fig = plots.image_grid(splits.x_test[forgotten], splits.y_test[forgotten], rows=1,
                       predicted=training.predict(zoo[SEED]["final"], splits.x_test[forgotten]).argmax(1))

# %% [markdown]
# The grid shows the first 10 of the 19 images the distilled student got right and the final model gets
# wrong (label→the final model's answer): would you call them typical digits? Compression cost 19 images
# and won 12 back (the other 2 of the 33 disagreements are wrong for both, with different answers), a
# difference the paired test cannot tell from noise. Per class the net change is at most 4 images of 100,
# far from significant even before correcting for ten classes. Hooker et al. found concentrated damage
# on ImageNet and CIFAR-10 by comparing populations of independently trained pruned and unpruned models,
# not one pair; one pair on 1,000 digits cannot resolve it, and saying so is the result.
#
# ## 2. Adversarial examples
#
# An attacker may change every pixel by at most epsilon: the allowed images form the *epsilon ball* around
# x in the L-infinity norm (the largest change of any one pixel). FGSM moves every pixel by ±epsilon in the
# direction that, to first order, increases the loss most inside that ball: the sign of the gradient with
# respect to the *input*. Then it clips to valid pixels. From scratch, in pixel units (the
# data are normalised, so epsilon becomes epsilon / STD in the model's units):

# %%
model, x, y, epsilon = zoo[SEED]["teacher"], splits.x_test, splits.y_test, 0.05
x_grad = x.clone().requires_grad_(True)
loss = torch.nn.functional.cross_entropy(model(x_grad), y)
(gradient,) = torch.autograd.grad(loss, x_grad)                               # (1000, 784)
low, high = (0 - data.MEAN) / data.STD, (1 - data.MEAN) / data.STD           # the pixel range, normalised
x_adv = torch.clamp(x + epsilon / data.STD * gradient.sign(), low, high)
assert torch.allclose(x_adv, robustness.fgsm(model, x, y, epsilon=epsilon))
print(f"clean {training.evaluate(model, x, y):.1%}, after FGSM at epsilon {epsilon} ({epsilon * 255:.0f}/255 per pixel): "
      f"{training.evaluate(model, x_adv, y):.1%}")

# %% [markdown]
# A change of 13/255 per pixel, hard to see, costs the teacher 26 points (94.5% → 68.7%).
# PGD starts from a random point inside the epsilon ball, repeats smaller steps (by default 2.5 epsilon /
# steps each, a common rule: together they can reach the ball's edge from any start) and after each one *projects* back into the ball, moving every pixel that
# left it to the ball's nearest edge: a stronger attack. The
# curves show accuracy under PGD (10 steps) against epsilon, mean and min-max band over the three seeds:

# %%
EPSILONS = [0.0, 0.02, 0.05, 0.1]
curves = {NAMES[stage]: [[robustness.robust_accuracy(zoo[s][stage], x, y, epsilon=e) for s in SEEDS] for e in EPSILONS]
          for stage in ("teacher", "scratch", "distilled", "pruned", "qat", "final")}
for name, values in curves.items():
    print(f"{name:>22}: " + ", ".join(f"{e}: {measure.over_seeds(v).split(' (')[0]}" for e, v in zip(EPSILONS[:-1], values))
          + f"; {EPSILONS[-1]}: {measure.over_seeds(values[-1])}")
fig = plots.curves(EPSILONS, curves, xlabel="epsilon (pixel units, L-infinity)", ylabel="accuracy under PGD")

# %% [markdown]
# The seeds pair the models (the pruned and final models of a seed come from that seed's distilled
# student), so differences at epsilon 0.1 get the paired t interval of notebooks 01 and 04:

# %%
for a, b in (("pruned", "distilled"), ("final", "qat"), ("distilled", "scratch")):
    print(f"{NAMES[a]} - {NAMES[b]} at epsilon 0.1: "
          f"{stats.paired_over_seeds(curves[NAMES[a]][-1], curves[NAMES[b]][-1])}")

# %% [markdown]
# All six fall steeply: at epsilon 0.05 they keep 60% to 71% on average, at 0.1 (26/255) none keeps more
# than about a quarter. Two differences at 0.1 bear on compression, and the paired intervals above
# exclude zero for each (three seeds, one set of 1,000 test images: they say the gap repeats across
# training runs, not how it would move on other images):
# - the two pruned models keep more than their dense counterparts (the pruned model than the distilled
#   student it was pruned from, the final model than the dense 4-bit QAT model), and on average more
#   (26% and 23%) than every dense one (10% to 16%), although they are *less* accurate on clean images. A likely
#   reason, not tested here: many of their input pixels have no weight left (a third in notebook 06's
#   final model), so the input gradient, and with it what an L-infinity step can gain (epsilon times the
#   gradient's L1 norm), is zero there; dense models still carry weights on pixels that are blank in
#   every training digit;
# - the distilled student keeps more than the same student trained on labels (16.5% against 10.2%). Its
#   big teacher was trained on shifted digits, and its soft targets may give a smoother function.
#   Papernot et al. proposed distillation as a defence ("defensive distillation", at T = 20 to 100);
#   Carlini and Wagner showed that their version mostly masked gradients: its softmax saturated, the
#   input gradients became vanishingly small, and gradient attacks failed without the model being robust
#   (more under *Gradient masking*, below). Here the distilled student needs less softening than the
#   models trained on labels (section 3's fitted temperatures), and a longer attack costs it only 0.6
#   points more (next cell), leaving it 6 points ahead of the student trained on labels, so a saturated
#   softmax is an unlikely reason; attacking it through another model's gradient (as under *Gradient
#   masking*) would test that directly.
#
# **Is 10 steps enough?** A weak attack overstates robustness, and could also reorder the models. Every
# figure above is an upper bound: `robustness.pgd` keeps, for each image, the first iterate that fools the
# model (a later step can lead an image back to its class), and an image counts as right only if the
# model gets it right clean and no iterate fooled it. Run the attack at epsilon 0.1 four times longer,
# from two random starts (an image must survive both):

# %%
for stage in NAMES:
    weak = robustness.robust_accuracy(zoo[SEED][stage], x, y, epsilon=0.1)
    strong = robustness.robust_accuracy(zoo[SEED][stage], x, y, epsilon=0.1, steps=40, restarts=2)
    print(f"{NAMES[stage]:>22}: 10 steps, 1 start {weak:.1%}; 40 steps, 2 starts {strong:.1%} ({strong - weak:+.1%})")

# %% [markdown]
# Four times the steps from two starts costs the models 0.0 to 1.4 points more (the first seed) and leaves
# their order as it was (the distilled student, the QAT model and the teacher lie within 1.7 points of
# each other, the last two 0.1 apart after the longer attack, so their three places are a tie rather
# than an order); README's table of these models runs 100
# steps from 5 starts on every seed, with the same order. The ranking is not an artefact of a short attack, and the figures stay what every
# attack's are: upper bounds on robustness.
#
# Neither is a defence: every curve still collapses. Robustness has to be trained for (Goodfellow et al.,
# Madry et al.; exercise 4). Compare robust accuracies between models of similar
# clean accuracy, or report the drop: a model worse on clean images starts lower, at epsilon 0.
#
# **Gradient masking.** A model that rounds the inputs of its layers (activation quantization,
# `act_bits`: the image and the hidden activations) has an input gradient of zero almost everywhere,
# since rounding is flat between its steps. An attack that follows
# the model's own gradient then does nothing:

# %%
rounding = quantization.quantize_model(zoo[SEED]["teacher"], 8, act_bits=4, calibration=splits.x_train[:512])
masked = robustness.robust_accuracy(rounding, x, y, epsilon=0.05, attack="fgsm")
honest = robustness.robust_accuracy(rounding, x, y, epsilon=0.05, attack="fgsm", surrogate=zoo[SEED]["teacher"])
teacher_fgsm = robustness.robust_accuracy(zoo[SEED]["teacher"], x, y, epsilon=0.05, attack="fgsm")   # same images
print(f"4-bit-input model: clean {training.evaluate(rounding, x, y):.1%}; FGSM through its own gradient {masked:.1%}, "
      f"FGSM through the float teacher's gradient {honest:.1%} (the float teacher itself: {teacher_fgsm:.1%})")
assert honest < masked - 0.1

# %% [markdown]
# Through its own gradient the rounding model looks untouched; attacked through a differentiable
# surrogate that computes nearly the same function (the float teacher), it falls further than the float
# teacher itself (the same FGSM images; one seed). Why further? Its input grid has 16 levels over the
# pixel range, one level every 1/15 ≈ 0.067 in pixel units, more than epsilon: an upward nudge of 0.05 on
# a black pixel (most of an MNIST image) is rounded up to a whole level, 0.067, a third more than the
# attack's budget. Test that part alone: give the *float* teacher the same FGSM images rounded to that grid,
# and, as a control, the clean images rounded:

# %%
first_layer = rounding[0]                                        # QuantizedLinear: its input grid
qmin, qmax = quantization.qrange(4, False)
def to_grid(images: torch.Tensor) -> torch.Tensor:               # what the rounding model's first layer sees
    steps = torch.clamp(torch.round(images / first_layer.act_scale) + first_layer.act_zero_point, qmin, qmax)
    return first_layer.act_scale * (steps - first_layer.act_zero_point)
teacher, x_fgsm = zoo[SEED]["teacher"], robustness.fgsm(zoo[SEED]["teacher"], x, y, epsilon=0.05)
print(f"pixel units per level of the grid: {first_layer.act_scale.item() * data.STD:.4f}")
print(f"float teacher: FGSM images {training.evaluate(teacher, x_fgsm, y):.1%}, the same rounded to the grid "
      f"{training.evaluate(teacher, to_grid(x_fgsm), y):.1%}; clean images {training.evaluate(teacher, x, y):.1%}, "
      f"rounded {training.evaluate(teacher, to_grid(x), y):.1%}")
rounded_right, plain_right = training.correct(teacher, to_grid(x_fgsm), y), training.correct(teacher, x_fgsm, y)
print(f"rounded - unrounded FGSM images, paired: {measure.paired_test(rounded_right, plain_right)}")

# %% [markdown]
# Rounding the clean images costs the float teacher almost nothing, but rounding the FGSM images costs it
# about 10 points, and never once turns a wrong answer right: the input grid alone takes the float
# teacher most of the way down to the rounding model (the rest comes from its other rounding, 8-bit
# weights and 4-bit hidden activations, not separated here). One seed, one epsilon: at an epsilon below
# half a level the same grid could instead round many nudges away. Coarse rounding can amplify a small
# perturbation (Lin et al.) or absorb one, which is why a rounding model needs an attack that sees
# through it. That is
# the rule for quantized and int8 models: attack a differentiable twin, or the model's own forward pass
# with a straight-through backward pass (BPDA, Athalye et al.), and say so. (The QAT models
# above round their *weights*, not their input, so their input gradients are real.)
#
# ## 3. Calibration: confidence against accuracy
#
# When a model says "90% sure", is it right 90% of the time? The expected calibration error (ECE) bins the
# test images by confidence and averages |accuracy - confidence| over the bins, weighting each bin by its
# share of the images. Temperature scaling divides
# the logits by one T chosen on held-out data; here the first 500 test images choose T and the other 500
# report (the models trained on every training image, so those cannot serve):

# %%
choose, report_half = slice(0, 500), slice(500, 1000)
ece = {}
for stage in ("teacher", "scratch", "distilled", "final"):
    rows = []
    for s in SEEDS:
        logits = training.predict(zoo[s][stage], x)
        t = calibration.fit_temperature(logits[choose], y[choose])
        rows.append((calibration.expected_calibration_error(logits[report_half], y[report_half]),
                     calibration.expected_calibration_error(logits[report_half], y[report_half], temperature=t), t))
    ece[stage] = rows
    before, after, temps = zip(*rows)
    print(f"{NAMES[stage]:>22}: ECE {measure.over_seeds(list(before)).split(' (')[0]}, after temperature scaling "
          f"{measure.over_seeds(list(after)).split(' (')[0]} (T = {', '.join(f'{v:.2f}' for v in temps)})")

# %% [markdown]
# For the first seed, the reliability diagram of two of them on the 500 reporting images (15 bins; the
# marker's size grows with the bin's number of images). Each marker is a bin: its images' mean
# confidence (across) against their accuracy (up); a marker below the diagonal is a bin of over-confident
# answers.

# %%
bins_of = {NAMES[stage]: calibration.reliability(training.predict(zoo[SEED][stage], x[report_half]), y[report_half])
           for stage in ("teacher", "distilled")}
fig = plots.reliability_diagram(bins_of, title=f"seed {SEED}, 500 test images, 15 bins")
for name, rows in bins_of.items():
    print(f"{name}: images per bin, lowest to highest confidence: {[row['n'] for row in rows]}")

# %% [markdown]
# The top bin holds most of the images (the largest marker, 448 to 462 of the 500); the other bins hold
# one to about a dozen each, so their zig-zag around the diagonal is mostly noise. These MLPs are calibrated within about 3 points (ECE 2.5% to 3.1%), and every fitted T is above 1:
# all are slightly over-confident. Temperature scaling, fitted on the other 500 images, lowers the mean
# ECE by about 1 point for the two models trained on labels (3.14% to 2.03%, 2.78% to 1.94%) and for the
# final model (3.14% to 1.88%), but by only 0.4 points for the distilled student (2.47% to 2.07%). On an
# AMD EPYC, whose floating-point sums run in another order, the final model's went from 2.35% to 2.17%
# instead. Are those changes real? An ECE measured on 500 images
# errs in two ways: it reads high (a bias), and it varies with the images (noise). First the bias: how
# much of an ECE is the estimator's own? Give a *perfectly* calibrated model the same confidences on
# the same 500 images (each image right with probability equal to its confidence) and measure its ECE:

# %%
fitted_t = ece["teacher"][SEEDS.index(SEED)][2]
for label, t in (("as trained", 1.0), (f"scaled by its fitted T = {fitted_t:.2f}", fitted_t)):
    logits = training.predict(zoo[SEED]["teacher"], x[report_half]) / t
    confidence = torch.softmax(logits, dim=1).max(dim=1).values
    # Ten classes: class 0 at the confidence, the rest share what is left, so max softmax = confidence
    # (>= 0.1) and the prediction is class 0; the label is 0 with probability = confidence, else 1.
    others = ((1 - confidence) / 9).clamp_min(1e-12).log().unsqueeze(1).expand(-1, 9)        # (500, 9)
    ten_class = torch.cat([confidence.log().unsqueeze(1), others], dim=1)                   # (500, 10)
    generator = torch.Generator().manual_seed(0)
    floor = [calibration.expected_calibration_error(ten_class, (torch.rand(500, generator=generator) >= confidence).long())
             for _ in range(200)]
    print(f"ECE of a perfectly calibrated model with the teacher's confidences {label}, 500 images: "
          f"{measure.over_seeds(floor).split(' (')[0]} (mean ± std of 200 draws)")

# %% [markdown]
# A perfectly calibrated model scores 1.42% with the teacher's confidences as trained (give or take 0.34
# points between draws) and 1.87% with its scaled ones: with a handful of images in most bins the
# estimator reads high, and more so once scaling moves confidences out of the crowded top bin into the
# sparse ones. So ECEs of about 2% after scaling are about what perfect calibration would show. That
# floor is a *bias*, and it does not cancel between two models or between before and after scaling (here
# it rose by almost half a point with scaling itself), so a binned ECE can understate an improvement, and
# no simple interval fixes that. A per-image score does not have the problem. The
# Brier score of an image, sum over classes of (p_c - [c = y])^2, is a proper scoring rule (it rewards
# honest probabilities); before and after scaling it is measured on the same images, so the change is a
# mean of per-image differences with an ordinary interval (`calibration.brier_change`):

# %%
for stage in ("teacher", "scratch", "distilled", "final"):
    changes = [calibration.brier_change(training.predict(zoo[s][stage], x[report_half]), y[report_half], temperature=t)
               for s, (_, _, t) in zip(SEEDS, ece[stage])]
    print(f"{NAMES[stage]:>22}: change of the Brier score by temperature scaling, 95% interval per seed: "
          + "; ".join(f"{c['change']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]" for c in changes))

# %% [markdown]
# Scaling lowers the Brier score on all 12 models and seeds, by at most 0.0042, and no interval excludes
# zero (on an AMD EPYC one of the twelve did, only just, about what chance gives among twelve): on 500
# images a seed, scaling's gain points one way but is not established for any model. The
# fitted temperatures point the same way on every seed: every T is above 1, and the distilled models need
# less softening (T = 1.34 to 1.47) than the models trained on labels alone (1.47 to 1.60; on seed 1 by
# only 0.02, one step of the grid of 400 temperatures that `calibration.fit_temperature` searches, about
# 1.5% apart, so that seed's order could turn with a finer search), as one would expect from a student that learned from soft targets. The seeds vary the
# training, not the 500 images that fit T, so this too is a pattern of this split, without an interval
# over images. Dividing logits by a temperature is the same operation that softens a teacher's
# targets in distillation (notebook 04, T = 4); here T is fitted, not chosen.
#
# ## 4. Membership inference: does the model reveal its training images?
#
# A model usually fits the images it was trained on better than new ones, so a low loss hints "this image
# was in the training set". The loss-threshold attack (Yeom et al. 2018) uses exactly that: it calls an
# image a *member* (one of the 4,000 training images) when the model's loss on it is below a threshold,
# else a *non-member* (here the 1,000 test images, from the same distribution). At one threshold it has a
# true-positive rate (TPR: the share of members it flags) and a false-positive rate (FPR: the share of
# non-members it flags); the ROC curve is TPR against FPR as the threshold moves, and the area under it,
# the AUC, sums up the attack over all thresholds: 0.5 is a coin flip, 1 a perfect attack. The *best
# threshold's advantage* is the largest TPR - FPR of a single threshold. With 4,000 members and 1,000
# non-members one AUC's standard error (Hanley and McNeil) is about 0.01:

# %%
mia, losses = {}, {}   # losses[stage]: per seed, (members' losses, non-members' losses)
for stage in NAMES:
    values, edges = [], []
    losses[stage] = [(privacy.per_image_loss(zoo[s][stage], splits.x_train, splits.y_train),
                      privacy.per_image_loss(zoo[s][stage], splits.x_test, splits.y_test)) for s in SEEDS]
    for members, nonmembers in losses[stage]:
        values.append(privacy.membership_auc(members, nonmembers))
        edges.append(privacy.advantage(members, nonmembers))
    mia[stage] = values
    mean, std = measure.mean_std(values)
    standard_error = privacy.auc_standard_error(values[0], len(splits.y_train), len(splits.y_test))
    print(f"{NAMES[stage]:>22}: AUC {mean:.3f} ± {std:.3f} ({', '.join(f'{v:.3f}' for v in values)}); one AUC's "
          f"standard error {standard_error:.3f}; best threshold's advantage {', '.join(f'{e:.3f}' for e in edges)}")

# %% [markdown]
# Every AUC sits a little above 0.5 (means 0.515 to 0.525; seed by seed 0.512 to 0.531): these models fit their 4,000 training digits
# slightly better than the test digits, and the attack has a small edge, about 1.5 to 2.5 standard
# errors from a coin flip. The rows differ by at most 0.010. That standard error of about 0.01 is how far
# *one* model's AUC would move on another draw of images; it is the wrong yardstick for a difference
# between two models scored on the same images, whose AUCs move together, so their difference is less
# noisy. The seeds' spread is smaller (the pruned model is lowest on every seed, on seed 2 by 0.001),
# but the seeds share those images too. A claim that pruning lowers the leak needs a paired comparison
# over images: DeLong's test, at the end of this section. The best single
# threshold's advantage (TPR - FPR) is another summary of the same two loss distributions: the one-sided
# Kolmogorov-Smirnov distance between them, also set by the bulk of the losses (attacks scored at a low
# false-positive rate, Carlini et al. 2022, look at the outliers instead). The advantage here is 0.10 to
# 0.12 for the two models trained on labels and 0.035 to 0.058 for the four distilled ones, on every
# seed, while the AUC puts the 4-bit QAT model level with the teacher (0.525 each) and the distilled
# student above the student from scratch (0.524 against 0.522), differences tested at the end of this
# section: which model "leaks more" depends on the statistic. A likely reason for the advantage's order, not tested
# here: trained on hard labels, a model drives the loss of many training digits towards zero, and a very
# low threshold catches them; a student that followed soft targets leaves fewer such tell-tale losses
# (exercise: plot the two loss histograms).
#
# Read both against chance: the best threshold is chosen on the very images it is scored on, so a model
# that leaks nothing also scores above zero. With 4,000 members against 1,000 non-members the one-sided
# Kolmogorov-Smirnov large-sample approximation, P(advantage > t) ≈ exp(-2 n t^2) with
# n = 4000 * 1000 / 5000, puts the advantage above 0.043 one time in 20, and about 0.02 on average. Measure it by shuffling which images are members, from scratch
# for one model:

# %%
# A model that leaks nothing, from scratch: the final model's losses (the first seed), members shuffled
members, nonmembers = losses["final"][SEEDS.index(SEED)]
pooled, generator, chance = torch.cat([members, nonmembers]), torch.Generator().manual_seed(0), []
for _ in range(200):
    order = torch.randperm(len(pooled), generator=generator)
    chance.append(privacy.advantage(pooled[order[:len(members)]], pooled[order[len(members):]]))
chance = torch.tensor(chance)
print(f"best threshold's advantage with the members shuffled (200 draws): mean {chance.mean():.3f}, "
      f"95th percentile {chance.quantile(0.95):.3f}; unshuffled: {privacy.advantage(members, nonmembers):.3f}")
package = privacy.permutation_test(members, nonmembers, draws=200, seed=0)["advantage"]   # the same shuffles
assert abs(package["chance_mean"] - chance.mean().item()) < 1e-6 and abs(package["chance_95"] - chance.quantile(0.95).item()) < 1e-6

# %% [markdown]
# Shuffled, the final model's losses give a best-threshold advantage of 0.022 on average and 0.044 at
# the 95th percentile, close to the approximation (an approximation, not a bound: the shuffles' 95th
# percentile lies a little above it); unshuffled they give 0.037, below that 95th percentile on this seed.
# `privacy.permutation_test` draws the same shuffles (the assert checks it), for the AUC too, and turns
# them into a p-value, (1 + the number of shuffles at least as large as the real split's value) / (1 +
# the number of shuffles), which is never 0. Every model and seed, 1,000 shuffles each:

# %%
every = []   # (model, statistic, p) for each model, seed and statistic
for stage in NAMES:
    tests = [privacy.permutation_test(members, nonmembers) for members, nonmembers in losses[stage]]
    for name in ("AUC", "advantage"):
        every += [(NAMES[stage], name, t[name.lower()]["p_value"]) for t in tests]
    print(f"{NAMES[stage]:>22}: p of the AUC " + ", ".join(f"{t['auc']['p_value']:.3f}" for t in tests)
          + "; p of the advantage " + ", ".join(f"{t['advantage']['p_value']:.3f}" for t in tests))
kept = stats.holm([p for _, _, p in every])      # 36 tests at once: the chance of any false finding at most 5%
found = collections.Counter(f"{model}'s {name}" for (model, name, _), keep in zip(every, kept) if keep)
print(f"below 0.05: {sum(p < 0.05 for _, _, p in every)} of {len(every)}; kept by Holm's correction: "
      + ", ".join(f"{what} ({n} seed{'s' if n > 1 else ''})" for what, n in found.items()))

# %% [markdown]
# 29 of the 36 p-values are below 0.05, far more than the 1.8 (36 x 0.05) that chance would give on
# average: members' and non-members' losses differ. (The tests are not independent, since every seed
# scores the same 5,000 images; that makes the count by chance vary more, not its average.) But 36 tests at 5% each are not 36 findings. Holm's correction (`stats.holm`), which keeps the
# chance of any false finding at 5%, keeps the advantage of the two models trained on labels, on every
# seed (p = 0.001, the smallest 1,000 shuffles can give), and nothing else. The next test sits on an
# edge: Holm's thresholds for the six tests it keeps are 0.05 / 36 to 0.05 / 31, and the next is
# 0.05 / 30 = 0.0017, so only a p of 0.001, no shuffle at least as large, can pass, and a p of 0.002
# cannot. The 4-bit QAT model's AUC on seed 1 has p = 0.002, one shuffle as large (on an AMD EPYC the
# same test gave 0.001 and was kept); another set of shuffles could as well keep it. With 1,000
# shuffles a p near 0.05 is itself uncertain by about 0.007, so a 0.045 and a 0.058 do not differ.
# What the numbers support: the models trained on hard labels leak to the best threshold; for the
# distilled, pruned and quantized models 17 of their 24 p-values are below 0.05 (the pruned model's range
# up to 0.123), but none is established on its own (the nearest, seed 1 of the QAT model's AUC, is on the
# edge above). These tests set each model against chance; whether a compression step removed a leak or
# added one compares two models, which the next test does directly.
#
# **Did a step change the AUC?** Compare each model with the one it came from on the same images
# (DeLong et al. 1988). Each member's *placement* is the share of non-members whose loss is higher
# (ties count half), each non-member's the share of members whose loss is lower; both average to the
# AUC. The two models' placements are paired image by image, so the variance of the difference of their
# AUCs is the variance of the members' placement differences over their number k (4,000), plus the
# non-members' over m (1,000), and
# the noise the two models share cancels. From scratch for the first seed's final model against the
# pruned one it came from, then `privacy.paired_auc_test` for every step and seed:

# %%
def placements(members, nonmembers):
    higher = (nonmembers[None, :] > members[:, None]).double() + 0.5 * (nonmembers[None, :] == members[:, None]).double()
    return higher.mean(dim=1), higher.mean(dim=0)              # (4000,) per member, (1000,) per non-member

(a_in, a_out), (b_in, b_out) = losses["final"][0], losses["pruned"][0]
(v10_a, v01_a), (v10_b, v01_b) = placements(a_in, a_out), placements(b_in, b_out)
diff = (v01_a.mean() - v01_b.mean()).item()
spread = ((v10_a - v10_b).var() / len(a_in) + (v01_a - v01_b).var() / len(a_out)).sqrt().item()
package = privacy.paired_auc_test(a_in, a_out, b_in, b_out)
assert abs(package["diff"] - diff) < 1e-12 and abs((package["high"] - package["low"]) / (2 * 1.959964) - spread) < 1e-6
print(f"final - pruned, seed {SEEDS[0]}: AUC {diff:+.4f}, standard error of the difference {spread:.4f} (one AUC's "
      f"alone: {privacy.auc_standard_error(package['auc_a'], len(a_in), len(a_out)):.4f})")

# %% [markdown]
# Pairing makes the yardstick nearly eight times smaller here (0.0013 against 0.0101). Now every step
# against the model it started from, on every seed: 12 tests, so Holm's correction again decides which
# differences count as findings.

# %%
STEPS = [("distilled", "scratch"), ("pruned", "distilled"), ("qat", "distilled"), ("final", "pruned")]
paired = [(a, b, seed, privacy.paired_auc_test(*losses[a][i], *losses[b][i])) for a, b in STEPS for i, seed in enumerate(SEEDS)]
kept = stats.holm([t["p_value"] for *_, t in paired])     # 12 tests at once
for (a, b, seed, t), keep in zip(paired, kept):
    print(f"{NAMES[a] + ' - ' + NAMES[b]:>45}, seed {seed}: {t['diff']:+.4f} (95% interval {t['low']:+.4f} to "
          f"{t['high']:+.4f}; p = {t['p_value']:.2g}{', kept by Holm' if keep else ''})")

# %% [markdown]
# Pairing is what makes a small difference measurable: the final model's AUC differs from that of the
# pruned model it came from with a standard error of 0.0013, against 0.0101 for one AUC alone, because
# the two models' losses rise and fall together from image to image. With that yardstick:
#
# - magnitude pruning lowered the attack's AUC on every seed, by 0.006 to 0.013, each 95% interval
#   excluding zero (Holm's correction over these 12 tests keeps seed 1's, p = 1.5e-05);
# - quantizing the pruned model gave a little of it back, +0.001 to +0.004 (beyond its interval on two
#   seeds; Holm keeps seed 1's, p = 0.0014);
# - QAT of the dense distilled student moved it by -0.0004 to +0.0042 (one interval, seed 1's, only just
#   above zero, and not kept), and distillation by -0.0004 to +0.0029, with intervals about 0.03 wide: two
#   models trained from different losses share less of their noise than a model and its pruned copy.
#
# So here pruning makes this attack slightly weaker, by about a hundredth of AUC on a scale where the
# models' mean AUCs sit at 0.515 to 0.525 and 0.5 is chance: a small change in a weak attack, in the same direction
# on all three seeds and established after Holm's correction on one. The test resamples the images for
# fixed trained models; the seeds vary the training but share the images. It is no privacy guarantee: differential privacy bounds
# what *any* attack can learn, this test measures one.
#
# Distillation has been proposed as a privacy defence (PATE: students that never see the private data),
# but here the student trains on the same images: its AUC (0.524) is not measurably different from that
# of the same 784-64-10 student trained on labels (0.522; paired intervals about ±0.015), though its
# best threshold's advantage is about half (section 4's table), and the big teacher it
# learned from is not measured here.
#
# ## 5. The ledger, with the optional columns
#
# `Ledger.measure(..., beyond=(...))` adds robust accuracy (PGD at epsilon 0.05), ECE and the MIA AUC:

# %%
ledger = measure.Ledger(threads=THREADS)
final_file = files.cache_dir("notebook07") / "final.dcmp"
for stage in ("teacher", "distilled", "final"):
    size = {"file_bytes": storage.save(zoo[SEED][stage], final_file, compress="auto")} if stage == "final" else {}
    ledger.measure(NAMES[stage], zoo[SEED][stage], splits, beyond=("robust_accuracy", "ece", "mia_auc"), **size)
ledger

# %% [markdown]
# One seed, no intervals, and the ECE here is on all 1,000 test images (15 bins): read the last three
# columns with sections 2 to 4.
#
# ## Pitfalls
#
# - **Masked gradients.** An attack through a rounding (or int8, or non-differentiable) model can fail for
#   lack of a gradient, not for lack of a weakness; attack a differentiable surrogate and say so.
# - **Robustness at different clean accuracies.** A model that is 2 points worse on clean images starts
#   2 points lower, at epsilon 0, whatever happens after (section 2's pruned models start lower and end
#   higher); compare curves of models with similar clean accuracy, or report the drop.
# - **The wrong yardstick for a difference.** A per-class change of 4 images of 100 is within its own
#   noise; but one AUC's standard error is not the noise of the difference between two models scored on
#   the same images (their AUCs move together: 0.0013 against 0.0101 in section 4). Compare them paired,
#   image by image, and give the interval.
# - **A binned ECE compared across models.** On a few hundred images it reads high, most for the
#   best-calibrated model; compare a per-image score (Brier, log loss), paired by image.
# - **Many tests at 5%.** Thirty-six p-values at 5% each find something by chance; correct for the number
#   of tests (Holm) before calling any single one a finding.
# - **Choosing T on the test set** makes the test ECE look better than it is; choose on held-out data.

# %% [markdown]
# ## Exercises
#
# Four exercises. In 1-3 you write the core of an idea into a stub and the next cell checks it on hidden
# cases (`tutorial_utils.exercises_beyond`), naming the failing case, the expected and the returned value,
# and a hint; 4 is an experiment to write yourself. Each ends with a question: answer it in the cell below.
#
# **Exercise 1 (PGD).** Section 2 wrote FGSM by hand. Write `my_pgd(model, x, y, epsilon, steps, step_size)`
# without the random start: from x, take `steps` steps up the cross-entropy's gradient sign of `step_size`
# (pixel units: divide by `data.STD` for the normalised inputs, as FGSM did), and after each one project
# onto the epsilon ball around x and clip to the pixel range (`robustness.LOW`..`robustness.HIGH`). The
# hidden cases include steps as large as the ball, epsilon 0 and an epsilon so large that only the pixel
# range binds. Does the order of projecting and clipping matter (try both), and what is the sign for?

# %% nbgrader={"grade": false, "grade_id": "ex1-pgd", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, steps: int,
           step_size: float) -> torch.Tensor:
    """Images within epsilon (pixel units) of x, after `steps` signed-gradient steps; no random start."""
    ### BEGIN SOLUTION
    radius, step = epsilon / data.STD, step_size / data.STD               # pixel units -> normalised units
    adversarial = x.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        (gradient,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(adversarial), y), adversarial)
        adversarial = adversarial.detach() + step * gradient.sign()
        adversarial = torch.min(torch.max(adversarial, x - radius), x + radius)         # back into the ball
        adversarial = torch.clamp(adversarial, robustness.LOW, robustness.HIGH)         # and into valid pixels
    return adversarial.detach()
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex1-pgd-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_beyond.check_pgd(my_pgd)

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex1-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# Here the order does not matter: both steps clamp each pixel to an interval, and both intervals contain
# x, so either order gives the nearest point of their intersection (try it: the check passes both ways).
# Without the projection, ten steps of 0.0125 could move a pixel by 0.125, past the budget of 0.05, and
# the "robust accuracy" would measure a bigger attack than it names. The sign is the steepest step
# under an L-infinity budget: to first order the loss grows by the gradient times the step, and with no
# pixel allowed to move more than the step size, that is largest when every pixel moves the full step in
# its gradient's direction. It also makes the step's size independent of the gradient's scale, which is
# tiny on images the model is sure of (the projection, not the sign, is what keeps the budget).
# </details>

# %% [markdown]
# **Exercise 2 (ECE).** Write `my_ece(logits, y, bins)`: confidence = max softmax, equal-width bins
# ((b-1)/B, b/B], ECE = sum over non-empty bins of n_b / n * |accuracy_b - confidence_b|; the predicted
# class is the first largest (as `torch.max` picks on a tie). Mind a confidence of
# exactly 1.0, and of exactly a bin edge. What would `floor(confidence * B)` do to a model that is wrong at
# full confidence?

# %% nbgrader={"grade": false, "grade_id": "ex2-ece", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_ece(logits: torch.Tensor, y: torch.Tensor, bins: int) -> float:
    """Expected calibration error of the logits, equal-width confidence bins ((b-1)/B, b/B]."""
    ### BEGIN SOLUTION
    confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
    index = torch.clamp(torch.ceil(confidence * bins).long() - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            total += chosen.sum().item() * abs((predicted[chosen] == y[chosen]).float().mean().item()
                                               - confidence[chosen].mean().item())
    return total / len(y)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex2-ece-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_beyond.check_ece(my_ece)

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex2-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# `ceil(confidence * B) - 1` puts a confidence on a bin's upper edge into that bin, so 0.5 and 0.55 land
# in different bins of ten, and the clamp keeps a confidence of exactly 1.0 in the last bin. With
# `floor(confidence * B)` instead, 1.0 would fall into a bin B that the loop never visits, and a model
# that is wrong at full confidence would silently look calibrated.
# </details>

# %% [markdown]
# **Exercise 3 (the attack's AUC).** Write `my_auc(member_losses, nonmember_losses)`: the probability that a random
# non-member has a higher loss than a random member, ties counting one half. A double loop over pairs is
# a correct first version; can you make it O(n log n) with ranks (the Mann-Whitney U statistic)?

# %% nbgrader={"grade": false, "grade_id": "ex3-auc", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_auc(members: torch.Tensor, nonmembers: torch.Tensor) -> float:
    """P(a non-member's loss > a member's loss), ties counting one half."""
    ### BEGIN SOLUTION
    higher = (nonmembers.unsqueeze(0) > members.unsqueeze(1)).double().sum()
    equal = (nonmembers.unsqueeze(0) == members.unsqueeze(1)).double().sum()
    return ((higher + equal / 2) / (len(members) * len(nonmembers))).item()
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex3-auc-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_beyond.check_auc(my_auc)

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex3-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>The rank version</summary>
#
# Sort all k member and m non-member losses together and give each its rank (ties: the average rank).
# Without ties, a non-member's rank counts the losses at most its own; summed over the non-members
# (R) and less m(m+1)/2 (the non-members compared with each other), it leaves U, the (member,
# non-member) pairs a non-member wins; average ranks make a tie count one half. AUC = U / (m k).
# `privacy.membership_auc` does exactly this.
# </details>

# %% [markdown]
# **Exercise 4 (train for robustness).** Train a student on a loss that mixes clean and FGSM images at epsilon
# 0.05 (adversarial training, Goodfellow et al.), and redraw its PGD curve. Hint: `training.fit(model,
# splits, epochs=EPOCHS, loss_fn=...)` takes a `loss_fn(logits, batch)`; with
# `CE = torch.nn.functional.cross_entropy` and `model = models.student()` (import `models` from
# `tutorial_utils`), a closure over the model can return
# `0.5 * CE(logits, batch.y) + 0.5 * CE(model(robustness.fgsm(model, batch.x, batch.y, epsilon=0.05)), batch.y)`.
# Each step then runs the model three times, so training takes about twice as long. What does it cost on
# clean images? Judge over three seeds.

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex4-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>What to look for</summary>
#
# Adversarial training raises the curve at the epsilon it was trained for, usually for some clean
# accuracy; a gain smaller than the seeds' spread is not yet a gain. Evaluate with PGD, not FGSM: training
# on FGSM alone can teach a model to mask its gradients, robust to FGSM and not to PGD (Tramèr et al.
# 2018; Kurakin et al. saw such models fall to iterative attacks, Wong et al. a sudden "catastrophic
# overfitting" to FGSM).
# </details>

# %% [markdown]
# ## Summary
#
# - Compression changes which images a model gets wrong, but on 1,000 test digits no class is shown to be
#   hurt more than another; such claims need far more images per class.
# - These MLPs, compressed or not, lose about a quarter to over a third of their accuracy to perturbations
#   of 13 grey levels out of 255 (epsilon 0.05) and most of it at 26 (0.1).
#   At epsilon 0.1 the two pruned models keep more than every dense one, and the distilled student more
#   than the same student trained on labels (each beyond the seeds' min-max ranges, which with three seeds
#   describe rather than test; pruned input pixels are a likely, untested reason for the first), but
#   nothing here is robust. A four-times-longer attack from two starts keeps the order.
#   The rounding model here only *looked* robust (masking): through a differentiable twin it fell further
#   than the float teacher, mostly because its input grid is coarser than the attack's budget.
# - They are slightly over-confident (every fitted T > 1; less so after distillation); their ECEs are
#   a little above the 1.4% that a perfectly calibrated model with the teacher's confidences scores on
#   500 images, and after scaling about at the 1.9% it scores with the scaled ones. Temperature scaling
#   lowers the Brier score on all 12 models and seeds, beyond its interval on none.
# - The loss-threshold attack scores a little above chance on every model (mean AUC 0.515 to 0.525; 29 of 36
#   permutation p-values below 0.05, of which Holm's correction keeps only the advantage of the two models
#   trained on labels). Compared paired, image by image (DeLong), magnitude pruning lowered the AUC by
#   0.006 to 0.013 (every seed's interval excludes zero; after Holm's correction over 12 tests, seed 1's),
#   and quantizing the pruned model raised it by 0.001 to 0.004 (Holm keeps seed 1's); distillation's
#   change could not be resolved (intervals about ±0.015). The best single threshold does better on the models trained on hard labels
#   (advantage 0.10 to 0.12) than on the distilled ones (0.035 to 0.058), on every seed: neither statistic
#   alone says which model leaks more, and neither bounds what another attack could learn.
#
# ## Further reading
#
# - Hooker, Courville, Clark, Dauphin and Frome, "What Do Compressed Deep Neural Networks Forget?", 2019:
#   pruned ImageNet models lose accuracy unevenly, concentrated on a small set of images.
# - Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM; an
#   MNIST maxout network misclassified 89.4% of FGSM images at epsilon 0.25).
# - Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to Adversarial
#   Attacks", ICLR 2018 (PGD and adversarial training; 89% accuracy on MNIST under PGD at epsilon 0.3).
# - Tramèr, Kurakin, Papernot, Goodfellow, Boneh and McDaniel, "Ensemble Adversarial Training: Attacks and
#   Defenses", ICLR 2018 (single-step adversarial training masks gradients).
# - Lin, Gan and Han, "Defensive Quantization: When Efficiency Meets Robustness", ICLR 2019.
# - Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017 (ECE,
#   temperature scaling).
# - Papernot, McDaniel, Wu, Jha and Swami, "Distillation as a Defense to Adversarial Perturbations against
#   Deep Neural Networks", S&P 2016; Carlini and Wagner, "Defensive Distillation is Not Robust to
#   Adversarial Examples", 2016; Athalye, Carlini and Wagner, "Obfuscated Gradients Give a False Sense of
#   Security", ICML 2018 (BPDA).
# - Yeom, Giacomelli, Fredrikson and Jha, "Privacy Risk in Machine Learning", CSF 2018; Shokri, Stronati,
#   Song and Shmatikov, "Membership Inference Attacks against Machine Learning Models", S&P 2017; Carlini
#   et al., "Membership Inference Attacks From First Principles", S&P 2022 (true positives at a low false-
#   positive rate); Hanley and McNeil, "The meaning and use of the area under a ROC curve", Radiology 1982;
#   DeLong, DeLong and Clarke-Pearson, "Comparing the Areas under Two or More Correlated Receiver Operating
#   Characteristic Curves: A Nonparametric Approach", Biometrics 1988;
#   Papernot et al., "Semi-supervised Knowledge Transfer for Deep Learning from Private Training Data",
#   ICLR 2017 (PATE).
# - Kurakin, Goodfellow and Bengio, "Adversarial Machine Learning at Scale", ICLR 2017; Wong, Rice and
#   Kolter, "Fast is Better than Free: Revisiting Adversarial Training", ICLR 2020 (FGSM training and
#   its failure modes, exercise 4).
