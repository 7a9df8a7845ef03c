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
# # 05 · Distill and compress: the whole chain, measured
#
# Each of the last three notebooks shrank a network one way. This one chains them, in the order that
# works: **distil** a small student from a strong teacher, **prune** it with the teacher's soft targets
# as the fine-tuning loss, **train it through the quantizer** with the same loss, and **pack** it into a
# file that stores only the surviving weights as low-bit codes. The article did
# it the other way round: it pruned and quantized an *untrained* student into 4-bit integer Parameters
# and then tried to train it, which cannot work. At the end there is one small file, measured against
# the float32 file of the 784-128-10 teacher from notebook 01, never against the big teacher.
#
# **What you will learn**
# - why the order is distil → prune → quantize → pack, and what each stage costs and buys;
# - recovery with distillation vs plain cross-entropy at the same budget (several seeds);
# - Pareto fronts of accuracy against bytes and against latency over widths, sparsities and bits;
# - the final file: exact round trip, bytes, measured latency, and an energy estimate.
#
# **Prerequisites**: notebooks 02, 03 and 04. About 24 s on a 2-core CPU on a second run (section 2's
# chain, the Pareto sweep and exercise 4 train on every run). The first run also trains section 3's
# comparison models of three seeds (about 10-20 s more) and, unless `python -m tutorial_utils teachers`
# has cached them, the chain's models of three seeds (about 10 s) and the big teacher (15 to 20 s;
# notebook 04 caches it too).
# Numbers in the text are this run's, on the machine in the ledger's record (notebook 01 says more).

# %%
import copy

import torch

from tutorial_utils import (chain, data, distillation, exercises_chain, files, int8, measure, models, plots, pruning,
                            quantization, recipes, storage, training, validate)

# %%
DATASET = validate.env("DC_DATASET", "mnist-5k")
DATA_DIR = validate.env("DC_DATA_DIR", None)
EPOCHS = validate.env("DC_EPOCHS", 15, validate.positive_int)
STAGE_EPOCHS = validate.env("DC_STAGE_EPOCHS", 5, validate.positive_int)   # fine-tuning after pruning; QAT
SEED = validate.env("DC_SEED", 0, validate.nonnegative_int)
SEEDS = validate.env_list("DC_SEEDS", [SEED, SEED + 1, SEED + 2], validate.nonnegative_int)
THREADS = validate.env("DC_THREADS", 2, validate.positive_int)
SPARSITY, BITS = 0.9, 4

device = training.setup(SEED, threads=THREADS)
splits = data.load(DATASET, root=DATA_DIR)
reference = training.load_or_train_teacher(splits, epochs=EPOCHS, seed=SEED, device=device)
teacher = training.load_or_train_teacher(splits, **distillation.BIG_TEACHER_RECIPE, seed=SEED, device=device)
folder = files.cache_dir("notebook05")                 # outside the source tree ($DC_CACHE_DIR)
STAGE, QAT_STAGE = training.TrainConfig(epochs=STAGE_EPOCHS), recipes.QAT.replace(epochs=STAGE_EPOCHS)  # QAT: lr 5e-4

# %% [markdown]
# ## 1. The plan, and why the order matters
#
# 1. **Distil** a 784-64-10 student from the 784-1200-1200-10 teacher (notebook 04): a trained network
#    whose weights mean something.
# 2. **Prune** it by global magnitude to 90% sparsity and fine-tune with the masks held (notebook 02),
#    using the distillation loss: the teacher's soft targets are meant to tell the damaged student what
#    it lost (section 3 measures whether they do).
# 3. **Quantize-aware train** at 4 bits per weight with the masks still held and the same loss
#    (notebook 03), then convert to integer codes.
# 4. **Pack**: only the non-zero codes (plus a filler entry for each long gap), their positions, the scales
#    and biases, entropy-coded (notebook 02's
#    format with notebook 03's packed codes).
#
# Magnitude pruning needs trained weights (on random weights, magnitude says nothing), and quantization
# comes last: fine-tuning after it would move the weights off the grid, while training through the grid
# with the masks held keeps every pruned weight at code 0 and lets the surviving ones adapt to the grid. Each step below adds a
# ledger row. Ratios are against the reference: the 784-128-10 teacher's float32 file.

# %% [markdown]
# ## 2. Stage by stage

# %%
ledger = measure.Ledger(threads=THREADS)
ref_row = ledger.measure("reference: teacher 784-128-10, float32", reference, splits)
ledger.measure("distillation teacher 784-1200-1200-10, float32", teacher, splits)
scratch = distillation.train_student(splits, seed=SEED, epochs=EPOCHS)
ledger.measure("student 784-64-10 from scratch, float32", scratch, splits)
student = distillation.train_student(splits, teacher=teacher, seed=SEED, epochs=EPOCHS)
ledger.measure("1. student distilled, float32", student, splits)
ledger

# %% [markdown]
# Here the distilled student scores 94.70% against 94.20% for the same student trained on labels alone:
# five of the 1,000 test images on one seed, within the noise (notebook 04 compares the two over seeds). Its
# file is half the reference's, since it has half the parameters. Now prune:

