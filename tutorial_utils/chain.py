"""The distil-and-compress chain's models, built once per seed and kept as files in the cache.

    scratch    784-64-10 trained on labels
    distilled  784-64-10 distilled from the teacher (T = 4, alpha = 0.9)
    pruned     distilled, 90% global magnitude pruning + distillation fine-tuning (masked float32)
    qat        distilled, trained through the 4-bit quantizer with distillation (dense codes)
    final      pruned, then the same 4-bit QAT with its masks held (notebook 05's final model)

Every stage reseeds when it starts (recipes), so the models are those of notebooks 05 and 06 for the
same seed. A notebook asks for the stages it uses; each is trained once, from the stage it starts from.
Files (storage.save: exact weights, or exact codes and scales) are named by a key of
everything that changes them: the recipe, the data, the teacher's weights, the seed, the CPU threads,
torch's version and the source code of the modules that train (_code_digest); a stale or unreadable
file is rebuilt.

`cached` keeps any other trained model the same way, keyed also by the source code of the function
that trains it (notebook 05's comparisons of recipes).

Example:
    >>> models = build(splits, teacher, seed=0)       # {"scratch": ..., ..., "final": ...}
    >>> final = build(splits, teacher, seed=0, stages=("final",))["final"]   # trains distilled, pruned, final
    >>> early = cached(compress_first, splits, teacher, name="compress-first", seed=0, epochs=25)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import pathlib
import sys
import warnings
from collections.abc import Callable

import torch
from torch import nn

from tutorial_utils import (data, distillation, evaluation, files, machine, masks, models, pruning, qat, qtensor,
                            quantization, recipes, storage, training, validate)

STAGES = ("scratch", "distilled", "pruned", "qat", "final")


def _code_digest() -> str:
    """SHA-256 of the source files that train and quantize models, this one's stages included: change a
    default (a learning rate, a loss) and every model cached with the old code is stale."""
    return files.source_digest([data, distillation, evaluation, masks, models, pruning, qat, qtensor, quantization,
                                recipes, training, sys.modules[__name__]])


def _key(splits: data.Splits, teacher: nn.Module, recipe: dict) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    meta = {**recipe, "data": splits.name, "fingerprint": training.fingerprint(splits), "teacher": digest.hexdigest(),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "code": _code_digest(), **machine.float_path()}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]


def _train(stage: str, get: Callable[[str], nn.Module], splits: data.Splits, teacher: nn.Module, seed: int,
           epochs: int, sparsity: float, bits: int, finetune: training.TrainConfig,
           qat: training.TrainConfig) -> nn.Module:
    """One stage from scratch or from the stage it starts from (`get`: loaded, or trained first)."""
    if stage in ("scratch", "distilled"):
        return distillation.train_student(splits, teacher=teacher if stage == "distilled" else None, seed=seed,
                                          epochs=epochs)
    if stage == "pruned":
        pruned = copy.deepcopy(get("distilled"))
        recipes.prune_(pruned, splits, sparsity=sparsity, teacher=teacher, config=finetune, seed=seed)
        return pruned
    start = get("distilled" if stage == "qat" else "pruned")
    # The final stage holds the pruned model's zeros: the masks prune_ chose, read back from its weights, so
    # a pruned model loaded from its file gives the same final model as one just trained.
    held = masks.from_zeros(start) if stage == "final" else None
    return recipes.quantize_aware(start, splits, quant=bits, teacher=teacher, config=qat, masks=held, seed=seed)


def build(splits: data.Splits, teacher: nn.Module, *, seed: int = 0, epochs: int = 15, sparsity: float = 0.9,
          bits: int = 4, finetune: training.TrainConfig = recipes.FINETUNE, qat: training.TrainConfig = recipes.QAT,
          stages: tuple[str, ...] = STAGES, folder: str | pathlib.Path | None = None) -> dict[str, nn.Module]:
    """The chain's models for one seed (module docstring), {stage: model} for each of `stages`.

    Each stage is a file in `folder` (default files.cache_dir("chain")): loaded when built before, else
    trained (from the stage it starts from, itself loaded or trained first) and saved, so a notebook that
    asks only for "final" does not train "scratch" or "qat". `finetune` and `qat` are the stages' budgets
    (recipes.prune_ and recipes.quantize_aware). Models come back in eval mode.
    Side effects: writes the stages it trains to `folder`; training reseeds the global generators (with
    `seed`).
    """
    validate.nonnegative_int("seed", seed)
    validate.positive_int("epochs", epochs)
    validate.fraction("sparsity", sparsity)
    validate.bits("bits", bits)
    if isinstance(stages, str) or not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"stages={stages!r}: give a tuple of distinct stages from {STAGES}")
    if bits == 1 and "final" in stages:   # refused before any training, not after the stages before it
        raise ValueError("bits=1 with the 'final' stage is refused: 1-bit codes are +-1 and cannot keep the pruned "
                         "weights at zero; use bits >= 2, or stages without 'final'")
    folder = pathlib.Path(folder) if folder is not None else files.cache_dir("chain")
    key = _key(splits, teacher, {"seed": seed, "epochs": epochs, "sparsity": sparsity, "bits": bits,
                                 "finetune": repr(finetune), "qat": repr(qat)})
    got: dict[str, nn.Module] = {}

    def get(stage: str) -> nn.Module:
        if stage not in got:
            path = folder / files.safe_name(f"{stage}-{splits.name}-seed{seed}-{key}.dcmp")
            try:
                got[stage] = storage.load(path)
            except FileNotFoundError:                 # not built yet (another version has another key)
                pass
            except ValueError as exc:                 # corrupt or truncated: said, then trained again
                warnings.warn(f"{exc}; retraining it")
            if stage not in got:                      # trained outside the except: its errors stand alone
                got[stage] = _train(stage, get, splits, teacher, seed, epochs, sparsity, bits, finetune, qat)
                folder.mkdir(parents=True, exist_ok=True)
                storage.save(got[stage], path)
        return got[stage].eval()

    return {stage: get(stage) for stage in stages}


def _keyable(value: object) -> bool:
    """True for a value whose repr holds all of it: None, numbers, strings, tuples and lists of those, and
    dataclass configs of those (training.TrainConfig, distillation.KDConfig)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_keyable(item) for item in value)
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and all(   # every field in its repr
        field.repr and _keyable(getattr(value, field.name)) for field in dataclasses.fields(value))


