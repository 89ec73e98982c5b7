"""Golden ``.dcae`` files (``tests/golden``): files written by this version of
the format decode byte for byte to the images committed beside them, and the
encoder still writes exactly their bytes, so a change of the format without a
new ``FORMAT_VERSION`` fails here.

Regenerate them with ``python tests/golden/make_golden.py`` when the shipped
weights change, or after a deliberate format change with a new version
(keeping the old files, which must still decode).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcae.format.container import FORMAT_VERSION
from dcae.zoo import shipped

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
NAMES = sorted(MANIFEST["files"])
REGENERATE = "python tests/golden/make_golden.py"


def _make_golden():
    """``tests/golden/make_golden.py`` as a module (its encode/decode settings)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


MAKE = _make_golden()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_shipped_weights(entry: dict) -> None:
    if entry["model"] != "shipped":
        return
    weights = shipped.weights_file()
    if weights is None:
        pytest.skip("this installation ships no weights")
    if weights[1] != MANIFEST["shipped_weights"]["sha256"]:
        pytest.fail(
            f"shipped weights changed ({weights[0].name} sha256 {weights[1][:16]}..., the "
            f"golden files were written with {MANIFEST['shipped_weights']['sha256'][:16]}...): "
            f"regenerate with {REGENERATE}"
        )


def _machine_dependent(entry: dict) -> bool:
    """Float32 files (``--no-portable`` and other codecs) decode and encode
    to the same bytes only where they were written (format guide, "Portable
    coding"); portable files everywhere."""
    return not entry["portable"]


def _elsewhere() -> bool:
    return MAKE.environment() != MANIFEST["written_on"]


def _skip_if_elsewhere(entry: dict, what: str) -> None:
    if _machine_dependent(entry) and _elsewhere():
        pytest.skip(
            f"{what}: float32 files are exact only on a machine like the one that wrote "
            f"them ({MANIFEST['written_on']}; this one: {MAKE.environment()})"
        )


def _image() -> Image.Image:
    with Image.open(GOLDEN / MANIFEST["image"]["file"]) as im:
        return im.convert("RGB")


def test_the_golden_files_are_those_of_the_manifest():
    listed = {f"{n}.dcae" for n in NAMES} | {f"{n}.png" for n in NAMES}
    listed |= {MANIFEST["image"]["file"], MANIFEST["user_checkpoint"]["file"]}
    listed |= {"manifest.json", "make_golden.py"}
    on_disk = {p.name for p in GOLDEN.iterdir() if p.is_file()}
    assert on_disk == listed, f"stale or missing golden files; regenerate with {REGENERATE}"
    for name in NAMES:
        assert _sha256((GOLDEN / f"{name}.dcae").read_bytes()) == MANIFEST["files"][name]["sha256"]
    assert _sha256((GOLDEN / "image.png").read_bytes()) == MANIFEST["image"]["sha256"]
    modes = {(e["model"], e["portable"]) for e in MANIFEST["files"].values()}
    assert modes == {("shipped", True), ("shipped", False), ("user", False)}
    qualities = {e["quality"] for e in MANIFEST["files"].values() if e["model"] == "shipped"}
    assert len(qualities) >= 2
    assert _image().size == (48, 32)


@pytest.mark.parametrize("name", NAMES)
def test_golden_files_decode_byte_exact(name):
    entry = MANIFEST["files"][name]
    _check_shipped_weights(entry)
    data = (GOLDEN / f"{name}.dcae").read_bytes()
    with Image.open(GOLDEN / f"{name}.png") as im:
        expected = np.asarray(im)
    try:
        decoded = MAKE.decode(entry, data)
    except Exception:
        _skip_if_elsewhere(entry, "decoding failed")
        raise
    if not np.array_equal(decoded, expected):
        _skip_if_elsewhere(entry, "other pixels")
        diff = int(np.abs(decoded.astype(int) - expected.astype(int)).max())
        pytest.fail(
            f"{name}.dcae no longer decodes to {name}.png (largest difference {diff} levels): "
            "a file this format version wrote must decode as it did; a change of the "
            "decoder's arithmetic needs a new FORMAT_VERSION and a reader for the old one"
        )


@pytest.mark.parametrize("name", NAMES)
def test_the_encoder_still_writes_the_golden_bytes(name):
    """The format check: the same image, model and settings give the same bytes,
    or the format version changed."""
    entry = MANIFEST["files"][name]
    _check_shipped_weights(entry)
    if FORMAT_VERSION != MANIFEST["format_version"]:
        pytest.fail(
            f"FORMAT_VERSION is {FORMAT_VERSION}, the golden files are version "
            f"{MANIFEST['format_version']}: move them to a folder of their own (they must "
            f"still decode) and write new ones with {REGENERATE}"
        )
    data = MAKE.encode(entry, _image())
    if _sha256(data) != entry["sha256"]:
        _skip_if_elsewhere(entry, "other bytes")
        pytest.fail(
            f"the encoder's output for {name}.dcae changed ({len(data)} bytes, sha256 "
            f"{_sha256(data)[:16]}...; golden: {entry['bytes']} bytes, "
            f"{entry['sha256'][:16]}...) but FORMAT_VERSION did not ({FORMAT_VERSION}). A "
            "change of what a file holds needs a new format version (FORMAT_VERSION in "
            "dcae/format/container.py, a reader for the old one, the format guide). If the "
            "change is deliberate and every file of this version still decodes (the test "
            f"above), regenerate the golden files with {REGENERATE}"
        )