# %%
pruned = copy.deepcopy(student)
masks = recipes.prune_(pruned, splits, sparsity=SPARSITY, teacher=teacher, config=STAGE, seed=SEED)   # global magnitude + KD fine-tuning
row = ledger.measure("2. pruned 90% + KD fine-tuning, masked float32", pruned, splits)
print(f"sparsity {pruning.sparsity(pruned):.1%}, accuracy {row['accuracy']:.2%}, still {row['bytes']:,} bytes on disk")

# %% [markdown]
# Ninety percent of the weights are gone for 0.9 points of accuracy on this seed (94.70% → 93.80%;
# README's "Over seeds" has the same step costing 0.0 to 1.5 points on three seeds), but the file has not
# shrunk:
# masked weights are stored as float32 zeros (notebook 02). Next, train through a 4-bit quantizer with the
# masks held, then convert to integer codes:

# %%
final = recipes.quantize_aware(pruned, splits, quant=BITS, teacher=teacher, config=QAT_STAGE, masks=masks, seed=SEED)
plain_bytes = storage.save(final, folder / "final-plain.dcmp")
final_bytes = storage.save(final, folder / "final.dcmp", compress="auto")
ledger.measure("3. + 4-bit QAT with KD, sparse file", final, splits, file_bytes=plain_bytes)
final_row = ledger.measure("4. + entropy coding (final file)", final, splits, file_bytes=final_bytes)
print(f"final: {final_row['accuracy']:.2%} ({final_row['accuracy'] - ref_row['accuracy']:+.2%} vs the reference), "
      f"{final_bytes:,} bytes = {ref_row['bytes'] / final_bytes:.1f}x smaller than the reference file")
if DATASET == "mnist-5k":
    # Margin: over seeds 0-2 at 1 and 2 threads the final model ended up to 1.4 points below the reference
    # (README, "Over seeds"); 2.5 points leave room for other CPUs without accepting a broken chain.
    assert ref_row["bytes"] / final_bytes >= 40 and final_row["accuracy"] >= ref_row["accuracy"] - 0.025


# %% [markdown]
# The final file is 69.1 times smaller than the reference teacher's float32 file, and the model is
# 0.50 point *below* that teacher's accuracy (94.00% against 94.50%). That is one seed, and 0.50 point
# is 5 of the 1,000 test digits: over three seeds the same recipe averages 93.90% ± 0.17% (section 3,
# whose seed-0 run is exactly this model: every stage reseeds when it starts). Those seeds vary the
# student and its compression, not the teachers (all seed 0); README's "Over seeds", which trains the
# teachers once per seed too, finds 93.63% ± 0.32% for the final model at 2 threads on an AMD EPYC and
# 93.77% ± 0.21% on an Intel Xeon.
# After QAT the model scored 0.2 points more than after pruning: two images on one seed, within the noise
# (and QAT is five more epochs of fine-tuning).
# The distilled student started 0.2 points above the reference (94.70% against 94.50%, two images), so
# here the chain trades 0.7 points of the student's accuracy, half a point against the reference, for a
# file 69 times smaller.
#
# ## 3. Recovery: distillation vs cross-entropy at the same budget, and the order of the stages
#
# Two questions, answered on the same seeds. First: is the teacher needed during pruning and QAT, once
# the student is distilled? Same student, same masks rule, same epochs; only the fine-tuning loss
# differs. Second: the article compresses *first*: it prunes and quantizes a freshly
# initialised student, then trains it. Done literally, with integer Parameters, training cannot even start:

# %%
try:
    torch.nn.Parameter(torch.zeros(64, 784, dtype=torch.int32))           # 4-bit codes stored as int32, trainable
except RuntimeError as error:
    print("RuntimeError:", error)

# %% [markdown]
# Only floating-point tensors can have gradients. The repaired version of "compress first" keeps float
# weights: take the masks from the *untrained* student's magnitudes (random ones), then train the sparse
# network through the 4-bit quantizer with distillation for as many epochs as the whole distil-then-compress
# chain uses. For each seed: a distilled student compressed with KD (section 2's recipe: `chain.build` trains
# it once per seed and keeps it in the cache, where notebook 07 finds it too), the same student compressed
# with cross-entropy, and compress-first for comparison. The two others are written out below as
# functions; `chain.cached` trains each once per seed and keeps it in the cache too, under a key of its
# arguments and its source code: edit a function, or change a setting it takes as an argument, and it
# trains again. (So a function must take every setting it uses as an argument: a global it reads
# silently would not be in the key. The two globals they do read, `splits` and `teacher`, are keyed by
# `chain.cached` itself: the data, the teacher's weights, the CPU threads and torch's version.)

# %%
def compress_with_labels(*, seed: int, epochs: int, sparsity: float, bits: int, stage: training.TrainConfig,
                         qat_stage: training.TrainConfig) -> torch.nn.Module:
    """Section 2's distilled student, pruned and quantized with cross-entropy (teacher=None) instead of KD."""
    distilled = chain.build(splits, teacher, seed=seed, epochs=epochs, sparsity=sparsity, bits=bits, finetune=stage,
                            qat=qat_stage, stages=("distilled",))["distilled"]   # the loop's: loaded, not retrained
    return recipes.compress(distilled, splits, sparsity=sparsity, quant=bits, teacher=None, finetune=stage,
                            qat=qat_stage, seed=seed)                         # each stage reseeded, as in section 2

