"""Unsafe paths closed (#14): a light command line, images too large or
animated, output locations checked before any encode, hostile checkpoints,
and filesystem errors that name the user's path."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dcae
from dcae.cli import main
from dcae.format.images import UnsupportedImageError, image_files, open_image
from dcae.zoo.checkpoints import save_checkpoint

HEAVY = ("torch", "compressai")


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=600, cwd=cwd
    )


def _error(capsys, *args) -> str:
    """The one-line error of a failing in-process CLI run."""
    assert main([str(a) for a in args]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcae: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(small_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(small_model, path)
    return path


def _png(path: Path, w: int = 24, h: int = 16) -> Path:
    arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
    Image.fromarray(arr).save(path)
    return path


# ------------------------------------------------------------------ light command line
@pytest.mark.parametrize("command", [None, "compress", "decompress", "eval", "train", "convert"])
def test_help_imports_neither_torch_nor_compressai(command):
    """What the ``dcae`` console script runs (``dcae_cli:main``)."""
    args = [command, "--help"] if command else ["--help"]
    code = (
        "import sys\n"
        "from dcae_cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = _run("-c", code)
    assert "usage: dcae" in result.stdout, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_the_console_script_is_the_light_launcher():
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts == {"dcae": "dcae_cli:main"}


def test_python_m_dcae_cli_help_is_light():
    result = _run("-X", "importtime", "-m", "dcae_cli", "--help")
    assert result.returncode == 0 and "usage: dcae" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert not [m for m in imported if m.split(".")[0] in HEAVY]


def test_python_m_dcae_still_runs_the_command_line():
    result = _run("-m", "dcae", "--version")
    assert result.returncode == 0 and result.stdout.startswith("dcae "), result.stderr


def test_import_dcae_registers_whatever_the_host_arguments(tmp_path):
    """CompressAI's ``examples/train.py`` convention, ``-m dcae``, through a
    wrapper that imports dcae: ``-m dcae`` among the host's own arguments
    (``sys.orig_argv``) used to make ``import dcae`` skip its registration
    (#23)."""
    wrapper = tmp_path / "train.py"
    wrapper.write_text(
        "import argparse, sys\n"
        "import dcae  # registers DCAE with CompressAI\n"
        "from compressai.zoo import image_models\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('-m', '--model', default='bmshj2018-factorized',\n"
        "                    choices=image_models.keys())\n"
        "parser.add_argument('-d', '--dataset', required=True)\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "net = image_models[args.model](quality=3)  # as examples/train.py does\n"
        "print('MODEL', args.model, type(net).__name__)\n"
    )
    for argv in (["-m", "dcae", "-d", "data"], ["--model", "dcae", "-d", "data"]):
        result = _run(str(wrapper), *argv, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "MODEL dcae DCAEModel" in result.stdout
    # and a program named dcae, or run as python -m with -m dcae in its arguments
    (tmp_path / "dcae_host").mkdir()
    (tmp_path / "dcae_host" / "__init__.py").write_text("")
    (tmp_path / "dcae_host" / "__main__.py").write_text(wrapper.read_text())
    result = _run("-m", "dcae_host", "-m", "dcae", "-d", "data", cwd=tmp_path)
    assert result.returncode == 0 and "MODEL dcae DCAEModel" in result.stdout, result.stderr


# ------------------------------------------------------------------ images too large
def _large_png(path: Path, w: int, h: int) -> Path:
    Image.new("L", (w, h)).save(path)  # a few KB on disk
    return path


def test_large_image_refused_before_decoding(tmp_path, capsys):
    src = _large_png(tmp_path / "big.png", 2000, 1500)
    line = _error(capsys, "compress", src, "--max-pixels", 1_000_000)
    assert "2000x1500" in line and "--max-pixels 3000000" in line and str(src) in line
    assert not (tmp_path / "big.dcae").exists()
    with pytest.raises(UnsupportedImageError, match="2000x1500.*max_pixels=3000000"):
        dcae.encode(src, max_pixels=1_000_000)
    with pytest.raises(UnsupportedImageError, match="2000x1500"):
        dcae.encode(Image.new("RGB", (2000, 1500)), max_pixels=1_000_000)


def test_pillows_bomb_limit_gives_way_to_max_pixels(tmp_path, capsys, monkeypatch):
    src = _large_png(tmp_path / "bomb.png", 3000, 2000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 6 Mpx is then "a bomb" to Pillow
    with open_image(src) as img:  # within dcae's default bound: read, no bomb error
        assert img.size == (3000, 2000)
    with pytest.raises(UnsupportedImageError, match="3000x2000"):
        open_image(src, max_pixels=5_000_000)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    line = _error(capsys, "compress", src, "--max-pixels", 5_000_000)
    assert "3000x2000" in line and "Traceback" not in line


def test_default_bound_is_decompress_bound():
    from dcae.cli import build_parser
    from dcae.format.limits import DEFAULT_MAX_PIXELS

    args = build_parser().parse_args(["compress", "x.png"])
    assert args.max_pixels == DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------ animated images
@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_are_refused(tmp_path, capsys, fmt):
    frames = [Image.new("RGB", (32, 24), c) for c in ("red", "green", "blue")]
    src = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(src, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(src) as check:
        assert getattr(check, "n_frames", 1) == 3
    line = _error(capsys, "compress", src)
    assert "animated (3 frames)" in line and str(src) in line
    with pytest.raises(UnsupportedImageError, match="animated"):
        dcae.encode(src)


def test_one_suffix_list(tmp_path):
    for name in ("a.png", "b.PGM", "c.gif", "d.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files(tmp_path)] == ["a.png", "b.PGM", "c.gif"]
    from dcae.cli import compress
    from dcae.eval import evaluate

    assert compress.IMAGE_SUFFIXES is evaluate.IMAGE_SUFFIXES


# ------------------------------------------------------------------ output locations
def test_missing_output_directory_refused_before_encoding(tmp_path, capsys, checkpoint):
    src = _png(tmp_path / "a.png")
    out = tmp_path / "missing" / "a.dcae"
    line = _error(capsys, "compress", src, "-o", out, "--checkpoint", checkpoint)
    assert str(out.parent) in line and ".tmp" not in line


def test_read_only_output_directory_refused_before_encoding(
    tmp_path, capsys, checkpoint, monkeypatch
):
    import dcae.codec

    src = _png(tmp_path / "a.png")
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    real_mkstemp = __import__("tempfile").mkstemp

    def read_only(*args, dir=None, **kwargs):  # also what root sees on a read-only mount
        if dir is not None and Path(dir) == out_dir:
            raise PermissionError(13, "Permission denied", str(Path(dir) / ".x.tmp"))
        return real_mkstemp(*args, dir=dir, **kwargs)

    encoded = []
    monkeypatch.setattr("tempfile.mkstemp", read_only)
    monkeypatch.setattr(dcae.codec, "encode", lambda *a, **k: encoded.append(1) or b"")
    line = _error(capsys, "compress", src, "-o", out_dir / "a.dcae", "--checkpoint", checkpoint)
    assert str(out_dir) in line and "Permission denied" in line and ".tmp" not in line
    assert not encoded
    if os.geteuid() != 0:  # a real read-only directory (root writes anyway)
        monkeypatch.undo()
        out_dir.chmod(0o555)
        try:
            line = _error(capsys, "compress", src, "-o", out_dir / "a.dcae")
            assert str(out_dir) in line and ".tmp" not in line
        finally:
            out_dir.chmod(0o755)


def test_write_errors_name_the_users_path(tmp_path):
    from dcae.cli.jobs import write_atomic

    def disk_full(tmp: str) -> None:
        raise OSError(28, "No space left on device", tmp)

    target = tmp_path / "out.dcae"
    with pytest.raises(OSError, match=f"cannot write {target}: No space left") as info:
        write_atomic(target, disk_full)
    assert ".tmp" not in str(info.value)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ hostile checkpoints
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_eval_model_refuses_a_hostile_pickle(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth.tar"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {"w": _Evil(marker)}}, f)
    images = tmp_path / "images"
    images.mkdir()
    _png(images / "a.png", 176, 176)  # MS-SSIM needs 161 per side
    result = _run(
        "-m", "dcae.eval.eval_model", "checkpoint", str(images),
        "-a", "bmshj2018-factorized", "-p", str(evil),
    )  # fmt: skip
    assert result.returncode != 0
    assert not marker.exists(), "the pickle was executed"
    assert "weights_only" in result.stderr or "not a readable" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["torch.save", "pickle.dump"])
def test_a_refused_checkpoint_gives_no_unsafe_advice_and_no_warning(tmp_path, kind):
    """torch's message says to re-run with ``weights_only=False`` (arbitrary
    code execution) and a plain pickle makes it warn in two lines first; the
    CLI prints one line of its own, and the payload never runs (#23)."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    obj = {"state_dict": {"w": _Evil(marker)}}
    if kind == "torch.save":
        import torch

        torch.save(obj, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(obj, f, protocol=4)
    png = _png(tmp_path / "a.png")
    result = _run("-m", "dcae", "compress", str(png), "--checkpoint", str(evil))
    assert result.returncode == 1 and not marker.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcae: error: "), result.stderr
    assert "not a readable PyTorch checkpoint" in lines[0] and "never unpickles" in lines[0]
    assert "False" not in lines[0] and "\x1b" not in lines[0]


def test_one_rans_guard_serves_every_decoder():
    """Every string handed to CompressAI's rANS decoder is padded by
    ``dcae.latent_codecs.rans.guard`` (#21: three guards with two bounds
    before): DCAE's y and z decoders, and other models' entropy coders."""
    import ast

    import dcae
    from dcae.latent_codecs.rans import GuardedCoder, guard

    seen = []

    class Coder:
        def decode_with_indexes(self, string, indexes, *args):
            seen.append(len(string))
            return [0] * len(indexes)

    GuardedCoder(Coder()).decode_with_indexes(b"\x01\x02\x03", [0] * 10)
    assert seen == [len(guard(b"\x01\x02\x03", 10))]
    package = Path(dcae.__file__).parent
    users = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        if "RansDecoder" in names or "decode_with_indexes" in path.read_text():
            users.add(path.relative_to(package).as_posix())
            assert "guard" in names, f"{path.name} decodes rANS without the guard"
    assert users == {
        "latent_codecs/slice_coders.py",
        "latent_codecs/hyper_codec.py",
        "latent_codecs/rans.py",
    }
