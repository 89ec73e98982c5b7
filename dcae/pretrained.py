"""Pretrained models shipped inside the package (``dcae/weights``).

``dcae/weights/manifest.json`` lists the shipped checkpoints: one
variable-rate model (``"variable_rate": true``, any real quality in its
``quality_range``, 1 = lowest rate), or, as dcae shipped before 2026-12-04, one
single-rate model per integer quality.  Each is an xz-compressed ``torch.save``
file (``small-q{q}.pt.xz``) holding ``{"config": DCAEConfig.to_dict(),
"packed": ..., "quality": q, "lambda": float, "metric": "mse", "steps": n}``:
the weights packed to int8 per output channel (:func:`pack_state_dict`) and
the CDF tables of ``update()``, so no update is needed at load time.  A file
may store only its difference to the default quality's file (``"base"``:
file name and sha256; int8 deltas; tensors equal to the base's left out):
the models are warm-started from each other, so this almost halves their
size and is lossless.  Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import lzma
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from .config import DCAEConfig
from .errors import DCAEError, ModelMismatchError
from .nn.model import DCAEModel

__all__ = [
    "WEIGHTS_DIR",
    "pack_state_dict",
    "package_models",
    "read_checkpoint",
    "write_packed",
    "unpack_state_dict",
    "available_qualities",
    "default_quality",
    "package_variable_rate",
    "quality_range",
    "load_checkpoint",
    "load_pretrained",
    "model_from_checkpoint",
    "save_checkpoint",
    "shared_model",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _manifest() -> Dict[str, Any]:
    path = WEIGHTS_DIR / "manifest.json"
    if not path.is_file():
        return {"models": []}
    return json.loads(path.read_text())


def _variable_rate_entry() -> Optional[Dict[str, Any]]:
    """The manifest's entry of a shipped variable-rate model, if that is what
    is shipped."""
    models = _manifest()["models"]
    if len(models) == 1 and models[0].get("variable_rate"):
        return models[0]
    return None


def available_qualities() -> List[int]:
    """The integer rate points of the shipped weights (empty if none are
    shipped).  The shipped variable-rate model codes at any real quality in
    :func:`quality_range`, these are its trained rate points."""
    vr = _variable_rate_entry()
    if vr is not None:
        lo, hi = vr["quality_range"]
        return list(range(int(lo), int(hi) + 1))
    return sorted(int(m["quality"]) for m in _manifest()["models"])


def quality_range() -> Tuple[float, float]:
    """``(lowest, highest)`` quality the shipped weights code at.

    Raises:
        DCAEError: no weights are shipped.
    """
    qualities = available_qualities()
    if not qualities:
        raise DCAEError("this installation of dcae ships no pretrained weights")
    return float(min(qualities)), float(max(qualities))


def default_quality() -> float:
    """Quality used when none is given."""
    man = _manifest()
    if not man["models"]:
        raise DCAEError("this installation of dcae ships no pretrained weights")
    vr = _variable_rate_entry()
    if vr is not None:
        return float(man["default_quality"])
    return int(man.get("default", max(available_qualities())))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _shipped_state(quality: int) -> Tuple[Mapping[str, Any], Mapping[str, Tensor]]:
    """``(config dict, state dict)`` of a shipped model (``quality`` 0: the
    variable-rate model), read once per process.

    Private and never handed out: every model made from it copies the tensors
    (``load_state_dict``), so no caller can change what another one gets."""
    vr = _variable_rate_entry()
    if vr is not None:
        entry = vr
    else:
        entry = {int(m["quality"]): m for m in _manifest()["models"]}[quality]
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise DCAEError(f"shipped weights {path} are missing; reinstall dcae")
    if "sha256" in entry and _sha256(path) != entry["sha256"]:
        raise DCAEError(f"shipped weights {path} are corrupted (sha256 mismatch); reinstall dcae")
    model = load_checkpoint(path)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return MappingProxyType(model.config.to_dict()), MappingProxyType(state)


def _check_quality(quality: Optional[float]) -> Tuple[int, Optional[float]]:
    """``(file key, quality)``: which shipped state to load (0: the variable-rate
    model) and the quality it codes at (``None``: single-rate models)."""
    qualities = available_qualities()
    if not qualities:
        raise DCAEError(
            "this installation of dcae ships no pretrained weights; pass --checkpoint PATH"
        )
    if quality is not None and (
        isinstance(quality, bool) or not isinstance(quality, (int, float))
    ):
        raise TypeError(f"quality must be a real number, got {type(quality).__name__}")
    if _variable_rate_entry() is not None:
        q = default_quality() if quality is None else float(quality)
        lo, hi = quality_range()
        if not lo <= q <= hi:  # also NaN
            raise DCAEError(
                f"quality {quality!r} is outside the shipped model's range [{lo:g}, {hi:g}]"
            )
        return 0, q
    if quality is not None and quality not in qualities:
        raise DCAEError(
            f"quality {quality!r} is not available; the shipped single-rate models have "
            f"qualities {qualities}"
        )
    q_int = int(default_quality() if quality is None else quality)
    return q_int, None


def load_pretrained(quality: Optional[float] = None) -> DCAEModel:
    """A new instance of the shipped model, in eval mode, that codes at
    ``quality`` (1 = lowest rate) by default.

    The shipped model is a variable-rate model: any real quality in
    :func:`quality_range` works, here and in ``compress(x, quality=q)``;
    ``quality`` only sets the returned instance's
    :attr:`~dcae.DCAEModel.default_quality` (what ``compress(x)`` and
    CompressAI's tools use).  (With single-rate weights, as dcae shipped before 2026-12-04,
    it picks the model of that quality.)

    The file is read once per process; each call builds a fresh module from
    that state (about 0.2 s for the ``small`` preset on one CPU core), so a
    caller may move, train, put into fast mode or edit the model it gets
    without changing anyone else's (nor the one :func:`dcae.encode` and
    :func:`dcae.decode` use, see :func:`shared_model`).

    Args:
        quality: default :func:`default_quality`.

    Raises:
        DCAEError: no weights are shipped or ``quality`` is out of range.
        TypeError: ``quality`` is not a number.
    """
    key, q = _check_quality(quality)
    config, state = _shipped_state(key)
    model = DCAEModel(DCAEConfig.from_dict(dict(config)))
    model.load_state_dict(dict(state))
    if q is not None:
        model.default_quality = q
    return model.eval()


@functools.lru_cache(maxsize=8)
def _shared(key: int) -> DCAEModel:
    return load_pretrained(None if key == 0 else key)


def shared_model(quality: Optional[float] = None) -> DCAEModel:
    """The process-wide instance of the shipped model that :func:`dcae.encode`
    and :func:`dcae.decode` code with when no model is given (built once, so
    that they stay fast); pass the quality to its ``compress``.

    dcae never hands it to a caller: :func:`load_pretrained` and
    :func:`dcae.codec.resolve_model` return fresh instances.  Code that calls
    this function must not move, train or edit the model.
    """
    return _shared(_check_quality(quality)[0])


_XZ_MAGIC = b"\xfd7zXZ\x00"


def _torch_load(path: Path, map_location: str) -> Any:
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


def _wrap_int8(v: Tensor) -> Tensor:
    """Integers to int8 modulo 256 (two's complement)."""
    return ((v.to(torch.int16) + 128).remainder(256) - 128).to(torch.int8)


def _whole_packed(path: Path) -> Dict[str, Any]:
    """The packed dict of a file stored whole (a valid ``base``)."""
    obj = _torch_load(path, "cpu")
    if not isinstance(obj, Mapping) or "packed" not in obj:
        raise ModelMismatchError(f"{path} holds no packed weights")
    if obj.get("base") is not None:
        raise ModelMismatchError(f"{path} is itself a difference file; a base is stored whole")
    return dict(obj["packed"])


def _resolve_packed(obj: Mapping[str, Any], path: Path) -> Dict[str, Any]:
    """The full packed dict of a shipped file, applying its ``base`` if any."""
    packed = obj["packed"]
    base = obj.get("base")
    if base is None:
        return dict(packed)
    base_path = path.parent / str(base["file"])
    if not base_path.is_file():
        raise ModelMismatchError(
            f"{path} stores its difference to {base_path}, which is missing; keep the "
            "shipped files together"
        )
    if _sha256(base_path) != base["sha256"]:
        raise ModelMismatchError(
            f"{path}: its base file {base_path} is not the one it was made from"
        )
    base_packed = _whole_packed(base_path)
    out: Dict[str, Any] = {k: base_packed[k] for k in obj.get("same_as_base", ())}
    for k, v in packed.items():
        if isinstance(v, Mapping) and "int8_delta" in v:
            q = base_packed[k]["int8"].to(torch.int16) + v["int8_delta"].to(torch.int16)
            out[k] = {"int8": _wrap_int8(q), "scale": v["scale"]}
        else:
            out[k] = v
    return out


def read_checkpoint(path: Union[str, Path], map_location: str = "cpu") -> Dict[str, Any]:
    """Read any supported checkpoint file as ``{"state_dict": ..., "config": ... or None}``
    (plus the file's other metadata).

    Handles :func:`save_checkpoint` files, training checkpoints (``"model"``
    and ``"optimizer"``), shipped files (xz-compressed, packed, possibly
    stored as a difference to a base file) and state dicts of other layouts
    (returned under ``"state_dict"`` as they are, for :mod:`dcae.convert`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelMismatchError: the file is not a readable checkpoint, or a shipped
            file's base is missing or not the one it was made from.
    """
    path = Path(path)
    obj = _torch_load(path, map_location)
    if not isinstance(obj, Mapping):
        raise ModelMismatchError(f"{path} does not hold a state dict")
    obj = dict(obj)
    if "packed" in obj:  # shipped weights: int8 tensors + scales
        try:
            packed = _resolve_packed(obj, path)
            state_dict = unpack_state_dict(packed)
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:
            raise ModelMismatchError(f"{path} holds malformed packed weights: {e!r}") from e
        meta = {k: v for k, v in obj.items() if k not in ("packed", "same_as_base")}
        return {**meta, "state_dict": state_dict, "config": obj.get("config")}
    if "model" in obj and "optimizer" in obj:  # a dcae training checkpoint
        return {"state_dict": obj["model"], "config": obj.get("config")}
    if "state_dict" in obj:
        return {**obj, "config": obj.get("config")}
    return {"state_dict": obj, "config": None}


def load_checkpoint(path: Union[str, Path], map_location: str = "cpu") -> DCAEModel:
    """Load a checkpoint in any supported layout into an eval-mode model.

    Accepts what :func:`read_checkpoint` reads: files written by
    :func:`save_checkpoint` (with a config), training checkpoints, the shipped
    files and the official implementation's files (the configuration is then
    inferred).  CDF tables are built if missing.  This is
    :func:`dcae.loading.load_model` (the one loader) for DCAE checkpoints.
    """
    from .loading import load_model

    model = load_model(path, map_location=map_location)
    if not isinstance(model, DCAEModel):
        raise ModelMismatchError(
            f"{path} holds a {type(model).__name__} model, not a DCAE one; load it with "
            "dcae.loading.load_model"
        )
    return model


def model_from_checkpoint(
    obj: Mapping[str, Any], path: Union[str, Path], cls: Optional[type] = None
) -> DCAEModel:
    """The eval-mode DCAE model (of class ``cls``, default :class:`DCAEModel`)
    of a checkpoint :func:`read_checkpoint` returned; CDF tables built if missing."""
    from .loading import missing_tables

    cfg = None
    if isinstance(obj["config"], Mapping):
        cfg = DCAEConfig.from_dict(dict(obj["config"]))
    try:
        model = (cls or DCAEModel).from_state_dict({"state_dict": obj["state_dict"]}, config=cfg)
    except (RuntimeError, KeyError, ModelMismatchError) as e:
        raise ModelMismatchError(
            f"{path} does not fit a DCAE model (for another codec, pass its name: --model "
            f"NAME or module:Class): {e}"
        ) from e
    model.eval()
    if missing_tables(model):
        model.update(force=True)
    return model


def save_checkpoint(model: DCAEModel, path: Union[str, Path], **extra: Any) -> None:
    """Save ``model`` with its config (and ``extra`` metadata) for :func:`load_checkpoint`."""
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict(), **extra}, path)