# %% [markdown]
# Compress-first starts from an untrained student: its masks come from random magnitudes, and all its
# epochs go into training through the quantizer with distillation.

# %%
def compress_first(*, seed: int, sparsity: float, bits: int, config: training.TrainConfig,
                   kd: distillation.KDConfig) -> torch.nn.Module:
    """Masks from an untrained student's (random) magnitudes, then 4-bit QAT with distillation for `config`."""
    training.setup(seed)
    untrained = models.student()
    early_masks = pruning.magnitude_masks(untrained, sparsity, scope="global")   # magnitudes of random weights
    pruning.apply_masks_(untrained, early_masks)
    return recipes.quantize_aware(untrained, splits, quant=bits, teacher=teacher, kd=kd, masks=early_masks,
                                  config=config)

# %% [markdown]
# Each recipe once per seed, all three with the same total epochs; on a second run the models come from
# the cache:

# %%
total_epochs = EPOCHS + 2 * STAGE_EPOCHS
results = {"distil, then compress (KD)": [], "distil, then compress (cross-entropy)": [], "compress, then distil": []}
for seed in SEEDS:
    built = chain.build(splits, teacher, seed=seed, epochs=EPOCHS, sparsity=SPARSITY, bits=BITS, finetune=STAGE,
                        qat=QAT_STAGE, stages=("final",))                    # distilled, pruned, final: cached per seed
    labels = chain.cached(compress_with_labels, splits, teacher, name="compress-with-labels", seed=seed,
                          epochs=EPOCHS, sparsity=SPARSITY, bits=BITS, stage=STAGE, qat_stage=QAT_STAGE)
    early = chain.cached(compress_first, splits, teacher, name="compress-first", seed=seed, sparsity=SPARSITY,
                         bits=BITS, config=training.TrainConfig(epochs=total_epochs, lr=1e-3),
                         kd=distillation.KDConfig())
    for name, model in zip(results, (built["final"], labels, early)):
        results[name].append(training.evaluate(model, splits.x_test, splits.y_test))

# %%
if SEED in SEEDS:   # the cached KD model of seed SEED is section 2's: every stage is reseeded
    assert results["distil, then compress (KD)"][SEEDS.index(SEED)] == final_row["accuracy"]
for name, values in results.items():
    print(f"{name:>38}: {measure.over_seeds(values)}")
kd, ce, early = results.values()
print("KD - cross-entropy as the fine-tuning loss:   ", measure.paired_over_seeds(kd, ce))
print("distil-then-compress - compress-then-distil:  ", measure.paired_over_seeds(kd, early))
if DATASET == "mnist-5k":
    # Margin: measured about +3 points with a per-seed std under 1 (three seeds, 1 and 2 threads); > 1 point
    # leaves more than three standard errors of a three-seed mean.
    assert sum(kd) / len(kd) > sum(early) / len(early) + 0.01

# %% [markdown]
# Taught as measured. **The fine-tuning loss:** on these seeds cross-entropy recovered better than
# distillation, but not measurably. KD minus cross-entropy is -1.33 ± 0.71 points (mean ± standard
# deviation over three seeds, so a standard error of 0.41; accuracies 93.90% ± 0.17% against 95.23% ±
# 0.55%) and cross-entropy is higher on every seed, yet the 95% t interval, -3.10 to +0.43 points (the
# mean ± 4.30 standard errors with three seeds), includes zero. Once the student has been distilled, the
# teacher's soft targets did not help the pruned and quantized network recover here; on these seeds the
# models recovered with them averaged about 1.3 points below those recovered with cross-entropy, a gap
# three seeds cannot tell from luck (on an AMD EPYC the same cell gave -0.67 points, -1.61 to +0.27: the
# same sign, and not resolved either). One possible
# reason, not tested here: at alpha = 0.9 the fine-tuning gives the labels a tenth of the weight and
# follows the teacher's view of the *training* images, which the distilled student has largely absorbed
# already, while cross-entropy spends the whole budget on the labels. This is measured on the test set,
# so it must not be used to change the recipe: the pipeline keeps distillation in these stages, as
# designed before measuring. Exercise 4 asks for the same comparison on held-out data, where such a
# choice belongs.
#
# **The order:** distil-then-compress beats compress-first by 3.53 ± 0.76 points (mean ± std; standard
# error 0.44) at the same number of epochs (93.90% ± 0.17% against 90.37% ± 0.93%), on every seed, with a
# 95% t interval of +1.65 to +5.41 points. Compress-first differs in two ways at once, and this
# comparison does not separate them: it fixes the sparsity pattern by the magnitudes of *random*
# weights, so the network is trained inside an arbitrary 10% of its connections (pruning a trained
# network keeps the connections that the training found useful), and it trains through the 4-bit
# quantizer from its first step. (The literal original, with
# integer Parameters, does not train at all.)
#
# ## 4. Pareto fronts: accuracy against bytes, and against latency
#
# Which combination of width, sparsity and bits gives the most accuracy per byte? `recipes.sweep`
# distils a student per width, prunes it per sparsity and trains it through the quantizer per bit
# width; each point is a real file (with entropy coding) and a measured latency of its deployed int8
# form at batch 256.

