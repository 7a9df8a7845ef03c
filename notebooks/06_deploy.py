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
# Notebook 05 ended with a file 68 times smaller than the teacher's, which only this package can read,
# and a deployment on PyTorch's deprecated int8 backend that was barely faster. Here the student leaves
# the package: it becomes an ONNX file, a standard format that ONNX Runtime (and many other runtimes)
# execute, in float32, in int8 and with its own 4-bit QAT codes. Then we ask the question a user asks:
# how much faster than the teacher is it, at batch 1 and at batch 256, on *this* CPU?
#
# **What you will learn**
# - how an MLP becomes an ONNX graph, and why `MatMul` + `Add` rather than the `Gemm` that exporters emit;
# - how 4-bit codes are packed for ONNX Runtime's `MatMulNBits` so that the runtime computes exactly
#   the QAT model's function (checked, logit by logit);
# - int8 by ONNX Runtime's quantizers (dynamic, and static with calibration on training images);
# - compaction: removing the inputs and units that pruning left dead, and why that saves multiply-adds
#   but not always time; structured pruning to a narrower network, which does save time;
# - latency side by side at batch 1 and 256, against the machine's measured peak, and what limits it.
#
# **Prerequisites**: notebooks 02, 03 and 05, and `pip install -e ".[deploy]"` (onnx, onnxruntime;
# included in the test extra). About 25 s on a laptop CPU with the teachers cached.

# %%
import numpy as np
import torch

from tutorial_utils import (compaction, data, deploy, distillation, exercises, files, int8, machine, measure, models,
                            onnx_export, quantization, recipes, timing, training, validate)

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
student = distillation.train_student(splits, teacher=teacher, seed=SEED, epochs=EPOCHS)
final = recipes.compress(student, splits, sparsity=SPARSITY, quant=BITS, teacher=teacher, seed=SEED)  # notebook 05's chain
print(machine.describe(machine.record(threads=THREADS)))
print(f"final model: {models.layer_sizes(final)}, accuracy {training.evaluate(final, splits.x_test, splits.y_test):.2%}")

# %% [markdown]
# The final model is notebook 05's, rebuilt with the same seeds (every stage reseeds when it starts).
#
# ## 1. An MLP as an ONNX graph
#
# An ONNX file is a graph of named operators with the weights stored inside. A Linear layer computes
# `y = x W^T + b`, which is two operators, `MatMul(x, W^T)` and `Add(., b)`. PyTorch's exporter writes
# the pair as one `Gemm` node; that is correct, but ONNX Runtime's 4-bit quantizer converts only
# `MatMul` nodes and silently leaves a `Gemm` in float32. `onnx_export.to_onnx` writes the layers
# itself, so the graph holds exactly what we put in it, with a symbolic batch dimension:

# %%
proto = onnx_export.to_onnx(quantization.dequantize_model(final))
print("operators:", onnx_export.op_types(proto))
print("input:", proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param, "x",
      proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value)
float_file = folder / "final-float32.onnx"
float_bytes = deploy.export(quantization.dequantize_model(final), float_file)
runtime = deploy.runtime_model(float_file, threads=THREADS)
difference = (runtime(splits.x_test) - final(splits.x_test)).abs().max().item()
print(f"{float_bytes:,} bytes; largest logit difference to PyTorch on 1,000 test images: {difference:.1e}")
assert difference < 1e-4

# %% [markdown]
# The runtime computes the same logits as PyTorch up to float rounding (sums in another order). The
# file holds the float32 weights, zeros included: about 204 KB for a model whose `.dcmp` file in
# notebook 05 is 6,002 bytes.
#
# ## 2. The QAT codes themselves, 4 bits each
#
# `MatMulNBits` (an ONNX Runtime operator) stores each weight row in blocks of `block_size` codes, two
# codes per byte, the first in the low four bits, and one scale per block:
# `w = (u - 8) * scale`, u in 0..15. Our symmetric 4-bit codes c lie in -7..7, so u = c + 8, and every
# block of a row gets that row's scale. Packing by hand, for one row of ten codes and blocks of 16:

# %%
codes = torch.tensor([[-7, -1, 0, 1, 7, 3, -3, 0, 2, -2]])
unsigned = codes + 8                                          # (1, 10), values 1..15
padded = torch.full((1, 16), 8)                               # pad the block with u = 8: weight 0
padded[:, :10] = unsigned
pairs = padded.reshape(1, 1, 8, 2)                            # (rows, blocks, bytes, 2 codes)
by_hand = (pairs[..., 0] | (pairs[..., 1] << 4)).to(torch.uint8)
print(by_hand.tolist())
assert np.array_equal(by_hand.numpy(), onnx_export.pack_4bit(unsigned, 16))