def cached(train: Callable[..., nn.Module], splits: data.Splits, teacher: nn.Module, *, name: str,
           folder: str | pathlib.Path | None = None, **recipe: object) -> nn.Module:
    """train(**recipe), trained once and then loaded from `folder` (default files.cache_dir("chain")).

    The file is named by `name` and a key of the recipe (each value by its repr: numbers, strings,
    training.TrainConfig, distillation.KDConfig), train's source code, the data, the teacher's weights,
    the CPU threads, torch's version and the package's training code: edit the function or change an
    argument and it is trained again. Everything else train reads from outside its own source (a
    notebook's global setting) must therefore be passed as one of the recipe's arguments. The model must
    be one storage.save can write (exact weights or codes). Side effects: on the first call, train's own
    and the file; on a later call none (train does not run, so e.g. its reseeding does not happen).
    """
    if not callable(train):
        raise TypeError(f"train must be a function that returns a model, got {type(train).__name__}")
    try:
        source = inspect.getsource(train)
    except (OSError, TypeError) as error:
        raise ValueError(f"train={getattr(train, '__name__', train)!r}: its source code cannot be read, so a "
                         f"cached model could outlive a change to it; define it in a file or a notebook cell") from error
    for argument, value in recipe.items():
        if not _keyable(value):   # a tensor's repr is truncated, a model's shows no weights, others an address
            raise ValueError(f"{argument} is a {type(value).__name__}, whose repr cannot key a cache; pass numbers, "
                             "strings, tuples or config dataclasses")
    keyed = {argument: repr(value) for argument, value in recipe.items()}
    folder = pathlib.Path(folder) if folder is not None else files.cache_dir("chain")
    key = _key(splits, teacher, {"recipe": keyed, "name": name, "source": source})
    path = folder / files.safe_name(f"{name}-{splits.name}-{key}.dcmp")
    try:
        return storage.load(path).eval()
    except FileNotFoundError:
        pass   # not trained yet (another version of the code has another key)
    except ValueError as exc:
        warnings.warn(f"{exc}; retraining it")   # corrupt or truncated
    model = train(**recipe)
    folder.mkdir(parents=True, exist_ok=True)
    storage.save(model, path)
    return model.eval()