# %%
points = recipes.sweep(teacher, splits, folder / "sweep", widths=[32, 64], sparsities=[0.8, 0.95], bit_widths=[2, 4],
                       student=training.TrainConfig(epochs=EPOCHS), finetune=STAGE, qat=QAT_STAGE, seed=SEED, threads=THREADS,
                       students={64: student})   # section 2's student: the same recipe and seed, not trained again
for p in points:
    print(f"{p['stage']:>20}: {p['accuracy']:.2%}, {p['bytes']:>6,} bytes ({ref_row['bytes'] / p['bytes']:5.1f}x), "
          f"{p['latency_ms']:.3f} ms")
everything = points + [{**r, "stage": r["stage"].split(",")[0]} for r in ledger.rows if r is not ledger.rows[1]]
fig = plots.pareto(everything, reference_bytes=ref_row["bytes"], title="accuracy vs compression (reference: 784-128-10 float32)",
                   marks={"Deep Compression, LeNet-300-100 / full MNIST: 40x, no loss": 40})

# %% [markdown]
# Every point is a real, reloadable file, from one seed, so a difference of a few images between two
# points is noise. The front shows the trade: 784-64-10 at 80% and 4 bits is as accurate as the
# reference (95.30% against 94.50%, eight images) at 43x smaller; going past 100x costs 1.2 points
# with 2-bit codes at 80% sparsity (93.30% at 107x) and 2.8 points with 95% sparsity at 4 bits (91.70%
# at 108x), and
# towards 200x and beyond the accuracy falls off fast (89.10% at 201x, 88.30% at 196x, 84.80% at
# 297x). The dashed line marks Deep Compression's 40x for LeNet-300-100 on full MNIST at no loss of
# accuracy, a different model and data set, for orientation only: here, on 4,000 digits, a smaller
# distilled student also reaches about 40x with no measurable loss. On full Fashion-MNIST, the same
# chain applied to LeNet-300-100 itself (92% pruned with the dense network as its own teacher, 4 bits,
# lzma) gives 48x within half a point of its own float32 accuracy (README, three seeds; notebook 02, section
# 5, tests that recipe's weight decay and self-distillation on the bundled digits). Is there a point
# at least 100x smaller within two points of the reference? The sweep scores its points on the test
# set, so its answer describes this run; a recipe chosen from it would be chosen on the test set
# (exercise 3 chooses on held-out data).

# %%
within_2 = [p for p in points + [final_row] if p["accuracy"] >= ref_row["accuracy"] - 0.02]
smallest = min(within_2, key=lambda p: p["bytes"])
print(f"smallest file within 2 points of the reference: {smallest['stage']}, {smallest['accuracy']:.2%}, "
      f"{ref_row['bytes'] / smallest['bytes']:.0f}x smaller")
if DATASET == "mnist-5k":
    # Not ">= 100": another seed can miss it (see below); 40x is far from the line on every seed run.
    assert ref_row["bytes"] / smallest["bytes"] >= 40
fig = plots.pareto(points, reference_bytes=ref_row["bytes"], x="latency_ms", title="accuracy vs latency (int8 backend, batch 256)")

# %% [markdown]
# Yes, on this seed: 784-64-10 at 80% and 2 bits, 93.30%, 1.2 points below the reference at 107x, eight
# images from the line at 2. But on an AMD EPYC the same sweep scored that point 91.40%, and its answer
# was 784-64-10 at 95% and 4 bits, 92.70%, two images from the answer "no" (here 91.70%, outside the
# line): another CPU did land on the other side, and another seed may (try `DC_SEED=1`). One seed cannot answer a
# question whose margin is about the size of its noise;
# the check in the cell asks only for 40x, which every seed run so far passes. The
# latency plot shows the other axis. The int8 backend multiplies a dense int8 matrix whatever its
# zeros, so the sparsity and the bit width do not change its work; the width does, by a little: in this
# run three of the 32-unit points took 0.128 to 0.130 ms and the 64-unit points 0.150 to 0.152 ms. Single
# timings on a shared machine move from run to run (here the fourth 32-unit point took 0.167 ms, slower
# than every 64-unit point) and by CPU; notebook 06 times a narrow and a wide student side by side in
# rounds, which separates them reliably. Only structural changes, a
# narrower network or a kernel that skips zeros, turn compression into speed on this CPU.
#
# ## 5. The final file
#
# Reload the file, check that it gives exactly the same predictions, and deploy its weights on the int8
# backend that notebook 03 measured fastest at batch 1024 in its run:

# %%
reloaded = storage.load(folder / "final.dcmp")
assert torch.equal(reloaded(splits.x_test), final(splits.x_test))
deployed = int8.to_backend(quantization.dequantize_model(reloaded), "legacy")
deployed_row = ledger.measure("5. deployed: the file's weights on the int8 backend", deployed, splits, file_bytes=final_bytes,
                              parameters=final_row["parameters"], nonzeros=final_row["nonzeros"], macs=final_row["macs"])
