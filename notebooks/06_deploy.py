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
# # 06 · Deploy: the compressed student in a real runtime
#
# Notebook 05 ended with a file 69 times smaller than the teacher's, which only this package can read,
# and a deployment on PyTorch's deprecated int8 backend: 1.5 times faster than the teacher at batch 256
# there (2 threads); section 5 times it again here, at one thread and at batch 1 too (a ratio measured at
# one thread count need not hold at another). Here the student leaves the package: it becomes an ONNX
# file, a standard graph format that ONNX Runtime (and other runtimes) execute, in float32, in int8 and
# with its own 4-bit QAT codes. Then we ask the question a user asks:
# how much faster than the teacher is it, at batch 1 and at batch 256, on *this* CPU?
#
# **What you will learn**
# - how an MLP becomes an ONNX graph, and why `MatMul` + `Add` rather than the `Gemm` that exporters emit;
# - how 4-bit codes are packed for ONNX Runtime's `MatMulNBits` so that the runtime computes exactly
#   the QAT model's function (checked, logit by logit);
# - int8 by ONNX Runtime's quantizers (dynamic, and static with calibration on training images), and
#   int8 without quantizing the input at all: the pixels are already 8-bit, so the normalisation folds
#   into the first layer and the QAT codes meet the raw image in one integer product;
# - compaction: removing the inputs and units that pruning left dead, and why that saves multiply-adds
#   but not always time; structured pruning to a narrower network, which a dense kernel can turn into time;
# - latency side by side at batch 1 and 256, against the machine's measured peak, and what limits it;
#   bytes on disk, and an energy estimate for each kind of arithmetic.
#
# **Prerequisites**: notebooks 02, 03 and 05, and `pip install -e ".[deploy]"` (onnx, onnxruntime;
# included in the test extra). About 10 s on a 2-core CPU with the teachers and the chain's models cached
# (the first time, about 5 s more for the chain and about 20 s more for the big teacher).
# Numbers in the text are this run's, on the machine in the ledger's record (notebook 01 says more).

# %%
import collections
import json
import pathlib

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
import torch

from tutorial_utils import (chain, compaction, data, deploy, distillation, exercises_deploy, files, int8, machine, measure,
                            models, nbits, onnx_export, quantization, recipes, storage, timing, training, validate)

# %%
DATASET = validate.env("DC_DATASET", "mnist-5k")
DATA_DIR = validate.env("DC_DATA_DIR", None)
EPOCHS = validate.env("DC_EPOCHS", 15, validate.positive_int)
SEED = validate.env("DC_SEED", 0, validate.nonnegative_int)
THREADS = validate.env("DC_THREADS", 2, validate.positive_int)
SPARSITY, BITS = 0.9, 4

device = training.setup(SEED, threads=THREADS)
splits = data.load(DATASET, root=DATA_DIR)
reference = training.load_or_train_teacher(splits, epochs=EPOCHS, seed=SEED, device=device)
teacher = training.load_or_train_teacher(splits, **distillation.BIG_TEACHER_RECIPE, seed=SEED, device=device)
folder = files.cache_dir("notebook06")                 # outside the source tree ($DC_CACHE_DIR)
built = chain.build(splits, teacher, seed=SEED, epochs=EPOCHS, sparsity=SPARSITY, bits=BITS,
                    stages=("distilled", "final"))   # cached per seed
student, final = built["distilled"], built["final"]     # distilled 784-64-10; 90% pruned, 4-bit QAT
print(machine.describe(machine.record(threads=THREADS)))
print(f"final model: {models.layer_sizes(final)}, accuracy {training.evaluate(final, splits.x_test, splits.y_test):.2%}")

# %% [markdown]
# The final model is notebook 05's chain: distil, prune 90% with distillation, train through the 4-bit
# quantizer (`chain.build` trains it once per seed and keeps it in the cache, where notebook 07 finds it
# too; every stage reseeds when it starts, so it is the model `recipes.compress` gives for this seed).
#
# ## 1. An MLP as an ONNX graph
#
# An ONNX file is a graph of named operators with the weights stored inside. A Linear layer computes
# `y = x W^T + b`, which is two operators, `MatMul(x, W^T)` and `Add(., b)`. PyTorch's exporter writes
# the pair as one `Gemm` node; that is correct, but ONNX Runtime's dynamic int8 quantizer (section 3)
# and its 4-bit quantizer convert only `MatMul` nodes and silently leave a `Gemm` in float32 (only its
# static quantizer handles `Gemm`). `onnx_export.to_onnx` writes the layers
# itself, so the graph holds exactly what we put in it, with a symbolic batch dimension:

# %%
proto = onnx_export.to_onnx(quantization.dequantize_model(final))
print("operators:", onnx_export.op_types(proto))
print("input:", proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param, "x",
      proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value)
float_file = folder / "final-float32.onnx"
float_bytes = deploy.export(quantization.dequantize_model(final), float_file)
runtime = deploy.runtime_model(float_file, threads=1)          # checks logits only: no thread pool
difference = (runtime(splits.x_test) - final(splits.x_test)).abs().max().item()
print(f"{float_bytes:,} bytes; largest logit difference to PyTorch on 1,000 test images: {difference:.1e}")
assert difference < 1e-4

# %% [markdown]
# The runtime computes the same logits as PyTorch up to float rounding (sums in another order). The
# file holds the float32 weights, zeros included: about 204 KB for a model whose `.dcmp` file in
# notebook 05 is 5,918 bytes.
#
# ## 2. The QAT codes themselves, 4 bits each
#
# `MatMulNBits` (an operator of ONNX Runtime's own `com.microsoft` domain) stores the weight like
# `nn.Linear.weight`, one row per output unit, K = in_features long, cut into blocks of `block_size`
# codes, two codes per byte (the first in the low four bits), with one scale per block. With no zero-point
# input the zero point is 8: `w = (u - 8) * scale`, u in 0..15. Our symmetric 4-bit codes c lie in -7..7,
# so u = c + 8, and every block of a row gets that row's scale. Packing by hand, for one row of ten codes
# and blocks of 16:

# %%
codes = torch.tensor([[-7, -1, 0, 1, 7, 3, -3, 0, 2, -2]])
unsigned = codes + 8                                          # (1, 10), values 1..15
padded = torch.full((1, 16), 8)                               # pad the block with u = 8: weight 0
padded[:, :10] = unsigned
pairs = padded.reshape(1, 1, 8, 2)                            # (rows, blocks, bytes, 2 codes)
by_hand = (pairs[..., 0] | (pairs[..., 1] << 4)).to(torch.uint8)
print(by_hand.tolist())
assert np.array_equal(by_hand.numpy(), nbits.pack_4bit(unsigned, 16))