#: tensors with at least this many elements (and >= 2 dims) are stored as int8
PACK_MIN_NUMEL = 4096


def pack_state_dict(state_dict: Mapping[str, Tensor]) -> Dict[str, Any]:
    """Compact storage: large float weights as int8 with one fp32 scale per
    output channel (symmetric), everything else unchanged.

    ``unpack_state_dict(pack_state_dict(sd))`` is not ``sd``: it is its
    quantised version, which *is* the shipped model (CDF tables are built from
    it, see :func:`package_models`).
    """
    packed: Dict[str, Any] = {}
    for k, v in state_dict.items():
        big = v.is_floating_point() and v.dim() >= 2 and v.numel() >= PACK_MIN_NUMEL
        if big and "entropy_bottleneck" not in k:
            flat = v.detach().float().reshape(v.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            packed[k] = {"int8": q.reshape(v.shape), "scale": scale}
        else:
            packed[k] = v.detach().clone()
    return packed


def unpack_state_dict(packed: Mapping[str, Any]) -> Dict[str, Tensor]:
    """Inverse of :func:`pack_state_dict` (returns fp32 tensors)."""
    out: Dict[str, Tensor] = {}
    for k, v in packed.items():
        if isinstance(v, Mapping):
            q, scale = v["int8"], v["scale"]
            shape = (-1,) + (1,) * (q.dim() - 1)
            out[k] = q.float() * scale.reshape(shape)
        else:
            out[k] = v
    return out


def write_packed(
    path: Union[str, Path],
    packed: Mapping[str, Any],
    base: Optional[Union[str, Path]] = None,
    **meta: Any,
) -> None:
    """Write packed weights (see :func:`pack_state_dict`) as an xz-compressed
    ``torch.save`` file that :func:`read_checkpoint` reads.

    With ``base`` (a file written by this function without a base, in the same
    folder) only the difference is stored: int8 weights as int8 deltas (modulo 256, so
    exact), tensors equal to the base's left out.  The base's name and sha256
    are recorded; reading fails clearly if it is missing or changed.
    ``meta`` (config, quality, lambda, ...) is stored beside the weights.
    """
    path = Path(path)
    body: Dict[str, Any] = dict(meta)
    if base is None:
        body["packed"] = dict(packed)
    else:
        base = Path(base)
        if base.resolve().parent != path.resolve().parent:
            raise ValueError(f"base {base} must be in the folder of {path}")
        base_packed = _whole_packed(base)
        delta: Dict[str, Any] = {}
        same = []
        for k, v in packed.items():
            b = base_packed.get(k)
            if (
                isinstance(v, Mapping)
                and isinstance(b, Mapping)
                and b["int8"].shape == v["int8"].shape
            ):
                d = v["int8"].to(torch.int16) - b["int8"].to(torch.int16)
                delta[k] = {"int8_delta": _wrap_int8(d), "scale": v["scale"]}
            elif (
                isinstance(v, Tensor) and isinstance(b, Tensor)
                and b.dtype == v.dtype and b.shape == v.shape and torch.equal(b, v)
            ):  # fmt: skip
                same.append(k)
            else:
                delta[k] = v
        body.update(
            packed=delta, same_as_base=same, base={"file": base.name, "sha256": _sha256(base)}
        )
    buf = io.BytesIO()
    torch.save(body, buf)
    path.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))