float_final = quantization.dequantize_model(reloaded)                         # the same network in float32
speedup = measure.latency_ratio(reference, deployed, 256, threads=THREADS)     # alternating, side by side
width = measure.latency_ratio(reference, float_final, 256, threads=THREADS)    # half the hidden units
kernels = measure.latency_ratio(float_final, deployed, 256, threads=THREADS)   # int8 kernels over float32
print(f"identical logits after reloading; deployed accuracy {deployed_row['accuracy']:.2%}\n"
      f"side by side at batch 256: the deployed model is {speedup:.1f}x faster than the reference; the same "
      f"network in float32 {width:.1f}x; int8 over float32 for this network {kernels:.2f}x")

# %% [markdown]
# The reloaded model is bit-identical. The int8 backend re-rounds the 4-bit weights onto its own 8-bit
# grid (one scale per row, as the file has) and quantizes the activations on the fly, to 7 bits: 93.90%
# deployed against 94.00% for the file's own model here, one of 1,000 images and well inside the noise.
# Measured side by side at batch 256 (two models alternating in one cell), the deployed model's latency
# is 1.5 times lower than the reference teacher's in this run. The two other ratios split that: the same
# 784-64-10 network in float32 is 1.6 times faster than the reference (half the hidden units, half the
# multiply-adds), and the int8 kernels multiply that by 0.93: here they are slightly slower than float32.
# Whether int8 beats float32 at this size depends on the CPU (this run: Intel Xeon with AVX-512, AVX-512
# VNNI and AVX-VNNI, 2 threads; on an AMD EPYC with AVX-512 VNNI the same cell gave 1.38 for the int8
# kernels and 2.5 for the deployed model) and moves from run to run; quote side-by-side ratios like
# these, not the ledger's single latencies, which vary more. The sparsity itself does not make it faster
# (notebook 02).
#
# **Energy.** The ledger's two energy columns are *estimates* from operation counts and Horowitz's 45 nm
# energies (ISSCC 2014; notebook 01 introduced them): per image when each image reads all the weights
# (batch 1), and when a batch of 256 shares one read of them. They charge what each model really
# computes: the final model decodes its 4-bit codes and multiplies in float32 like the dense student, so
# in PyTorch its small file saves no energy at all; the int8 deployment multiplies 8-bit integers and
# reads a quarter of the float32 student's bytes. (ONNX Runtime's 4-bit kernel reads the packed codes, which saves reads:
# notebook 06.) What the small file *could* buy needs hardware that computes on it directly, reading the
# packed codes and skipping the zeros, like the EIE accelerator of Deep
# Compression's authors. `energy_estimate` can model that hypothetical hardware too:

# %%
estimates = {"reference teacher, float32": measure.energy_estimate(reference),
             "final model as this runtime computes it (float32)": measure.energy_estimate(final),
             "final model deployed on the int8 backend": measure.energy_estimate(deployed),
             "final file on EIE-like hardware (hypothetical)": measure.energy_estimate(final, weight_bytes=final_bytes,
                                                                                      skip_zeros=True)}
for label, estimate in estimates.items():
    print(f"{label:>50}: {estimate['total_nj']:>8,.1f} nJ per image = compute {estimate['compute_pj'] / 1e3:>6,.1f} "
          f"+ weights {estimate['weights_pj'] / 1e3:>7,.1f} + activations {estimate['activations_pj'] / 1e3:.1f} nJ")
    print(f"{'':>52}({estimate['assumptions']})")
assert estimates["final model deployed on the int8 backend"]["total_nj"] < estimates["reference teacher, float32"]["total_nj"]