# %%
nbits_file = folder / "final-4bit.onnx"
nbits_bytes = deploy.export(final, nbits_file, "4bit")
nbits = deploy.runtime_model(nbits_file, threads=THREADS)
difference = (nbits(splits.x_test) - final(splits.x_test)).abs().max().item()
print("operators:", onnx_export.op_types(onnx_export.to_onnx(final, weights="4bit")))
print(f"{nbits_bytes:,} bytes; largest logit difference to the QAT model: {difference:.1e}")
assert difference < 1e-4

# %% [markdown]
# The 4-bit graph reproduces the QAT model (the differences are float rounding), in a file 6.5 times
# smaller than the float32 one. It is still five times notebook 05's `.dcmp` file: the runtime's kernel is dense,
# so each of the 90% zero weights costs 4 bits, and each block carries a float32 scale. A sparse file
# is for storing and shipping; a dense low-bit file is what a fast kernel reads.
#
# ## 3. int8 by ONNX Runtime's own quantizers
#
# ONNX Runtime quantizes a float32 graph in two ways: *dynamic* (int8 weights per output channel; the
# activations' range is measured on every batch, at run time) and *static* (the activations' ranges are
# fixed beforehand on calibration images, here 1,000 training images, and written into the graph as
# QuantizeLinear/DequantizeLinear pairs). Both start from the dequantized 4-bit weights:

# %%
deployments = deploy.export_all(final, folder, stem="final", threads=THREADS, calibration=splits.x_train[:1000])
for kind, entry in deployments.items():
    logits = entry["model"](splits.x_test)
    agreement = (logits.argmax(1) == final(splits.x_test).argmax(1)).float().mean().item()
    print(f"{kind:>13}: {entry['bytes']:>7,} bytes, accuracy {training.evaluate(entry['model'], splits.x_test, splits.y_test):.2%}, "
          f"same prediction as the QAT model on {agreement:.1%} of test images, largest logit difference "
          f"{(logits - final(splits.x_test)).abs().max().item():.2f}")
    assert agreement >= 0.98

# %% [markdown]
# The int8 graphs round the activations too, so their logits move by a few tenths, and they agree with
# the QAT model on all but a few of the 1,000 test images; the accuracies differ by a few images either
# way, which is noise.
#
# ## 4. Compaction: what pruning left dead
#
# Magnitude pruning removed 90% of the weights one by one. Some *whole* pieces went with them: input
# pixels whose every weight is zero (MNIST's border pixels are never ink, so training never grew their
# weights), and possibly hidden units. `compaction.compact` drops them and returns a smaller dense
# network with the same function:

# %%
small = compaction.compact(final)
print(f"{models.layer_sizes(final)} -> {models.layer_sizes(small)} (first the kept inputs): "
      f"{compaction.dead_units(final)} removed")
print(f"MACs per image: {measure.macs(final):,} -> {measure.macs(small):,}")
assert torch.allclose(small(splits.x_test), final(splits.x_test), atol=1e-4)
small_file = folder / "compact-4bit.onnx"
deploy.export(small, small_file, "4bit")
compact_runtime = deploy.runtime_model(small_file, threads=THREADS)
gather = deploy.compare_latency({"full": nbits, "compact": compact_runtime}, 256, threads=THREADS, rounds=3)
print({name: f"{row['latency_ms'] * 1e3:.0f} us" for name, row in gather.items()})

# %% [markdown]
# A third of the pixels were dead, so a third of the first layer's multiply-adds go. But look at the
# time: the compact graph must first *gather* the kept pixels from each image (a `Gather` on scattered
# columns), and that copy costs the runtime more than the multiply-adds it saves. Fewer operations are
# not less time unless the kernel profits from the change. What a dense kernel profits from is a
# narrower matrix: **structured pruning** removes whole hidden units (`recipes.narrow`: the weakest half
# of the 64 units by the norm of their incoming weights, then five epochs of distillation), and then we
# train it through the 4-bit quantizer as before, without magnitude pruning:

# %%
narrow = recipes.narrow(student, splits, amount=0.5, teacher=teacher, seed=SEED)          # 784-32-10
narrow = recipes.quantize_aware(narrow, splits, quant=BITS, teacher=teacher, seed=SEED)
narrow_deployments = deploy.export_all(narrow, folder, stem="narrow", threads=THREADS, calibration=splits.x_train[:1000])
for name, model in (("reference teacher", reference), ("final (90% sparse)", final), ("narrow 784-32-10", narrow)):
    print(f"{name:>18}: {training.evaluate(model, splits.x_test, splits.y_test):.2%}, {measure.macs(model):,} MACs")

# %% [markdown]
# ## 5. Latency, side by side
#
# Every candidate is timed in rounds, each round timing each candidate once (so a slow moment of this
# shared machine hits them all), and each ratio is taken within a round against the teacher in PyTorch
# eager float32. ONNX Runtime is timed as a server would call it, with the input and output buffers bound
# once; PyTorch is timed calling `model(x)` on a prebuilt tensor.

# %%
candidates = {"teacher, PyTorch float32": reference, "student, PyTorch float32": student,
              "final, PyTorch legacy int8": int8.to_backend(quantization.dequantize_model(final), "legacy"),
              **{f"final, ORT {kind}": entry["model"] for kind, entry in deployments.items()},
              **{f"narrow, ORT {kind}": entry["model"] for kind, entry in narrow_deployments.items()}}
peak = timing.peak_gflops(threads=THREADS)
table = {batch: deploy.compare_latency(candidates, batch, threads=THREADS, rounds=3, repeats=50) for batch in (1, 256)}
macs = {name: measure.macs(reference if name.startswith("teacher") else student if name.startswith("student")
                           else final if name.startswith("final") else narrow) for name in candidates}
print(f"{machine.describe(machine.record(threads=THREADS))}; float32 peak {peak:.0f} GFLOP/s")
print(f"{'':30} {'batch 1':>20} {'batch 256':>20} {'of peak at 256':>15}")
for name in candidates:
    one, many = table[1][name], table[256][name]
    achieved = 2 * macs[name] * 256 / (many["latency_ms"] / 1e3) / 1e9
    print(f"{name:30} {one['latency_ms'] * 1e3:7.1f} us ({one['speedup']:4.1f}x) {many['latency_ms'] * 1e3:7.1f} us "
          f"({many['speedup']:4.1f}x) {achieved / peak:14.0%}")

# %% [markdown]
# Read the table for *your* CPU; here (AMD EPYC with AVX-512 VNNI, two cores):
#
# - **Batch 256**: int8 is where the speed is. ONNX Runtime's int8 kernels use the CPU's integer
#   dot-product instructions (VNNI here; on AVX2-only CPUs they are slower, and Intel's AMX is faster
#   still), and the narrow student has half the multiply-adds of the final one. The narrow student in
#   int8 is the fastest row, several times faster than the teacher (README's benchmark, over repeated
#   rounds at 1 and 2 threads, puts it at 7.1x at 1 thread). The "of peak" column can pass 100%: the
#   peak is float32's, and int8 does four times as much work per instruction.
# - **Batch 1**: everything takes a few microseconds, and the 4-bit and int8 kernels are *not* faster
#   than float32. One call into ONNX Runtime costs about 2.6 µs even for a graph that only applies a
#   ReLU; at this size the overhead, not the arithmetic, sets the time. PyTorch eager pays more per layer
#   (Python and dispatch), which is why every ONNX Runtime row beats the teacher by about 3 to 5x, and
#   PyTorch's legacy int8 backend, which quantizes the input on every call, is *slower* than float32.
# - 4-bit `MatMulNBits` at accuracy level 0 decodes the codes to float32 and multiplies in float32: the
#   smallest file, not the fastest kernel. (Accuracy level 4 lets it round the input to int8 and use
#   integer kernels; that changes the function, and on this CPU, measured separately, it was slower at
#   batch 256.)
#
# ## Pitfalls
#
# - **The `Gemm` trap.** Exporters write `nn.Linear` as `Gemm`; ONNX Runtime's 4-bit quantizer converts
#   only `MatMul` and leaves a `Gemm` float32 without an error. Check the operators of every file you ship
#   (`onnx_export.op_types`).
# - **A fixed batch size.** `torch.export` specializes the graph on the example's batch size unless
#   dynamic shapes are declared; the graph here declares the batch dimension symbolic ("batch"), and
#   one file serves batch 1 and 256.
# - **External data files.** Large models keep their weights in a `.onnx.data` file beside the `.onnx`;
#   count it in the bytes (`deploy.onnx_bytes` does) and ship it with the graph.
# - **int8 slower than float32** at batch 1 (PyTorch's legacy backend above): quantizing the input on
#   every call costs more than the int8 arithmetic saves on a tiny matrix.
# - **Fewer MACs, no less time**: compaction's gather (section 4).
# - **Timing several runtimes in one process**: ONNX Runtime's idle threads spin, waiting for work, and
#   take cores from whatever runs next; on two cores the 2-thread rows vary from run to run.
#
# ## Exercises
#
# **1. Pack 4-bit codes.** Write `my_pack(codes, block_size)`: unsigned codes (N, K) with values 0..15 ->
# uint8 (N, ceil(K / block_size), block_size // 2), padded with code 8, the even-indexed code in the low
# four bits.

