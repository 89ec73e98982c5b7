"""Regenerate the golden ``.dcae`` files of ``tests/format/test_golden.py``.

    python tests/golden/make_golden.py

Writes into this folder: ``image.png`` (a 48x32 crop of
``examples/images/kodim23_crop.png``), one ``.dcae`` file per entry of
:data:`FILES` (the shipped model in both coding modes at two qualities, and
a user's codec, ``tests/user_codec.py``, whose weights are
``user-codec.pt``), the image each decodes to (``<name>.png``), and
``manifest.json``: the format version, the shipped weights' sha256, the
machine that wrote the files and each file's sha256.

Run it when the golden files must change: the shipped weights changed, or
the format changed (with a new ``FORMAT_VERSION``: keep the old files in a
folder of their own first, they must still decode).  Portable files are the
same on every machine; ``--no-portable`` files and the user's codec (float32
arithmetic) are checked byte for byte only on a machine like the one that
wrote them (same torch and CPU capability).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if __name__ == "__main__":  # a script: this checkout's dcae and tests/user_codec.py
    sys.path[:0] = [str(REPO), str(REPO / "tests")]

import dcae  # noqa: E402
from dcae.format.container import FORMAT_VERSION  # noqa: E402
from dcae.layers.attention import attention_backend  # noqa: E402
from dcae.zoo import shipped  # noqa: E402
from dcae.zoo.loading import load_model, save_model  # noqa: E402

#: the crop of examples/images/kodim23_crop.png (left, top, right, bottom)
CROP = (176, 112, 224, 144)
#: name -> how it is encoded
FILES = {
    "shipped-portable-q2": {"model": "shipped", "quality": 2.0, "portable": True},
    "shipped-portable-q4.5": {"model": "shipped", "quality": 4.5, "portable": True},
    "shipped-float32-q2": {"model": "shipped", "quality": 2.0, "portable": False},
    "shipped-float32-q4.5": {"model": "shipped", "quality": 4.5, "portable": False},
    "user-codec": {"model": "user", "quality": None, "portable": False},
}
USER_CHECKPOINT = "user-codec.pt"
USER_CLASS = "user_codec:TinyCodec"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def environment() -> dict:
    """What float32 coding depends on: where the non-portable files were written."""
    return {
        "torch": torch.__version__.split("+")[0],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def model_for(entry: dict):
    """The model of a golden file, with the settings it is coded with."""
    if entry["model"] == "shipped":
        model = shipped.load_pretrained()
    else:
        model = load_model(HERE / USER_CHECKPOINT, USER_CLASS)
    return model


@contextlib.contextmanager
def canonical(entry: dict) -> Iterator[Any]:
    """The entry's model, coding with one thread and, for the shipped model,
    the default attention backend."""
    model = model_for(entry)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with (
            attention_backend("auto", model)
            if entry["model"] == "shipped"
            else (contextlib.nullcontext())
        ):
            yield model
    finally:
        torch.set_num_threads(threads)


def encode(entry: dict, image: Image.Image) -> bytes:
    """The bytes of a golden file."""
    with canonical(entry) as model:
        if entry["model"] == "shipped":
            return dcae.encode(
                image, model=model, quality=entry["quality"], portable=entry["portable"]
            )
        return dcae.encode(image, model=model)


def decode(entry: dict, data: bytes) -> np.ndarray:
    """The pixels a golden file decodes to."""
    with canonical(entry) as model:
        return np.asarray(dcae.decode(data, model=model))


def fit_user_codec(image: Image.Image, steps: int = 400):
    """The user's codec (``tests/user_codec.py``) fitted to ``image`` for a
    few hundred steps, so that it decodes a picture, not noise (its weights
    are committed: training need not be reproducible)."""
    from user_codec import tiny_codec

    from dcae.format.pixels import image_to_tensor

    model = tiny_codec(0).train()
    x = image_to_tensor(image)[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        out = model(x)
        bpp = sum(-lik.log2().sum() for lik in out["likelihoods"].values()) / x[0, 0].numel()
        loss = 0.01 * 255**2 * (out["x_hat"] - x).pow(2).mean() + bpp
        optimizer.zero_grad()
        (loss + model.aux_loss()).backward()
        optimizer.step()
    model.eval().update(force=True)
    return model


def main() -> int:
    weights = shipped.weights_file()
    if weights is None:
        raise SystemExit("this dcae ships no weights: the golden files need them")
    with Image.open(REPO / "examples" / "images" / "kodim23_crop.png") as im:
        image = im.convert("RGB").crop(CROP)
    image.save(HERE / "image.png")
    if not (HERE / USER_CHECKPOINT).is_file():  # the user's codec: fixed weights, committed
        save_model(fit_user_codec(image), HERE / USER_CHECKPOINT, USER_CLASS)
    files = {}
    for name, entry in FILES.items():
        data = encode(entry, image)
        (HERE / f"{name}.dcae").write_bytes(data)
        Image.fromarray(decode(entry, data)).save(HERE / f"{name}.png")
        files[name] = {**entry, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        print(f"{name}.dcae: {len(data)} bytes")
    manifest = {
        "format_version": FORMAT_VERSION,
        "image": {"file": "image.png", "crop": list(CROP), "sha256": sha256(HERE / "image.png")},
        "shipped_weights": {"file": weights[0].name, "sha256": weights[1]},
        "user_checkpoint": {"file": USER_CHECKPOINT, "sha256": sha256(HERE / USER_CHECKPOINT)},
        "written_on": environment(),
        "files": files,
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {HERE / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