# %% [markdown]
# Under these assumptions, reading the weights costs far more than multiplying them: the reference's
# 407 KB come from a 1 MB cache at 12.5 pJ per byte, 5,088.5 nJ per image against 467.5 nJ of arithmetic,
# about eleven times as much; in all it needs 5,561 nJ per image. The final model as this runtime computes
# it needs 2,783 nJ, half the reference's only because it has half the weights: it is the dense student's
# estimate, and its small file saves nothing in PyTorch. The int8 deployment needs 656 nJ, about 8.5 times
# less than the reference, cheaper on both counts (an eighth of the bytes: half the weights, one byte
# each instead of four; 8-bit multiplies). Only the
# hypothetical hardware turns the whole 6 KB file into energy, 35 nJ, about 160 times less than the reference:
# its weights fit in an 8 KB cache and it multiplies only the 10% of weights that survived pruning. This is Deep Compression's argument for why size matters beyond disk
# space, and also why it needs hardware that computes on the compressed form. It is an estimate for a
# 45 nm design, not a measurement of this CPU.
#
# ## 6. Answers to the article's FAQ
#
# The article this tutorial answers asks three questions and claims one order; this notebook's outputs
# answer them:
# - **Compression or distillation?** Distillation trained a different, smaller network (784-64-10: half
#   the reference's parameters and file, section 2); compression changed how that network is stored
#   (pruning, 4-bit codes and entropy coding took its file from 205,661 to 5,918 bytes). The speed came
#   from the student's narrower architecture, which distillation makes no faster (1.6x in float32, side
#   by side in section 5), and on an AMD EPYC also from the int8 kernels (1.38x; 0.93x in this run), not from compression's zeros and codes
#   (notebook 06 goes further).
# - **"Model distillation" (模型蒸馏) or "knowledge distillation" (知识蒸馏)?** The same method here: the
#   student learns from the teacher's softened outputs (notebook 04).
# - **What does combining them gain?** A file 69.1 times smaller than the reference's at 0.50 point below
#   its accuracy on this seed (93.90% ± 0.17% for the chain over three seeds, section 3).
# - **The order (its section 2.3: compress first, then distil).** Wrong, as measured in section 3: at the
#   same number of epochs, distil-then-compress beats compress-then-distil by 3.53 ± 0.76 points, on every
#   seed (95% t interval +1.65 to +5.41); and its literal form (integer Parameters) cannot train at all.
#
# Where each part of the article is covered, fixed or measured (section numbers where its text gives them):
#
# | the article | this tutorial |
# | --- | --- |
# | teacher 784-128-10, student 784-64-10 | notebooks 01 and 04; the ledger after every step |
# | pruning ("weight trimming", 权重裁剪), random masks | notebook 02: magnitude against random pruning, fine-tuning, weight decay and self-distillation tested on held-out data, the bytes of sparse files; pitfall 1 runs its `prune()` |
# | 4-bit quantization | notebook 03: the affine formula, PTQ, k-means and centroid fine-tuning, QAT, integer-only inference; pitfall 1 runs its `quantize()` (values 0 and -2, the int32 `Parameter`, `setattr` with a dotted name) |
# | distillation and its loss (3.4.1: binary cross-entropy) | notebook 04: the loss with T², the high-temperature limit, the step written out, hints; pitfalls run its loss, BCE on ten classes, `torch.ones_like(teacher_model.parameters())` and the missing `student_model` |
# | the order of the stages (2.3) and the pipeline (4), integer weights as trainable parameters | this notebook: section 3 measures both orders and shows the int32 `Parameter` refused; pitfall 1 |
# | efficient inference on different hardware (5) | notebooks 03 (int8 backends) and 06 (ONNX Runtime; speed depends on the CPU's instructions) |
# | privacy, security and robustness (5) | notebook 07 |
#
# ## Pitfalls
#
# **1. The original section-4 pipeline.** It compresses an untrained student (pruning random weights
# by magnitude, which selects nothing), stores 4-bit codes as integer Parameters (which cannot be
# trained, section 3), and then distils with a loss whose teacher term has no gradient (notebook 04). Each
# step fails on its own; together they produce a model that is neither trained, nor small on disk.
# The fixed chain is `recipes.compress` after `distillation.train_student`.
#
# **2. Ratios against the big teacher.** The final file is more than 1,000 times smaller than the
# 784-1200-1200-10 teacher's file. That number is true and meaningless: nobody would deploy the big
# teacher. Every ratio here is against the 784-128-10 teacher the story started with.
#
# **3. Counting bytes that are not on disk.** A masked or fake-quantized model saved with `torch.save`
# is as big as the float model; bytes are only saved by a format that stores codes and positions, and
# they are only real once written and measured (here by `storage.save`).
#
# **4. Expecting compression to be speed.** Sparsity and 4-bit codes shrank the student's file about
# 29-fold (205,661 to 7,114 bytes; 35-fold with entropy coding), but the int8 backend uses neither: it multiplies a dense 8-bit matrix
# (section 4's latency plot); the latency fell because the student is narrower and, on an AMD EPYC,
# because of the int8 kernels (section 5), not because of the zeros or the 4-bit codes.

# %% [markdown]
# ## Exercises
#
# Four exercises. In 1-3 you write the core of an idea into a stub and the next cell checks it on hidden
# cases (`tutorial_utils.exercises_chain`), naming the failing case, the expected and the returned value,
# and a hint; 4 is an experiment. Each ends with a question: answer it in the cell below.
#
# **Exercise 1 (predict the file size).** Estimate the size of the final, uncompressed sparse file from
# its contents, layer by layer (non-zeros are `layer.weight != 0`): the codes of the non-zero weights,
# their positions (the cheaper of a 1-bit-per-weight bitmask and 5 bits per non-zero), one float16 scale
# and one float16 bias per output row, and a header of about 600 bytes. The check accepts 25% on hidden
# pruned and quantized models.
# Which part of the file dominates at 90% sparsity and 4 bits: codes or positions?