# %%
def my_pack(codes: torch.Tensor, block_size: int) -> np.ndarray:
    n, k = codes.shape
    blocks = -(-k // block_size)
    padded = torch.full((n, blocks * block_size), 8, dtype=torch.uint8)
    padded[:, :k] = codes.to(torch.uint8)
    pairs = padded.reshape(n, blocks, block_size // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).numpy()


exercises.check_pack_4bit(my_pack)

# %% [markdown]
# <details><summary>Why pad with 8 and not 0?</summary>
#
# The runtime decodes w = (u - 8) * scale, so u = 8 is the weight 0: padding adds nothing to the sum.
# Code 0 would add -8 * scale times whatever the padded input is (the runtime pads x with zeros, but a
# file must not rely on that).
# </details>
#
# **2. Read the codes back.** Write `my_unpack(packed, k)`, the runtime's side: from the packed bytes
# (N, blocks, block_size // 2) back to the unsigned codes (N, k). Then decode the first row of the final
# model's 4-bit file into weights, w = (u - 8) * scale, and compare them with `final[0].weight`.

# %%
def my_unpack(packed: np.ndarray, k: int) -> torch.Tensor:
    packed = torch.as_tensor(packed)
    unsigned = torch.stack([packed & 15, packed >> 4], dim=-1)        # (N, blocks, bytes, 2): low nibble first
    return unsigned.reshape(packed.shape[0], -1)[:, :k]               # blocks flattened, padding cut off


exercises.check_unpack_4bit(my_unpack)
first_layer = onnx_export.nbits_inputs(final[0], onnx_export.block_size_for(784))
row_0 = (my_unpack(first_layer[0], 784)[0].float() - 8) * float(first_layer[1][0, 0])
assert torch.equal(row_0, final[0].weight[0])

# %% [markdown]
# **3. Your CPU.** Run section 5 with `DC_THREADS=1`, then read your CPU's flags in the first output
# line. Which rows change most between one and two threads, and why do the batch-1 rows hardly change?
#
# <details><summary>What to look for</summary>
#
# At batch 256 the work splits over threads, so the float32 rows get nearly twice as fast with two; at
# batch 1 there is too little work to split, and the time is the call overhead. Without VNNI (AVX2 only)
# the int8 rows lose much of their lead at batch 256.
# </details>
#
# **4. Width against accuracy.** Change `amount=0.5` in section 4 to 0.75 (784-16-10). Does the
# speed-up at batch 256 grow as fast as the multiply-adds shrink? Compare the accuracy over three seeds
# on `splits.holdout(500)` before you believe a difference (notebook 01).
#
# ## Summary
#
# - An MLP is written to ONNX as MatMul + Add per layer with a symbolic batch; ONNX Runtime reproduces
#   PyTorch's logits to float rounding, and `MatMulNBits` runs the QAT model's own 4-bit codes exactly.
# - int8 deployments (dynamic, or static with calibration) agree with the QAT model on almost every
#   image; int8 is the fast path at large batches on a CPU with integer dot-product instructions.
# - Sparsity shrinks the stored file, not a dense kernel's work; compaction removes dead inputs and units
#   (fewer MACs) but its gather can cost more than it saves. Narrower layers (structured pruning) are
#   what dense kernels turn into speed.
# - At batch 1 the runtime's call overhead dominates: a few microseconds, whatever the format.
#
# ## Further reading
#
# - ONNX Runtime documentation: quantization (dynamic, static QDQ) and the `MatMulNBits` contrib operator.
# - Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
#   Inference", CVPR 2018: the int8 scheme these kernels follow.
# - Williams, Waterman and Patterson, "Roofline: an insightful visual performance model", CACM 2009.
# - Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural Network", ISCA 2016: hardware
#   that does skip the zeros.
