"""Reading checkpoint files safely: ``torch.load(weights_only=True)`` of plain
or xz-compressed files with dcae's own messages (:func:`torch_load`), and
their SHA-256 (:func:`file_sha256`)."""

from __future__ import annotations

import hashlib
import io
import lzma
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelMismatchError

__all__ = ["file_sha256", "torch_load"]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_XZ_MAGIC = b"\xfd7zXZ\x00"


def torch_load(path: Path, map_location: str) -> Any:
    """``torch.load(weights_only=True)`` of a plain or xz-compressed file.

    torch's warnings (a pickle protocol it did not write) are silenced, and a
    file it refuses gets a message of dcae's own: torch's advises re-running
    with ``weights_only=False``, the one thing not to do with a file of
    unknown origin."""
    try:
        with open(path, "rb") as f:
            compressed = f.read(len(_XZ_MAGIC)) == _XZ_MAGIC
        source: Any = path
        if compressed:
            try:
                source = io.BytesIO(lzma.decompress(path.read_bytes()))
            except lzma.LZMAError as e:
                raise ModelMismatchError(
                    f"{path} is a damaged xz-compressed checkpoint: {e}"
                ) from e
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(source, map_location=map_location, weights_only=True)
    except (FileNotFoundError, ModelMismatchError):
        raise
    except pickle.UnpicklingError as e:
        raise ModelMismatchError(
            f"{path} is not a readable PyTorch checkpoint: {_refusal(e)}"
        ) from e
    except Exception as e:  # unpickling errors of all kinds
        raise ModelMismatchError(
            f"{path} is not a readable PyTorch checkpoint: {_without_unsafe_advice(str(e))}"
        ) from e


def _refusal(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's
    advice to load it with ``weights_only=False``."""
    text = str(e)
    if "weights_only" not in text:
        return _without_unsafe_advice(text)
    found = re.search(
        r"WeightsUnpickler error:\s*(.+?)(?:\.\s*Please use|\n\s*\n|$)", text, re.DOTALL
    )
    reason = " ".join(found.group(1).split()) if found else "objects other than tensors"
    if reason.startswith("Unsupported operand"):
        reason += ": a plain pickle, not a torch.save file?"
    return (
        f"torch.load(weights_only=True) refused it ({reason}); dcae loads tensors and "
        "containers only and never unpickles other objects, since unpickling can run any "
        "code. If the file comes from a source you trust, save its weights again with "
        "torch.save(model.state_dict(), PATH)"
    )


def _without_unsafe_advice(text: str) -> str:
    """``text`` without the sentences that suggest ``weights_only=False``."""
    sentences = re.split(r"(?<=\.)\s+", " ".join(text.split()))
    return " ".join(s for s in sentences if "weights_only" not in s and "False" not in s)