# %% nbgrader={"grade": false, "grade_id": "ex1-size", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_size_estimate(model, bits):
    """Bytes of storage.save(model) without entropy coding, for a Linear-ReLU-Linear with integer codes."""
    ### BEGIN SOLUTION
    total = 600                                            # header: shapes, encodings, offsets (JSON)
    for layer in (model[0], model[2]):
        n, nonzero = layer.weight.numel(), int((layer.weight != 0).sum())
        index_bits = min(n, 5 * nonzero)                   # bitmask (1 bit per weight) or 5-bit gaps
        total += (nonzero * bits + index_bits) / 8 + 2 * layer.out_features * 2   # + float16 scales and biases
    return total
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex1-size-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_chain.check_size_estimate(my_size_estimate)   # hidden pruned, quantized models, within 25%
print(f"final model: estimate {my_size_estimate(final, BITS):,.0f} bytes, file {plain_bytes:,} bytes")

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex1-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# At 90% sparsity the positions cost as much as the codes: 5 bits of relative index (or 10 bits of
# bitmask per kept weight) against 4 bits of code. Leave out the header and the check fails on the
# smallest files, where a few hundred bytes of JSON matter; the rest of the gap is the filler entries
# that the relative-index format needs for gaps longer than 32 positions. Scales and biases are stored as
# float16 (the quantized model rounds them so that the round trip stays exact). Entropy coding then
# removes part of the redundancy, in this file more of it in the positions (long runs of pruned inputs,
# such as the blank borders) than in the codes: the surviving weights are the larger ones, so their codes
# bunch up just above the pruning threshold, at mid-range values, not at zero.
# </details>

# %% [markdown]
# **Exercise 2 (the Pareto front).** Write section 4's front yourself: keep a point unless another is at
# most as large *and* at least as accurate, and better in one of the two; return the kept points in
# increasing bytes. Equal points are all kept; no points give `[]`. Why is a point just behind the front not necessarily
# worse, on one seed and 1,000 test images?

# %% nbgrader={"grade": false, "grade_id": "ex2-front", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_pareto_front(points):
    """The points (dicts with "bytes" and "accuracy") that no other point beats, in increasing bytes."""
    ### BEGIN SOLUTION
    def beaten(p):
        return any(q["bytes"] <= p["bytes"] and q["accuracy"] >= p["accuracy"]
                   and (q["bytes"] < p["bytes"] or q["accuracy"] > p["accuracy"]) for q in points)
    return sorted((p for p in points if not beaten(p)), key=lambda p: p["bytes"])
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex2-front-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_chain.check_pareto_front(my_pareto_front)
print("on the sweep's front:", [p["stage"] for p in my_pareto_front(points)])

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex2-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The front is drawn from single measurements: a point one or two test images behind it (0.1 to 0.2
# points) is inside the noise of an accuracy on 1,000 images (about 0.7 points), and another seed can
# swap it with its neighbour. Points far behind the front are worse; points near it are candidates to
# compare over seeds.
# </details>

# %% [markdown]
# **Exercise 3 (an operating point under a budget).** A device has room for `max_bytes` and the product
# needs at least `min_accuracy`. Among the points that meet both, choose the most accurate, ties to the
# smaller file; return None if none qualifies, and raise `ValueError` for a budget of 0 bytes or less.
# The points carry two accuracies, `val_accuracy` (held-out training images, `splits.holdout()`) and
# `accuracy` (test): which one must decide, and why?

# %% nbgrader={"grade": false, "grade_id": "ex3-choose", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_choose(points, max_bytes, min_accuracy):
    """The point to deploy: within max_bytes and at least min_accuracy (held-out), the most accurate."""
    ### BEGIN SOLUTION
    if max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes} must be positive")
    fits = [p for p in points if p["bytes"] <= max_bytes and p["val_accuracy"] >= min_accuracy]
    return min(fits, key=lambda p: (-p["val_accuracy"], p["bytes"]), default=None)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex3-choose-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_chain.check_operating_point(my_choose)

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex3-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The held-out accuracy decides. A choice made by test accuracy picks, among many candidates, the one the
# test images happened to favour; its test accuracy is then biased upwards and no longer an honest
# estimate of what the device will see. Choose on held-out data, then report the chosen point's test
# accuracy once. `recipes.choose` is the package's version.
# </details>

# %% [markdown]
# **Exercise 4 (your own operating point, and the loss question).** Pick a width, sparsity and bit
# width, compress, and see where your point lands against the Pareto front above. Then settle section
# 3's question properly, as take-home work: hold out 1,000 training images (`val = splits.holdout(1000)`).
# Section 2's teacher and student saw those images, and a model that imitates a teacher inherits what
# it memorised (notebook 04), so train a teacher on `val` too
# (`training.load_or_train_teacher(val, **distillation.BIG_TEACHER_RECIPE, seed=SEED)`, about 20 s), distil a
# student from it on `val`, then compress that student with `teacher=` that teacher and with
# `teacher=None` on `val` for three seeds (`recipes.compress(..., seed=seed)`), and compare with
# `measure.paired_over_seeds`. Where does your point
# land, and what held-out result would make you switch the pipeline's fine-tuning loss?

# %%
my_student = distillation.train_student(splits, teacher=teacher, seed=SEED, sizes=(784, 48, 10), epochs=EPOCHS)
training.setup(SEED)
mine = recipes.compress(my_student, splits, sparsity=0.9, quant=3, teacher=teacher,
                        finetune=training.TrainConfig(epochs=3), qat=recipes.QAT.replace(epochs=3))