# %% [markdown]
# For the real layer (K = 784) `nbits.block_size_for` picks the block size with the fewest bytes,
# padding and scales included. `accuracy_level` is the lowest precision the kernel may use inside: 0 keeps
# the input in float32 (the function is exactly the QAT model's), 4 lets it round the input to int8 per
# block (a different function, faster on some CPUs; exercise 4 measures it).

# %%
block_size = nbits.block_size_for(784)
nbits_file = folder / "final-4bit.onnx"
nbits_bytes = deploy.export(final, nbits_file, "4bit")
nbits_runtime = deploy.runtime_model(nbits_file, threads=1)     # scores accuracy only: no thread pool
difference = (nbits_runtime(splits.x_test) - final(splits.x_test)).abs().max().item()
print("operators:", onnx_export.op_types(onnx_export.to_onnx(final, weights="4bit")))
print(f"block size {block_size}: {-(-784 // block_size)} blocks per row of the first layer")
print(f"{nbits_bytes:,} bytes; largest logit difference to the QAT model: {difference:.1e}")
assert difference < 1e-4

# %% [markdown]
# The 4-bit graph reproduces the QAT model (the differences are float rounding), in a file 6.5 times
# smaller than the float32 one. It is still five times notebook 05's `.dcmp` file: the runtime's kernel is
# dense, so each of the 90% zero weights costs 4 bits, and each row's one scale is stored once per block
# (13 times, in float32). A sparse file is for storing and shipping; a dense low-bit file is what a fast
# kernel reads.
#
# ## 3. int8 by ONNX Runtime's own quantizers
#
# ONNX Runtime quantizes a float32 graph in two ways: *dynamic* (int8 weights per output channel; the
# activations' range is measured on every call, over the whole input tensor) and *static* (the
# activations' ranges are fixed beforehand on calibration images, here 1,000 training images, and
# written into the graph as QuantizeLinear/DequantizeLinear pairs). Both start from the dequantized 4-bit
# weights and round them again onto an int8 grid (7-bit codes, -64..64: Pitfalls say why), which does not
# contain the 4-bit values exactly:

# %%
deployments = deploy.export_all(final, folder, stem="final", threads=1, calibration=splits.x_train[:1000])
qat_logits = final(splits.x_test)
for kind, entry in deployments.items():
    logits = entry["model"](splits.x_test)
    agreement = (logits.argmax(1) == qat_logits.argmax(1)).float().mean().item()
    print(f"{kind:>13}: {entry['bytes']:>7,} bytes, accuracy {training.evaluate(entry['model'], splits.x_test, splits.y_test):.2%}, "
          f"same prediction as the QAT model on {agreement:.1%} of test images, largest logit difference "
          f"{(logits - qat_logits).abs().max().item():.2f}")
    assert agreement >= 0.98

# %% [markdown]
# The float32, 4-bit and int8-pixels files (the last is explained next) give the QAT model's predictions
# on every image. The int8 files move the
# largest logit by 0.43 (dynamic) and 0.72 (static); dynamic agrees with the QAT model on all test
# images but 2, static on all but 3, and the accuracies differ by at most one image of 1,000 (static
# 94.10% against 94.00%), which is noise.
#
# ### int8 on the pixels themselves
#
# Both int8 files spend part of every call turning the float32 input into int8 (dynamic: find its range,
# then round; static: round onto the calibrated grid). Yet an MNIST image *is* 8-bit: the model sees
# floats only because we normalised its pixels p in 0..255 as x = (p / 255 - mean) / std. The static
# graph's calibration almost rediscovers that grid:

# %%
static_graph = onnx.load(deployments["int8-static"]["path"])
constants = {t.name: onnx.numpy_helper.to_array(t) for t in static_graph.graph.initializer}
read_input = next(n for n in static_graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
input_step, input_zero = (constants[name] for name in read_input.input[1:3])
print(f"static int8 reads x on a grid of step {input_step:.6f} with zero point {input_zero}; "
      f"one pixel step is {1 / (255 * data.STD):.6f}, and a black pixel sits {255 * data.MEAN:.2f} steps below x = 0")
assert np.isclose(input_step, 1 / (255 * data.STD), rtol=1e-5)   # black and white pixels among the calibration images

# %% [markdown]
# Its step is exactly one pixel step (the calibration images span black to white), but a zero point must
# be an integer: 33 where the pixels' own zero sits at 33.33, so every input is read a third of a step too
# high, a small constant shift. Rather than rediscover the grid, use it: the normalisation is affine, so it
# folds into the first layer. Substitute x = p / (255 std) - mean / std into the layer, with its codes Q
# (hidden units x pixels) and one scale per hidden unit, s (W = diag(s) Q):
#
#     W x + b  =  s / (255 std) * (Q p)  +  (b - (mean / std) * s * (Q 1))
#
# where `*` scales each hidden unit's row by its own s, and Q 1 is the sum of each row of codes. Q p is a
# product of integers (codes in -7..7, pixels in 0..255): at most 784 * 255 * 7 = 1,399,440 in size, exact
# in int32, and the uint8 x int8 product is what the CPU's integer dot-product instructions (VNNI's
# `vpdpbusd`) take. One scale and one bias per hidden unit finish the layer: no rounding of the input, no
# weights but the QAT codes, so the QAT model's function. (The mean and std must be single numbers, as
# here: a mean per pixel would fold just as well into the bias, but a std per pixel would scale each
# *column* of Q and break its integer codes. The formula is written for one image as a column, p; the code
# below holds images as rows, so it computes `pixels @ codes.T`, as section 1's graph does.) From scratch,
# on the test images:

# %%
first = final[0]                                                            # QuantizedLinear 784 -> 64
pixels = torch.round((splits.x_test * data.STD + data.MEAN) * 255).long()   # (1000, 784), back to 0..255
codes = first.codes.long()                                                  # (64, 784), -7..7
row_scale = first.scale.double().reshape(-1)                                # (64,)
products = pixels @ codes.T                                                 # (1000, 64), integers, exact
folded_bias = first.bias.double() - data.MEAN / data.STD * row_scale * codes.sum(dim=1)
hidden = (row_scale / (255 * data.STD) * products + folded_bias).float()
print(f"pixels {pixels.min()}..{pixels.max()}; worst possible integer sum {784 * 255 * codes.abs().max():,} "
      f"(int32 holds up to 2,147,483,647)")
print(f"largest difference to the QAT layer on normalised images: {(hidden - first(splits.x_test)).abs().max():.1e}")
assert torch.allclose(hidden, first(splits.x_test), atol=1e-4)
codes_t, scale, bias = onnx_export.fold_pixels(first)                        # the package's version
assert np.array_equal(codes_t, codes.T.numpy()) and np.allclose(bias, folded_bias.numpy(), atol=1e-5)
assert np.allclose(scale, (row_scale / (255 * data.STD)).numpy())

# %% [markdown]
# The folded layer matches the QAT layer to float rounding, and the package's `onnx_export.fold_pixels`
# gives the same codes, scale and bias. Section 3's `int8-pixels` file is built from them; its operators,
# and the file itself run on the raw uint8 pixels (no normalisation anywhere) against the QAT model:

# %%
print(onnx_export.op_types(onnx.load(deployments["int8-pixels"]["path"])))
session = deploy.session(deployments["int8-pixels"]["path"])                 # the file itself, fed raw uint8
assert np.array_equal(pixels.numpy(), deployments["int8-pixels"]["model"].to_pixels(splits.x_test))  # the package's
from_file = torch.from_numpy(session.run(None, {"x": pixels.to(torch.uint8).numpy()})[0])
print(f"the file on raw pixels: largest logit difference to the QAT model {(from_file - final(splits.x_test)).abs().max():.1e}")
assert torch.allclose(from_file, final(splits.x_test), atol=1e-4)

# %% [markdown]
# Its logits are the QAT model's, to float rounding. That is the `int8-pixels` file of the table above
# ("int8" names the kernel: uint8 pixels times int8 codes). Read its operators in order: one
# `MatMulIntegerToFloat` computes the integer product (int32 sums), its scale and its bias; then `Relu`;
# then the 64 -> 10 layer as a float32 `MatMul` and `Add`.
#
# The codes are stored 4 bits each, as ONNX's own INT4 type. The first `Cast` widens the first layer's
# codes to int8; before the second layer a `Cast` turns its codes into floats and a `Mul` by the row
# scales rebuilds its weights. Those nodes read only constants, so ONNX Runtime runs them once, when the
# session loads: from then on it holds the first layer's codes as int8 and the second layer's weights as
# float32 (its `MatMul` and `Add` become one `Gemm`). The file holds two codes per byte and one scale per
# row, smaller than the `MatMulNBits` file with its scale per block (and its rows padded from 784 to 832
# codes).
#
# `MatMulIntegerToFloat`, like `MatMulNBits`, is ONNX Runtime's own operator (`com.microsoft` domain).
# The same layer in standard ONNX operators is `MatMulInteger` -> `Cast` -> `Mul` -> `Add`:
# `onnx_export.to_onnx(final, weights="int8-pixels", fused=False)` writes it (save the proto yourself;
# same logits to float rounding, for any runtime that reads opset 21's INT4). ONNX Runtime then runs four
# kernels where one would do: when a session loads, its graph optimizer rewrites known patterns of nodes
# into fused ones, but not this one (its pattern for `MatMulIntegerToFloat` is the one the dynamic int8
# quantizer writes, with a scale computed at run time).
#
# The file's input is the uint8 image as stored. For our normalised tensors, `deploy.runtime_model` turns
# them back into pixels first (outside any timing), and refuses a tensor that is not 8-bit images: noise
# added, another normalisation, NaN. Section 5 times it. It cannot take compaction's dropped pixels: a
# `Gather` on its input would come first (`onnx_export.to_onnx` refuses; section 4 shows why a gather
# costs time).
#
# ## 4. Compaction: what pruning left dead
#
# Magnitude pruning removed 90% of the weights one by one, and some *whole* pieces went with them: input
# pixels whose every weight is zero, and possibly hidden units. (The 125 pixels that are blank in every
# training image carry no information; pruning also took every weight of rarely inked pixels.)
# `compaction.compact` drops them and returns a smaller dense network with the same function:

# %%
small = compaction.compact(final)
print(f"{models.layer_sizes(final)} -> {models.layer_sizes(small)} (first the kept inputs): "
      f"{compaction.dead_units(final)} removed")
print(f"MACs per image: {measure.macs(final):,} -> {measure.macs(small):,}")
assert torch.allclose(small(splits.x_test), final(splits.x_test), atol=1e-4)
small_file = folder / "compact-4bit.onnx"
deploy.export(small, small_file, "4bit")
compact_runtime = deploy.runtime_model(small_file, threads=1)
latency_by_graph = deploy.compare_latency({"full": nbits_runtime, "compact": compact_runtime}, 256, threads=1, rounds=3)
print({name: f"{row['latency_ms'] * 1e3:.0f} µs" for name, row in latency_by_graph.items()}, "at batch 256, 1 thread")

# %% [markdown]
# A third of the inputs were dead, and 2 of the 64 hidden units, so about a third of the multiply-adds go.
# But look at the time: the compact graph must first *gather* the kept pixels of each image (a `Gather`
# of scattered columns), work the full graph does not do, and on this CPU the compact graph is several
# times *slower*, not a third faster. Is the gather really the cost? Don't guess: ONNX Runtime's own
# profiler (`SessionOptions.enable_profiling`) times every node of the graph.

# %%
def microseconds_per_operator(path, x, *, calls=50):
    """Mean µs per call in each operator type of the ONNX file at `path`, by ONNX Runtime's profiler."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling = 1, True
    options.profile_file_prefix = str(pathlib.Path(path).with_suffix(""))
    profiled = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        profiled.run(None, {"x": x})
    trace = pathlib.Path(profiled.end_profiling())   # a JSON file of timed events next to `path`
    text = trace.read_text(encoding="utf-8")
    trace.unlink()
    spent = collections.Counter()
    for event in json.loads(text):          # one "..._kernel_time" event per node and call
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"] / calls
    return spent

# %% [markdown]
# Profile both graphs at batch 256; each line lists the operator types from the most time to the least:

# %%
x_256 = splits.x_test[:256].numpy()                                        # (256, 784) float32
for name, path in (("full", nbits_file), ("compact", small_file)):
    spent = microseconds_per_operator(path, x_256)
    print(f"{name:>7}: " + ", ".join(f"{operator} {us:.0f} µs" for operator, us in spent.most_common()))

# %% [markdown]
# The profile answers it: most of the compact graph's time goes to the `Gather`, and its `MatMulNBits`,
# with 520 inputs instead of 784, is faster than the full graph's. (The profiler's means include its own
# overhead, so they add up to a little more than the side-by-side timing above.) Fewer operations are
# not less time unless the kernel profits from the change. A deployment can avoid the gather by dropping
# those pixels before the model, or keep every input: `compact(final, inputs=False)`.
#
# ### Structured pruning
#
# What a dense kernel profits from is a narrower matrix. **Structured pruning** removes whole hidden units
# rather than single weights. `recipes.narrow` scores each of the student's 64 hidden units with
# `pruning.neuron_scores`,
#
#     score = (|incoming weights|_1 + |bias|) * |outgoing weights|_1,
#
# removes the weakest half, and distils the 784-32-10 network that is left for five epochs. Then, as
# before, it is trained through the 4-bit quantizer, this time without magnitude pruning (the pipeline's
# `--narrow 0.5 --sparsity 0`):

# %%
narrow = recipes.narrow(student, splits, amount=0.5, teacher=teacher, seed=SEED)          # 784-32-10
narrow = recipes.quantize_aware(narrow, splits, quant=BITS, teacher=teacher, seed=SEED)
for name, model in (("reference teacher", reference), ("final (90% sparse)", final), ("narrow 784-32-10", narrow)):
    print(f"{name:>18}: {training.evaluate(model, splits.x_test, splits.y_test):.2%}, {measure.macs(model):,} MACs")

# %% [markdown]
# One seed: the narrow student is 0.3 points above the teacher here (on an AMD EPYC the same seed gave
# 0.2 points below), within the noise either way; over three seeds README's benchmarks find it not
# distinguishable from the teacher (paired 95% t interval -1.16 to +1.29 points on the Intel Xeon, -1.52
# to +1.79 on the AMD EPYC) and about a point above the 90%-sparse final model on average.
#
# ## 5. Latency, side by side
#
# Every candidate is timed in rounds, each round timing each candidate once (so a slow moment of this
# shared machine hits them all), and each ratio is taken within a round against the teacher in PyTorch
# eager float32. ONNX Runtime is timed as a service written in C or C++ would call it, less Python's own
# call: the input and output bound once (I/O binding: the session is told once where the input lies
# and which output to keep, so a call converts nothing), one `RunOptions` held, and the call made on the
# session's C++ object straight from Python (the private attribute `session._sess`; onnxruntime's public
# Python method adds checks of its own to every call, which a Python service pays: exercise 4 measures them);
# PyTorch is timed calling `model(x)` on a prebuilt tensor. Every model but
# the two int8-pixels files gets float32 input of the images' shape, ready before the clock starts (random
# values: a dense kernel's time does not depend on them); those two get uint8 input (784 bytes an image
# against 3,136), and the time of turning stored pixels into normalised floats is in no row (exercise 6
# asks whom that favours). "Teacher" in the table is the 784-128-10 reference teacher, not the big
# teacher the students were distilled from. Everything runs on **one thread** here, which keeps the notebook short and leaves no idle
# thread pools to disturb the timings (Pitfalls); README's benchmark has the same table at 1 and 2 threads.

# %%
TIMING_THREADS = 1
sources = {"teacher": reference, "student": student, "final": final, "narrow": narrow}
deploy.export(reference, folder / "teacher-float32.onnx", "float32")   # the same teacher, in the same runtime
candidates = {"teacher, PyTorch float32": reference,
              "teacher, ORT float32": deploy.runtime_model(folder / "teacher-float32.onnx", threads=TIMING_THREADS),
              "student, PyTorch float32": student,
              "final, PyTorch legacy int8": int8.to_backend(quantization.dequantize_model(final), "legacy")}
file_bytes = {}
for name in ("final", "narrow"):
    for kind, entry in deploy.export_all(sources[name], folder, stem=f"{name}-t1", threads=TIMING_THREADS,
                                         calibration=splits.x_train[:1000]).items():
        candidates[f"{name}, ORT {kind}"] = entry["model"]
        file_bytes[f"{name}, ORT {kind}"] = entry["bytes"]

# %% [markdown]
# Fourteen candidates, three of them PyTorch; the teacher runs in ONNX Runtime too, unchanged, so that the
# runtime's part of a speed-up can be told from the compression's. Each row below gives the latency at
# batch 1 and 256 with the speed-up over the teacher in PyTorch in parentheses, and the achieved share of
# this CPU's float32 matmul rate:

# %%
peak_gflops = timing.peak_gflops(threads=TIMING_THREADS)
latency_by_batch = {batch: deploy.compare_latency(candidates, batch, threads=TIMING_THREADS, rounds=5, repeats=50)
                    for batch in (1, 256)}
print(f"{machine.describe(machine.record(threads=TIMING_THREADS))}; float32 matmul rate {peak_gflops:.0f} GFLOP/s")
print(f"{'':30} {'batch 1':>18} {'batch 256':>19} {'of f32 peak':>12}")
for name in candidates:
    at_batch_1, at_batch_256 = latency_by_batch[1][name], latency_by_batch[256][name]
    rate = timing.achieved_gflops(measure.macs(sources[name.split(",")[0]]), at_batch_256["latency_ms"], batch_size=256)
    print(f"{name:30} {at_batch_1['latency_ms'] * 1e3:6.1f} µs ({at_batch_1['speedup']:4.1f}x) "
          f"{at_batch_256['latency_ms'] * 1e3:7.1f} µs ({at_batch_256['speedup']:4.1f}x) {rate / peak_gflops:11.0%}")
for name in ("narrow, ORT int8-pixels", "final, ORT int8-pixels"):   # against the same teacher in the same runtime
    ratios = [latency_by_batch[b][name]["speedup"] / latency_by_batch[b]["teacher, ORT float32"]["speedup"]
              for b in (1, 256)]                                    # two speed-ups of the table, each a median of rounds
    print(f"{name} against the teacher in ORT float32: {ratios[0]:.1f}x at batch 1, {ratios[1]:.1f}x at batch 256")

# %% [markdown]
# Read the table for *your* CPU (its first line); on this one (an Intel Xeon with AVX-512 VNNI and
# AVX-VNNI, one thread):
#
# - **Batch 256**: int8-pixels is where the speed is, and width is the other half. The int8-pixels graph
#   runs the final model about 2.4 times as fast as its float32 graph; in float32 the narrow student, with
#   half the multiply-adds, runs about twice as fast as the final model. The int8-pixels graphs, which never quantize
#   their input and read a quarter of the bytes (and compute the small second layer in float32), take
#   about half (final) and nearly two thirds (narrow) less time than dynamic int8: the narrow student's
#   is the fastest row, 9.6x faster than the teacher. ONNX Runtime's own quantizers gain much less here:
#   their int8 graphs take about a fifth less time than float32 for the final model, and about a fifth
#   *more* for the narrow student (both quantize the 784-pixel input on every call, a cost that a narrower
#   hidden layer does not reduce: a likely reason, not profiled here). How much int8 buys depends on the CPU: on an AMD EPYC (avx512_vnni, no avx_vnni) the same
#   int8 graphs ran the final model about twice and the narrow student about 1.5 times as fast as float32,
#   partly because the EPYC's float32 kernel was the slower one (README's two tables): a ratio moves with
#   its baseline as much as with the int8 kernel.
#   ONNX Runtime's int8 kernels use the CPU's integer dot-product instructions (one AVX-512 VNNI
#   instruction does 64 int8 multiply-adds where a float32 FMA does 16, per instruction; how many of
#   each a core starts per cycle differs between CPUs); without VNNI (AVX2 only) they
#   need several instructions for the same work. README times these models on the Intel Xeon with its
#   CPUID masked to AVX2 (`scripts/masked_avx2.py`: the AVX2 kernels at native speed), where at one thread
#   int8-pixels gains less over float32 than with VNNI (at two threads about as much); recent Xeons add
#   AMX tiles, not measured here. To try it on
#   your machine (if its `/proc/cpuinfo` lists `cpuid_fault`), start Jupyter as
#   `python scripts/masked_avx2.py -- jupyter lab` and run this notebook again: the first line of the table
#   then shows PyTorch's kernels as AVX2, and every library runs its AVX2 code on your CPU.
# - **"of f32 peak"** is notebook 01's one-line roofline: the achieved rate, 2 x MACs x 256 / latency
#   (`timing.achieved_gflops`, which counts an int8 multiply-add like a float32 one), over a large float32
#   matmul's measured rate on this thread (PyTorch's, 1024 x 1024): a reference, not a hardware limit,
#   and an int8 kernel, whose multiply-adds are cheaper, can pass 100%. ONNX Runtime's float32 kernel on these
#   small, cache-resident matrices (each weight reused 256 times) runs at about that reference (99% to
#   102%), the int8-pixels rows at more than twice it, and the quantizers' int8 rows at 81% to 127%.
#   `MatMulNBits` at accuracy level 0 decodes the codes to float32 and multiplies in float32, so the
#   4-bit rows run at about float32's speed, a little below it: a small file, not a fast kernel.
# - **Batch 1**: the ONNX Runtime rows take a few microseconds, and int8 buys little. Read the speed-ups
#   here: the µs column is each row's median over five rounds and the speed-up the median of the five
#   per-round ratios to the teacher, so when a row's rounds vary (a few µs on a shared machine) the two
#   columns can disagree. By the speed-ups, each model's int8-pixels and float32 rows are within a
#   microsecond of each other (which one leads changed between runs of this notebook), and dynamic int8, static
#   int8 and 4-bit are slower than float32 (they quantize the input, or decode the codes, on every call). At
#   this size a call's fixed cost, not arithmetic, sets the time (exercise 4 measures the cost of a call
#   that does almost nothing). PyTorch eager pays more per layer (Python and dispatch), which is why the
#   ONNX Runtime rows beat the teacher by 2.8x to 6.5x, and PyTorch's legacy int8 backend is
#   *slower* than float32: like ONNX Runtime's dynamic int8 it measures and quantizes the input on every
#   call, but each of its quantized layers pays PyTorch's per-operator overhead.
# - **The runtime's share.** The teacher itself, unchanged, is about 3.5x faster in ONNX Runtime than in PyTorch
#   at batch 1 and 1.1x at batch 256. Against it, the last two lines: what compression alone buys on one
#   runtime is modest at batch 1 (1.8x for the narrow int8-pixels model, held down by the call's fixed
#   cost) and large at batch 256 (8.5x).
#   A speed-up quoted against another runtime mixes the two; ask which one you are reading.
#
# Last, the bytes. The `.dcmp` file (notebook 05's format: sparse, packed, entropy-coded) against the
# smallest ONNX file of each model, the `int8-pixels` one:

# %%
for name in ("final", "narrow"):
    dcmp_bytes = storage.save(sources[name], folder / f"{name}.dcmp", compress="auto")
    smallest = file_bytes[f"{name}, ORT int8-pixels"]
    print(f"{name:>6}: .dcmp {dcmp_bytes:6,} bytes, int8-pixels ONNX {smallest:6,} bytes ({smallest / dcmp_bytes:.2f}x)")

# %% [markdown]
# The 90%-sparse final model's ONNX file is several times its `.dcmp`: the runtime's kernels are dense,
# so its file stores every zero weight in 4 bits, where the `.dcmp` file stores only where the nonzero
# ones are. The narrow student has few zeros to skip, and its runtime file comes within 1.5x of its
# `.dcmp` (the rest is mostly the `.dcmp` file's entropy coding, which ONNX files do not have). Sparsity buys
# storage and shipping; width buys storage, shipping *and* speed.
#
# **Energy, an estimate.** A laptop cannot meter one forward pass, so, as in notebooks 01 and 05, we
# estimate it from what each network computes and reads (`measure.energy_estimate`, Horowitz's 45 nm
# energies): a float32 multiply-add 4.6 pJ, an int8 one 0.3 pJ, and each weight byte read at the price of
# the smallest memory level that holds them all. The estimate follows the arithmetic, not the file: the
# float32 rows stand for the ONNX Runtime float32 files, the int8 rows for the int8 files (the int8-pixels
# file computes its small second layer in float32, about 1% of its multiply-adds), and the 4-bit rows for
# `MatMulNBits`, which multiplies in float32 (accuracy level 0) but reads its weights as it holds them,
# packed: 4 bits a weight plus the block scales (`deploy.held_bytes`):

# %%
by_arithmetic = {"teacher, float32": (reference, None),
                 "final, float32": (quantization.dequantize_model(final), None),
                 "final, 4-bit": (final, deploy.held_bytes(nbits_file)),
                 "final, int8": (candidates["final, PyTorch legacy int8"], None),
                 "narrow, float32": (quantization.dequantize_model(narrow), None),
                 "narrow, 4-bit": (narrow, deploy.held_bytes(folder / "narrow-t1-4bit.onnx")),
                 "narrow, int8": (int8.to_backend(quantization.dequantize_model(narrow), "legacy"), None)}
teacher_nj = [measure.energy_estimate(reference, batch_size=b)["total_nj"] for b in (1, 256)]
print(f"{'':>16} {'batch 1, nJ per image':>25} {'batch 256':>20}  weights read from")
for name, (model, held) in by_arithmetic.items():
    estimates = [measure.energy_estimate(model, batch_size=b, weight_bytes=held) for b in (1, 256)]
    nj = [estimate["total_nj"] for estimate in estimates]
    less = ["" if model is reference else f"({t / e:.0f}x less)" for t, e in zip(teacher_nj, nj)]
    print(f"{name:>16} {nj[0]:10,.0f} {less[0]:>14} {nj[1]:8,.0f} {less[1]:>11}  {estimates[0]['weight_level']}")

# %% [markdown]
# At batch 1 reading the weights costs more than multiplying them in every row but the 4-bit ones, so
# bytes are energy: int8 weights are a quarter of float32's, 4-bit ones held packed about a seventh (the
# block scales and padding add about a tenth of a byte a weight), and both the 4-bit
# weights and the narrow student's int8 ones are small enough for the 32 KB level, where each byte costs
# a fifth of a read from the 1 MB level. That is why the final model's 4-bit row (315 nJ) beats its int8
# row (656 nJ) at batch 1 although it multiplies in float32 (its reads are now the smaller part). At
# batch 256 the read is shared by 256
# images and the arithmetic's width decides: int8 wins. The levels are steps (31 KB and 51 KB of weights
# sit on either side of one), so read these ratios as orders of magnitude, not to the last digit. The estimate leaves out everything but the
# layers: at batch 1 the runtime's call, microseconds of a CPU core's time, is not in it (notebook 05
# asks what hardware built to compute on the compressed file itself would save).
#
# ## Pitfalls
#
# - **The `Gemm` trap.** Exporters write `nn.Linear` as `Gemm`; ONNX Runtime's dynamic int8 and 4-bit
#   quantizers convert only `MatMul` (and a few other) nodes and leave a `Gemm` float32 without an error. Check the operators
#   of every file you ship (`onnx_export.op_types`).
# - **A fixed batch size.** `torch.onnx.export` fixes the example's batch size unless you declare it
#   dynamic (`dynamic_axes`, or `dynamic_shapes` with `dynamo=True`); the graphs here declare a symbolic
#   "batch", and one file serves batch 1 and 256.
# - **External data files.** Large models keep their weights in a `.onnx.data` file beside the `.onnx`;
#   count it in the bytes (`deploy.onnx_bytes` does) and ship it with the graph.
# - **Contrib operators.** `MatMulNBits` and `MatMulIntegerToFloat` live in ONNX Runtime's own
#   `com.microsoft` domain: other runtimes may not run them. Standard ONNX's 4-bit form is the INT4 type
#   (opset 21), with `Cast` (as in `int8-pixels`) or blocked `DequantizeLinear`;
#   `to_onnx(..., fused=False)` writes `int8-pixels` in standard operators only.
# - **A call's small costs.** At batch 1 the call is the time, so its wrapping matters. In onnxruntime
#   1.32, handing `run_with_iobinding` your own `RunOptions` without the run option `gpu_graph_id` makes
#   the Python wrapper look the key up on every call, and the failed lookup raises and catches an
#   exception each time, at a cost that counts when a whole call takes microseconds. Passing no options
#   avoids it; `deploy.latency_ms` holds one `RunOptions` with that key set to its default, "0", which also
#   spares the runtime building a default one per call. Even then the 1.32 wrapper checks for WebGPU graph
#   capture on every call (earlier releases passed the call straight through to the C++ session), and
#   exercise 4 measures what that adds. `deploy.latency_ms` makes the call on the session's C++ object
#   (`ort_session.bound_call`), skipping those checks (a C or C++ server pays no Python at all);
#   `deploy.runtime_model(path, call="wrapper")` times the Python method instead, as a Python server
#   would pay it.
# - **int8 without VNNI can be wrong, not only slow.** ONNX Runtime multiplies uint8 activations by int8
#   weights; on a CPU without VNNI (AVX2 only, or AVX-512 before VNNI) its kernels add each pair of
#   products in a 16-bit register, and 2 x 255 x 127 = 64,770 does not fit in 32,767: the sums saturate
#   and the logits drift. So the int8 files here hold 7-bit weights (`reduce_range`, codes -64..64:
#   2 x 255 x 64 = 32,640 fits), and `int8-pixels` takes codes of at most 7 bits (4 here). The price is
#   a weight step twice as coarse on every CPU, VNNI ones included, where 8 bits would be exact (here
#   within a few images of 8 bits); the file then computes the same everywhere. ONNX Runtime can instead
#   widen 8-bit weights itself on those CPUs (session option `session.x64quantprecision`, a slower kernel).
#   README's run on an emulated AVX2-only CPU shows both sides: the package's files compute the same
#   logits there, bit for bit, while a control file with 8-bit weights moves them by up to 2.4.
#   `int8.kernel_saturates()` tells whether PyTorch's int8 kernel saturates on yours. It probes PyTorch's
#   kernel only, and says nothing about ONNX Runtime's: on that emulated CPU PyTorch's did not saturate
#   while ONNX Runtime's 8-bit control drifted.
# - **Dynamic int8 depends on the batch.** Its activation range is measured over the whole input tensor,
#   so one image's logits change with its batch-mates: evaluate at the batch size you serve.
# - **int8 slower than float32** at batch 1 (PyTorch's legacy backend above).
# - **Fewer MACs, no less time**: compaction's gather (section 4).
# - **Timing several runtimes in one process**: after a call, ONNX Runtime's pool threads (and PyTorch's
#   OpenMP threads) keep spinning for a while, waiting for more work, and a session that has run keeps
#   waking its threads up; on a two-core machine they take cores from whatever is timed next. So
#   `deploy.latency_ms` times a fresh session of the file and drops it when the call returns,
#   `deploy.compare_latency` rests 0.1 s between models when more than one thread is in play, and the
#   sessions this notebook uses only to score accuracy run on one thread (no pool at all); or time each
#   runtime in its own process.
# - **Quantizing what is already quantized**: a float32 graph handed to an int8 quantizer rounds its
#   input on every call, even when that input was 8-bit pixels a moment ago; fold the normalisation into
#   the first layer instead (`int8-pixels`).

# %% [markdown]
# ## Exercises
#
# Six exercises. In 1-3 and 6 you write the core of an idea into a stub and the next cell checks it on
# hidden cases (`tutorial_utils.exercises_deploy`), naming the failing case, the expected and the returned
# value, and a hint; 4 and 5 are experiments to write yourself. Each ends with a question: answer it in the cell
# below.
#
# **Exercise 1 (pack 4-bit codes).** Write `my_pack(codes, block_size)`: unsigned codes (N, K) with values
# 0..15 -> uint8 (N, ceil(K / block_size), block_size // 2), padded with code 8, the even-indexed code in
# the low four bits. Then swap the two nibbles in your solution and read which case the check names. Why
# pad with code 8 and not 0?

# %% nbgrader={"grade": false, "grade_id": "ex1-pack", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_pack(codes: torch.Tensor, block_size: int) -> np.ndarray:
    """uint8 (N, blocks, block_size // 2): two 4-bit codes per byte, code 2i in the low nibble."""
    ### BEGIN SOLUTION
    n, k = codes.shape
    blocks = -(-k // block_size)
    padded = torch.full((n, blocks * block_size), 8, dtype=torch.uint8)
    padded[:, :k] = codes.to(torch.uint8)
    pairs = padded.reshape(n, blocks, block_size // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).numpy()
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex1-pack-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_deploy.check_pack_4bit(my_pack)

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex1-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The runtime decodes w = (u - 8) * scale, so u = 8 is the weight 0: padding adds nothing to the sum.
# Code 0 would be the weight -8 * scale, multiplied by whatever the runtime puts in the padded inputs.
# </details>

# %% [markdown]
# **Exercise 2 (read the codes back from the file).** Write `my_unpack(packed, k)`, the runtime's side:
# from the packed bytes (N, blocks, block_size // 2) back to the unsigned codes (N, k). The next cell
# then loads the 4-bit file with `onnx.load`, takes the first layer's codes and scales (initializers
# `codes0` and `scales0`), decodes the first row into weights, w = (u - 8) * scale, and compares them with
# `final[0].weight`. What does it mean that they are equal bit for bit?

# %% nbgrader={"grade": false, "grade_id": "ex2-unpack", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_unpack(packed: np.ndarray, k: int) -> torch.Tensor:
    """The unsigned codes (N, k) that `my_pack` packed: low nibble first, blocks flattened, padding cut."""
    ### BEGIN SOLUTION
    packed = torch.as_tensor(packed)
    unsigned = torch.stack([packed & 15, packed >> 4], dim=-1)        # (N, blocks, bytes, 2): low nibble first
    return unsigned.reshape(packed.shape[0], -1)[:, :k]               # blocks flattened, padding cut off
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex2-unpack-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_deploy.check_unpack_4bit(my_unpack)
stored = {t.name: onnx.numpy_helper.to_array(t).copy() for t in onnx.load(str(nbits_file)).graph.initializer}
row_0 = (my_unpack(stored["codes0"], 784)[0].float() - 8) * float(stored["scales0"][0, 0])
assert torch.equal(row_0, final[0].weight[0])

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex2-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The weights decoded from the file are bit for bit the QAT model's: the file holds its codes and its
# (float16-exact) scales, nothing was re-quantized on the way. That is what makes the 4-bit deployment
# compute the QAT model's function.
# </details>

# %% [markdown]
# **Exercise 3 (compact dead hidden units).** Write the rule `compaction.compact` applies to hidden
# units, for one hidden layer: given a pruned Linear-ReLU-Linear, return a smaller one with the same logits. A hidden unit j whose outgoing column
# W2[:, j] is all zero is never used: drop it. A unit whose incoming row W1[j, :] is all zero outputs the
# constant relu(b1_j): add W2[:, j] * relu(b1_j) to b2, then drop it. Keep every input (as
# `compaction.compact(model, inputs=False)`), return `nn.Linear` layers, and leave the input model unchanged.
# Why does the rule need the ReLU in relu(b1_j)?

# %% nbgrader={"grade": false, "grade_id": "ex3-compact", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_compact(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """A smaller Linear-ReLU-Linear computing the same logits as `model` (dead hidden units removed)."""
    ### BEGIN SOLUTION
    first, last = model[0], model[2]
    with torch.no_grad():
        unused = (last.weight == 0).all(dim=0)                        # (hidden,): nobody reads the unit
        constant = (first.weight == 0).all(dim=1) & ~unused            # (hidden,): reads nothing, relu(b) always
        keep = (~(unused | constant)).nonzero().flatten()
        small = torch.nn.Sequential(torch.nn.Linear(first.in_features, len(keep)), torch.nn.ReLU(),
                                    torch.nn.Linear(len(keep), last.out_features))
        small[0].weight.copy_(first.weight[keep])
        small[0].bias.copy_(first.bias[keep])
        small[2].weight.copy_(last.weight[:, keep])
        small[2].bias.copy_(last.bias + last.weight[:, constant] @ torch.relu(first.bias[constant]))
    return small
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex3-compact-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_deploy.check_compact_hidden(my_compact)
dense_final = quantization.dequantize_model(final)                    # float weights with the codes' values
mine = my_compact(dense_final)
with torch.no_grad():
    gap = (mine(splits.x_test) - dense_final(splits.x_test)).abs().max().item()
print(f"final model: {models.layer_sizes(dense_final)} -> {models.layer_sizes(mine)}, largest logit difference {gap:.1e}")

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex3-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# The unit's output is relu(W1[j, :] x + b1_j) = relu(b1_j) for every input: a unit with a negative bias
# outputs 0 and contributes nothing, one with a positive bias adds W2[:, j] * b1_j to every logit. Folding
# b1_j without the ReLU would add a wrong constant for negative biases; the check has one of each. The
# package's `compaction.compact` repeats the rule until nothing changes, across every layer, and also
# drops input pixels that no weight reads.
# </details>

# %% [markdown]
# **Exercise 4 (a call's fixed cost, and accuracy level 4).** Time at batch 1, side by side
# (`deploy.compare_latency`, which takes `deploy.latency_ms` in rounds), the narrow student's float32
# file (section 5's `export_all` wrote it; `deploy.runtime_model(path)` loads a file) and a graph with a
# single tiny Linear layer (`models.mlp([784, 1])`, exported the same way):
# how much of the narrow student's batch-1 time is the call itself? Time the narrow file once more through
# onnxruntime's Python method (`deploy.runtime_model(path, call="wrapper")`): what does the wrapper add,
# and what share of the call is that? Then write the final model's 4-bit
# graph with `onnx_export.to_onnx(final, weights="4bit", accuracy_level=4)`, save
# `proto.SerializeToString()` to a file, load it with `deploy.runtime_model` and compare its logits and its
# latency at batch 256 with accuracy level 0, side by side (`deploy.compare_latency`). What did you find?

# %% nbgrader={"grade": false, "grade_id": "ex4-measure", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
tiny_file = folder / "one-unit.onnx"
deploy.export(models.mlp([784, 1]), tiny_file, "float32")
narrow_file = candidates["narrow, ORT float32"].path
call_cost = deploy.compare_latency({"one unit": deploy.runtime_model(tiny_file, threads=1),
                                    "narrow float32": candidates["narrow, ORT float32"],
                                    "narrow float32, Python wrapper": deploy.runtime_model(narrow_file, call="wrapper")},
                                   1, threads=1, rounds=5)
print({name: f"{row['latency_ms'] * 1e3:.1f} µs" for name, row in call_cost.items()}, "at batch 1, 1 thread")
level_4_file = folder / "final-4bit-level4.onnx"
level_4_file.write_bytes(onnx_export.to_onnx(final, weights="4bit", accuracy_level=4).SerializeToString())
level_4 = deploy.runtime_model(level_4_file, threads=1)
shift = (level_4(splits.x_test) - nbits_runtime(splits.x_test)).abs()
changed = (level_4(splits.x_test).argmax(1) != nbits_runtime(splits.x_test).argmax(1)).sum().item()
by_level = deploy.compare_latency({"level 0": nbits_runtime, "level 4": level_4}, 256, threads=1, rounds=5)
print(f"level 4 moves the logits by {shift.mean():.2f} on average, {shift.max():.2f} at most, and changes {changed} of "
      f"{len(shift):,} predictions; at batch 256:", {n: f"{r['latency_ms'] * 1e3:.0f} µs" for n, r in by_level.items()})
### END SOLUTION

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex4-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>What to look for</summary>
#
# The solution cell above, in this run (one thread): the one-unit graph took 2.9 µs at batch 1 and the
# narrow student 3.6 µs, so about four fifths of its time is the call. Through onnxruntime's Python method
# the same narrow file took 4.4 µs: the wrapper's extra work, mostly its checks, added 0.8 µs a call,
# more than everything the narrow student adds to the one-unit call (0.7 µs). One five-round run can move
# by a microsecond between runs of this notebook; README's benchmark, three passes of nine rounds, also
# puts the wrapper's cost at about 0.8 µs. Either way, at batch 1 a Python server
# can pay as much for the wrapper as for the model. Accuracy level 4 rounds the input
# to int8 per block, so the logits move (by 0.04 on average, 0.27 at most; none of the 1,000 predictions
# changed here), and at batch 256 it was *slower* than level 0, about twice as slow here (350 against
# 174 µs, side by side; on an AMD EPYC, about 280 against 240 µs): whether it is faster depends on the
# CPU's int8 kernels for this shape, so measure before choosing it.
# </details>

# %% [markdown]
# **Exercise 5 (width against accuracy).** Change `amount=0.5` in section 4 to 0.75 (784-16-10). Does the
# speed-up at batch 256 grow as fast as the multiply-adds shrink? Before you believe an accuracy
# difference, compare over three seeds on held-out data: retrain the students on `splits.holdout(500)`
# (notebook 01) and score them on its 500 held-out images. The teacher must not have seen those images
# either (notebook 04), and the big teacher this notebook distils from saw them: distil from
# `teachers.cache_all(splits, names=teachers.HELD_OUT)["784-1200-1200-10, held-out split"]` (after
# `from tutorial_utils import teachers`), trained without them. What did the seeds say?

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex5-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>What to look for</summary>
#
# Expect the time to fall more slowly than the multiply-adds (a 16-unit layer leaves the kernel little
# work to hide its fixed costs) and accuracy to drop as the width shrinks; measure both before you believe
# either. Whether 16 units are within the noise of 32 is what the three seeds decide.
# </details>

# %% [markdown]
# **Exercise 6 (fold the normalisation).** Write `my_fold(layer, mean, std)` for a layer of symmetric
# codes: `layer.codes` is an int32 tensor (N, K), `layer.scale` holds one scale per row, shape (N, 1), or
# one for the whole layer, shape (), and the weights are W = scale * codes row by row; `layer.bias` is
# (N,). Return torch tensors `codes_t` (K, N), still integers, and `scale` and `bias` of shape (N,) such
# that `pixels @ codes_t * scale + bias` equals `layer((pixels / 255 - mean) / std)` for uint8 pixels, and
# leave the layer unchanged. The check tries 4- and 7-bit codes, both kinds of scale, and a black image
# (which leaves only the bias). Then
# look back at section 5: the teacher was timed on input already normalised to float32, the int8-pixels
# file on uint8 pixels. Which side does that favour, and by how much work?

# %% nbgrader={"grade": false, "grade_id": "ex6-fold", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_fold(layer: torch.nn.Module, mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes_t (K, N) integers, scale (N,), bias (N,)) of the layer applied to raw pixels 0..255."""
    ### BEGIN SOLUTION
    codes = layer.codes.long()                                        # (N, K)
    row_scale = layer.scale.double().reshape(-1).expand(codes.shape[0])
    bias = layer.bias.double() - mean / std * row_scale * codes.sum(dim=1)
    return codes.T, row_scale / (255 * std), bias
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex6-fold-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises_deploy.check_fold_pixels(my_fold)
codes_t, scale, bias = (torch.as_tensor(v) for v in my_fold(final[0], data.MEAN, data.STD))
mine = (pixels @ codes_t.long()) * scale + bias                                 # section 3's test-image pixels
assert torch.allclose(mine.float(), final[0](splits.x_test), atol=1e-4)

# %% [markdown] nbgrader={"grade": true, "grade_id": "ex6-answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Solution and discussion</summary>
#
# It favours the teacher: its input arrived already divided, shifted and scaled, one float32 pass over
# every pixel (784 subtract-and-multiply steps and 3,136 bytes written per image) that its timing leaves
# out, while the int8-pixels file does the whole job from the stored image (the normalisation is folded
# into the one scale and one bias per hidden unit it applies anyway). That pass is small next to the
# teacher's 101,632 multiply-adds per image, so a service-level comparison would move the ratio a little,
# in the pixel file's favour.
# </details>

# %% [markdown]
# ## Summary
#
# - An MLP is written to ONNX as MatMul + Add per layer with a symbolic batch; ONNX Runtime reproduces
#   PyTorch's logits to float rounding, and `MatMulNBits` computes the QAT model's function from its own
#   4-bit codes (to about 1e-5).
# - int8 deployments (dynamic, or static with calibration) agree with the QAT model on almost every
#   image; how much time they save over float32 at large batches depends on the CPU (on this one, about a
#   fifth for the final model, and the narrow student's ran slower; on an AMD EPYC, about a half and a
#   third).
# - An 8-bit input needs no quantizing: folding the pixels' normalisation into the first layer lets the
#   QAT codes meet the raw image in one exact integer product (`int8-pixels`), the fastest deployment
#   at batch 256 on this CPU and still the QAT model's function.
# - Part of every speed-up over PyTorch is the runtime: compare with the teacher in ONNX Runtime to see
#   what compression alone buys.
# - Sparsity shrinks the stored file, not a dense kernel's work; compaction removes dead inputs and units
#   (fewer MACs), but here its gather cost more time than it saved. Narrower layers (structured pruning) are
#   what a dense kernel can turn into speed.
# - At batch 1 a call's fixed cost dominates: a few microseconds, most of them the call itself, and from
#   Python onnxruntime 1.32's wrapper adds about a microsecond more (exercise 4).
# - In the energy estimate, narrow int8 layers save the most: fewer and smaller weight reads, cheaper
#   multiply-adds. At batch 1 weight bytes dominate, so 4-bit weights read packed save too, even
#   multiplied in float32.
#
# ## Further reading
#
# - ONNX Runtime documentation: "Quantize ONNX models" (dynamic and static QDQ quantization) and the
#   contrib operator reference for `MatMulNBits` (github.com/microsoft/onnxruntime, docs/ContribOperators.md).
# - Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
#   Inference", CVPR 2018: the int8 scheme these kernels follow.
# - Williams, Waterman and Patterson, "Roofline: an insightful visual performance model", CACM 2009.
# - Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural Network", ISCA 2016: hardware
#   that does skip the zeros.