def package_models(
    checkpoints: Mapping[int, Union[str, Path]],
    out_dir: Union[str, Path] = WEIGHTS_DIR,
    default: Optional[int] = None,
    total_steps: Optional[Mapping[int, int]] = None,
    **info: Any,
) -> Dict[str, Any]:
    """Write shipped weights: ``{quality: checkpoint}`` -> ``small-q{q}.pt.xz`` + manifest.

    Each model is packed (:func:`pack_state_dict`), unpacked, and its CDF
    tables rebuilt with ``update(force=True)`` so that the stored tables match
    the stored weights exactly.  The default quality is stored whole, each
    other one as its difference to it (:func:`write_packed`), so that loading
    reads at most two files.
    ``total_steps`` replaces the step count of a checkpoint (which counts
    only its own run) by the training steps of its whole lineage when models
    were warm-started.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qualities = sorted(checkpoints)
    if not qualities:
        raise ValueError("package_models needs at least one checkpoint")
    default = qualities[len(qualities) // 2] if default is None else int(default)
    if default not in checkpoints:
        raise ValueError(f"default quality {default} is not among {qualities}")
    entries = {}
    hub: Optional[Path] = None
    for q in [default] + [q for q in qualities if q != default]:  # the base first
        ckpt = checkpoints[q]
        meta = _torch_load(Path(ckpt), "cpu")
        model, packed = _packed_model(ckpt)
        name = f"{model.config.name}-q{q}.pt.xz"
        extra = {k: meta[k] for k in ("lambda", "metric", "steps") if k in meta}
        if total_steps and q in total_steps:
            extra["steps"] = int(total_steps[q])
        path = out_dir / name
        write_packed(path, packed, hub, config=model.config.to_dict(), quality=q, **extra)
        entries[q] = {"quality": q, "file": name, "sha256": _sha256(path), **extra}
        hub = hub or path
    manifest = {"models": [entries[q] for q in qualities], "default": default}
    manifest.update(info)
    return _write_manifest(out_dir, manifest)


def _packed_model(checkpoint: Union[str, Path]) -> Tuple[DCAEModel, Dict[str, Any]]:
    """``(model, packed state)``: the checkpoint's weights packed to int8, the
    model holding exactly those weights and the CDF tables built from them."""
    model = load_checkpoint(checkpoint)
    packed = pack_state_dict(model.state_dict())
    model.load_state_dict(unpack_state_dict(packed))
    model.update(force=True)  # CDF tables of the int8-rounded weights
    for k, v in model.state_dict().items():
        if not isinstance(packed.get(k), Mapping):  # buffers, small tensors
            packed[k] = v.detach().clone()
    return model, packed


def _write_manifest(out_dir: Path, manifest: Dict[str, Any]) -> Dict[str, Any]:
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _shipped_state.cache_clear()
    _shared.cache_clear()
    return manifest


def package_variable_rate(
    checkpoint: Union[str, Path],
    out_dir: Union[str, Path] = WEIGHTS_DIR,
    default_quality: Optional[float] = None,
    total_steps: Optional[int] = None,
    name: Optional[str] = None,
    rate_points: Optional[int] = None,
    **info: Any,
) -> Dict[str, Any]:
    """Write the shipped weights of one variable-rate model:
    ``{name}.pt.xz`` (int8-packed, CDF tables rebuilt from the packed
    weights, xz-compressed) and a manifest naming it, its quality range and
    ``default_quality`` (default: the model's).  ``name`` (default: the
    config's) also becomes the config's name, which ``.dcae`` files record.
    ``rate_points`` keeps only the first rate points
    (:meth:`~dcae.DCAEModel.first_rate_points`): the shipped range then ends
    at quality ``rate_points``.  Other files in ``out_dir`` are left alone;
    remove older shipped files yourself."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = _torch_load(Path(checkpoint), "cpu")
    model, packed = _packed_model(checkpoint)
    if not model.variable_rate:
        raise ValueError(f"{checkpoint} holds a single-rate model; use package_models")
    if rate_points is not None:  # packed again from the truncated float weights
        with tempfile.TemporaryDirectory() as tmp:
            cut = load_checkpoint(checkpoint).first_rate_points(rate_points)
            save_checkpoint(cut, Path(tmp) / "cut.pt")
            model, packed = _packed_model(Path(tmp) / "cut.pt")
    if name is not None:
        model.config = model.config.replace(name=name)
    lo, hi = model.quality_range
    default = model.default_quality if default_quality is None else float(default_quality)
    if not lo <= default <= hi:  # type: ignore[operator]
        raise ValueError(f"default quality {default} is outside [{lo:g}, {hi:g}]")
    extra: Dict[str, Any] = {"metric": meta.get("metric", "mse")}
    extra["steps"] = int(total_steps if total_steps is not None else meta.get("steps", 0))
    name = f"{model.config.name}.pt.xz"
    path = out_dir / name
    write_packed(path, packed, config=model.config.to_dict(), **extra)
    entry = {
        "file": name,
        "sha256": _sha256(path),
        "variable_rate": True,
        "quality_range": [lo, hi],
        "lambdas": list(model.config.rate_lambdas or ()),
        **extra,
    }
    manifest = {"models": [entry], "default_quality": default, **info}
    return _write_manifest(out_dir, manifest)