my_bytes = storage.save(mine, folder / "mine.dcmp", compress="auto")
print(f"784-48-10, 90%, 3-bit: {training.evaluate(mine, splits.x_test, splits.y_test):.2%}, "
      f"{my_bytes:,} bytes ({ref_row['bytes'] / my_bytes:.0f}x smaller than the reference)")

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex4-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# Compare with the front: a point is worth keeping only if no other is both smaller and more accurate.
# In this sweep no width rule is settled: near 2 KB the narrower, denser student and the wider,
# sparser one both sit on the front (784-32-10 at 80% and 2 bits: 2,040 bytes, 89.10%; 784-64-10 at 95%
# and 2 bits: 2,393 bytes, 90.30%, twelve images more for 17% more bytes), while near 4 KB only
# 784-64-10 does here (95% and 4 bits: 3,782 bytes, 91.70%; 80% and 2 bits: 3,817 bytes, 93.30%):
# 784-32-10 at 80% and 4 bits (4,786 bytes, 93.20%) falls one image behind a smaller file, where on an
# AMD EPYC it sat on the front (93.80%). 2 bits at 80% scored higher than 4 bits at 95% at equal bytes
# on this seed, near 3.8 KB (93.30% against 91.70%; `measure.paired_test` would say whether 16 images
# are beyond chance) and near 2 KB (89.10% against 88.30%, eight images on one seed: not resolved); on an AMD EPYC
# the 3.8 KB pair went the other way (91.40% against 92.70%), so the bit width is a question for several
# seeds, not one run. The 784-48-10
# point above (4,067 bytes, 93.00%) lands just behind the front: 784-64-10 at 80% and 2 bits is slightly
# smaller and three images more accurate (3,817 bytes, 93.30%), a difference one seed cannot resolve. With
# more fine-tuning epochs every point moves up, and that point had 3 instead of 5; compare points only
# at equal budgets. For the loss question, hold out 1,000 training images (`val = splits.holdout(1000)`),
# train the teacher and distil the student on `val` alone, compress with and without that teacher on
# `val` for three seeds, and compare them with `measure.paired_over_seeds`: that comparison, not section
# 3's test numbers, may decide the recipe, and only if its t interval excludes zero.
# </details>

# %% [markdown]
# ## Summary
#
# - Order: distil (a trained, strong student) → prune with KD → QAT with KD → pack with entropy coding.
# - The final 784-64-10 model, 90% sparse with 4-bit codes, is a file 69.1x smaller than the
#   784-128-10 teacher's float32 file, 0.50 point below its accuracy in this run (94.00% against 94.50%;
#   the same recipe averages 93.90% ± 0.17% over three seeds); one point of the Pareto sweep goes past
#   100x within two points (107x, 1.2 points below) on seed 0, eight images from the line, and on an AMD
#   EPYC a different point did so two images from it: a threshold that close to the noise is not a finding.
# - Distil first, then compress: 3.53 ± 0.76 points better than compressing an untrained student (three
#   seeds, better on each; 95% t interval +1.65 to +5.41).
# - Once the student is distilled, cross-entropy recovered better than distillation as the fine-tuning
#   loss on these seeds, not measurably (KD minus cross-entropy: -1.33 ± 0.71 points, mean ± std over
#   three seeds, cross-entropy higher on all three, t interval -3.10 to +0.43). That is measured on the
#   test set, so the recipe keeps distillation;
#   exercise 4 makes the comparison on held-out data.
# - Deployed on an int8 backend, the final model loses no measurable accuracy (93.90% against 94.00%,
#   one image) and, measured side by side at batch 256, its latency is 1.5x lower than the reference's in
#   this run, from the narrower network (the int8 kernels were 0.93x float32's speed here, 1.38x on an AMD
#   EPYC); latencies on a shared machine vary from run to run and by CPU. The energy estimate per image
#   falls from 5,561 nJ for the reference to 656 nJ for the int8 deployment; the 35 nJ that the small file
#   could reach needs hypothetical hardware that computes on it directly.

# %%
print(ledger)

# %% [markdown]
# ## Further reading
#
# - S. Han, H. Mao, W. J. Dally. *Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
#   Quantization and Huffman Coding.* ICLR 2016. LeNet-300-100 on MNIST: 1,070 KB → 27 KB (40x) at 1.58% error
#   (1.64% before): pruning 12x, 6-bit quantization 32x, Huffman coding 40x.
# - A. Polino, R. Pascanu, D. Alistarh. *Model compression via distillation and quantization.* ICLR 2018.
# - A. Mishra, D. Marr. *Apprentice: Using Knowledge Distillation Techniques To Improve Low-Precision Network
#   Accuracy.* ICLR 2018.
# - M. Horowitz. *Computing's energy problem (and what we can do about it).* ISSCC 2014. The energies used above.
# - S. Han et al. *EIE: Efficient Inference Engine on Compressed Deep Neural Network.* ISCA 2016. Hardware
#   that skips the zeros and decodes the codes, turning compression into speed and energy.
#
# Run the whole chain headless with `python -m tutorial_utils pipeline` (see README).
