"""Checkpoints you can trust: tensors with their SHA-256 and the key they were made for.

torch.load does not check a zip's CRCs, so a flipped bit in a cached checkpoint would load silently
as a different model. Each checkpoint here stores {"meta": key, "state_dict": tensors,
"sha256": digest of the tensors}; `load` refuses an entry made for another key, one whose digest does
not match, and one with NaN or infinite weights. Loading uses weights_only=True: no pickle code runs.

Example:
    >>> save(model, "teacher.pt", {"preset": "teacher", "seed": 0})
    >>> model.load_state_dict(load("teacher.pt", {"preset": "teacher", "seed": 0}))
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import torch
from torch import nn

from tutorial_utils import files


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of every tensor: what a checkpoint must reproduce."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save(model: nn.Module, path: str | os.PathLike, meta: dict) -> int:
    """Write {"meta", "state_dict", "sha256"} with torch.save, atomically; return the bytes written.

    The SHA-256 of the tensors lets `load` detect flipped bits that torch.load does not.
    """
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state = {"meta": meta, "state_dict": state_dict, "sha256": state_digest(state_dict)}
    return files.atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | os.PathLike, meta: dict) -> dict[str, torch.Tensor]:
    """The state_dict of a checkpoint written by `save`, if it is intact and made for `meta`.

    Raises ValueError naming the file and the reason: unreadable, another key (meta), tensors whose
    SHA-256 does not match (corruption), or NaN/inf weights. Loaded with weights_only=True: no pickle runs.
    """
    name = pathlib.Path(path).name
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or foreign file
        raise ValueError(f"checkpoint {name} is unreadable ({type(exc).__name__})") from exc
    if not isinstance(saved, dict) or saved.get("meta") != meta:
        raise ValueError(f"checkpoint {name} was made for another recipe or machine (meta differs)")
    state_dict = saved.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in state_dict.items()):
        raise ValueError(f"checkpoint {name} does not hold a state_dict of named tensors")
    if saved.get("sha256") != state_digest(state_dict):
        raise ValueError(f"checkpoint {name} is corrupt: the SHA-256 of its tensors does not match")
    if not all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point()):
        raise ValueError(f"checkpoint {name} holds NaN or infinite weights")
    return state_dict
