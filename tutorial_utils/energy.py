"""An energy *estimate* for one inference, from operation counts and published per-operation energies.

Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm: 32-bit float mult 3.7 pJ + add 0.9 pJ;
8-bit int mult 0.2 pJ + add 0.03 pJ; 32-bit SRAM read 5 pJ; 32-bit DRAM read 640 pJ. It is an
estimate for teaching where energy goes (arithmetic width, memory level), not a measurement.

Example:
    >>> energy_estimate(model)["total_nj"]
"""

from __future__ import annotations

from torch import nn

# Energy per operation at 45 nm, in picojoules (M. Horowitz, "Computing's energy problem", ISSCC 2014).
PJ = {"int8_add": 0.03, "int8_mult": 0.2, "fp32_add": 0.9, "fp32_mult": 3.7, "sram_read_32bit": 5.0,
      "dram_read_32bit": 640.0}


def _linear_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "in_features") and hasattr(m, "out_features")]


def energy_estimate(model: nn.Module, *, weight_bytes: int | None = None, sram_bytes: int = 64 * 1024) -> dict:
    """An *estimate* of the energy of one inference (batch 1), from operation counts and Horowitz's 45 nm
    energies (ISSCC 2014): 32-bit float mult 3.7 pJ + add 0.9 pJ; 8-bit int mult 0.2 pJ + add 0.03 pJ;
    32-bit SRAM read 5 pJ; 32-bit DRAM read 640 pJ.

        compute     = sum over layers of in * out MACs x (mult + add) at the layer's precision
        weights     = weight_bytes / 4 reads, from SRAM if weight_bytes <= sram_bytes, else from DRAM
        activations = sum over layers of (in + out) 32-bit SRAM accesses

    Assumptions: dense hardware (zeros are multiplied too); layers with codes of <= 8 bits run 8-bit
    integer arithmetic, others float32; weights are read once per inference with no reuse;
    weight_bytes defaults to 4 bytes per float weight and bits/8 per quantized one, and is best
    given as the real file size. Returns picojoule components, the total in nanojoules, and the
    assumptions as text.
    """
    layers = _linear_layers(model)
    if not layers:
        raise TypeError(f"model of type {type(model).__name__} has no Linear layers")
    compute = 0.0
    implied_bytes = 0.0
    for layer in layers:
        bits = getattr(getattr(layer, "qweight", None), "bits", 32)
        kind = "int8" if bits <= 8 else "fp32"
        compute += layer.in_features * layer.out_features * (PJ[f"{kind}_mult"] + PJ[f"{kind}_add"])
        implied_bytes += layer.in_features * layer.out_features * min(bits, 32) / 8
    weight_bytes = int(implied_bytes) if weight_bytes is None else weight_bytes
    on_chip = weight_bytes <= sram_bytes
    weights = weight_bytes / 4 * PJ["sram_read_32bit" if on_chip else "dram_read_32bit"]
    activations = sum(layer.in_features + layer.out_features for layer in layers) * PJ["sram_read_32bit"]
    return {"compute_pj": compute, "weights_pj": weights, "activations_pj": activations,
            "total_nj": (compute + weights + activations) / 1000,
            "assumptions": (f"estimate, Horowitz 45 nm energies; dense compute; weights ({weight_bytes:,} bytes) read "
                            f"once from {'on-chip SRAM' if on_chip else 'DRAM'} (SRAM assumed {sram_bytes // 1024} KB)")}
