"""``dcae compress`` / ``dcae decompress``.

A few runs go through a real subprocess (exit codes, one-line errors, no
partial files); the other cases call :func:`dcae.cli.main` in-process, which
is what the console script runs, to keep the suite fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcae import DCAEModel
from dcae.cli import main
from dcae.format.container import unpack
from dcae.zoo.checkpoints import save_checkpoint


def run_dcae(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "dcae", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def call(capsys, *args):
    """``(exit code, stdout, stderr)`` of the CLI run in-process."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dcae: error: "), stderr
    return lines[0]


def leftovers(directory: Path):
    """Hidden temporary files the atomic writer may have left."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def checkpoint(small_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(small_model, path)
    return path


def image(path: Path, h: int, w: int, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


# ---------------------------------------------------------------------------- subprocess
def test_subprocess_compress_no_overwrite_and_failed_decompress(checkpoint, tmp_path):
    src = image(tmp_path / "a.png", 37, 53)
    out = tmp_path / "a.dcae"
    proc = run_dcae("compress", src, "-o", out, "--checkpoint", checkpoint)
    assert proc.returncode == 0, proc.stderr
    assert "bpp" in proc.stdout and "bytes" in proc.stdout and " s" in proc.stdout
    first = out.read_bytes()
    assert unpack(first).width == 53

    proc = run_dcae("compress", src, "-o", out, "--checkpoint", checkpoint)
    assert proc.returncode == 1
    assert "exists" in one_line_error(proc.stderr) and "--force" in proc.stderr
    assert out.read_bytes() == first

    (tmp_path / "cut.dcae").write_bytes(first[: len(first) // 2])
    proc = run_dcae("decompress", tmp_path / "cut.dcae", "--checkpoint", checkpoint)
    assert proc.returncode == 1 and "truncated" in one_line_error(proc.stderr)
    assert not (tmp_path / "cut.png").exists()
    assert leftovers(tmp_path) == []


def test_subprocess_directory_with_progress(checkpoint, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    image(src / "a.png", 20, 30)
    image(src / "b.png", 9, 5, "L")
    image(src / "c.png", 8, 8, "LA")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    proc = run_dcae("compress", src, "-o", out, "--checkpoint", checkpoint)
    assert proc.returncode == 1
    assert "1/3" in proc.stdout and "2/3 files compressed" in proc.stdout
    assert "c.png: error:" in proc.stderr and "1 of 3 files failed" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.dcae", "b.dcae"]
    assert leftovers(out) == []


# ---------------------------------------------------------------------------- in-process
def test_round_trip_and_force(checkpoint, tmp_path, capsys):
    src = image(tmp_path / "a.png", 37, 53)
    code, out, _ = call(
        capsys, "compress", src, "--checkpoint", checkpoint, "--padding", "official"
    )
    assert code == 0 and "bpp" in out
    assert unpack((tmp_path / "a.dcae").read_bytes()).padding_policy == "official"

    dec = tmp_path / "a_dec.png"
    code, out, err = call(
        capsys, "decompress", tmp_path / "a.dcae", "-o", dec, "--checkpoint", checkpoint
    )
    assert code == 0, err
    assert Image.open(dec).size == (53, 37) and Image.open(dec).mode == "RGB"

    dec.write_bytes(b"old")
    code, _, err = call(
        capsys, "decompress", tmp_path / "a.dcae", "-o", dec, "--checkpoint", checkpoint
    )
    assert code == 1 and "exists" in one_line_error(err)
    assert dec.read_bytes() == b"old"
    code, _, err = call(
        capsys, "decompress", tmp_path / "a.dcae", "-o", dec, "--checkpoint", checkpoint, "--force"
    )
    assert code == 0, err
    assert Image.open(dec).size == (53, 37)
    assert leftovers(tmp_path) == []


def test_default_output_names_and_output_directory(checkpoint, tmp_path, capsys):
    src = image(tmp_path / "b.png", 10, 12, "L")
    assert call(capsys, "compress", src, "--checkpoint", checkpoint)[0] == 0
    assert (tmp_path / "b.dcae").exists()
    outdir = tmp_path / "decoded"
    outdir.mkdir()
    assert (
        call(capsys, "decompress", tmp_path / "b.dcae", "-o", outdir, "--checkpoint", checkpoint)[
            0
        ]
        == 0
    )
    assert Image.open(outdir / "b.png").mode == "L"


def test_errors_are_one_line_and_leave_nothing(checkpoint, tmp_path, capsys):
    rgba = image(tmp_path / "rgba.png", 16, 16, "RGBA")
    code, _, err = call(capsys, "compress", rgba, "--checkpoint", checkpoint)
    assert code == 1 and "alpha" in one_line_error(err)
    assert not (tmp_path / "rgba.dcae").exists()

    good = image(tmp_path / "g.png", 16, 16)
    code, _, err = call(capsys, "compress", good, "-o", tmp_path / "x.dcae", "--checkpoint", rgba)
    assert code == 1 and "checkpoint" in one_line_error(err)
    assert not (tmp_path / "x.dcae").exists()

    code, _, err = call(capsys, "compress", tmp_path / "missing.png", "--checkpoint", checkpoint)
    assert code == 1 and "no such file" in one_line_error(err)

    assert call(capsys, "compress", good, "--checkpoint", checkpoint)[0] == 0
    code, _, err = call(capsys, "decompress", tmp_path / "g.dcae", "-o", tmp_path / "g.xyz")
    assert code == 1 and "suffix" in one_line_error(err)

    code, _, err = call(
        capsys,
        "decompress",
        tmp_path / "g.dcae",
        "-o",
        tmp_path / "g3.png",
        "--checkpoint",
        checkpoint,
        "--max-pixels",
        255,
    )
    assert code == 1 and "max_pixels" in one_line_error(err)
    assert not (tmp_path / "g3.png").exists()

    data = bytearray((tmp_path / "g.dcae").read_bytes())
    data[-10] ^= 1
    (tmp_path / "bad.dcae").write_bytes(bytes(data))
    code, _, err = call(capsys, "decompress", tmp_path / "bad.dcae", "--checkpoint", checkpoint)
    assert code == 1 and "CRC32" in one_line_error(err)
    assert not (tmp_path / "bad.png").exists()

    torch_seeded_other = tmp_path / "other.pt"
    torch.manual_seed(5)
    other = DCAEModel("small").eval()
    other.update(force=True)
    save_checkpoint(other, torch_seeded_other)
    code, _, err = call(
        capsys,
        "decompress",
        tmp_path / "g.dcae",
        "-o",
        tmp_path / "g2.png",
        "--checkpoint",
        torch_seeded_other,
    )
    assert code == 1 and "written by model" in one_line_error(err)
    assert not (tmp_path / "g2.png").exists()
    assert leftovers(tmp_path) == []


def test_directory_round_trip_refuses_existing_outputs(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    image(src / "a.png", 20, 30)
    image(src / "b.jpg", 9, 5)
    out = tmp_path / "out"
    code, stdout, err = call(capsys, "compress", src, "-o", out, "--checkpoint", checkpoint)
    assert code == 0, err
    assert "[" in stdout and "2/2 files compressed" in stdout
    dec = tmp_path / "dec"
    code, stdout, err = call(capsys, "decompress", out, "-o", dec, "--checkpoint", checkpoint)
    assert code == 0, err
    assert Image.open(dec / "a.png").size == (30, 20)
    assert Image.open(dec / "b.png").size == (5, 9)
    before = (dec / "a.png").read_bytes()
    code, _, err = call(capsys, "decompress", out, "-o", dec, "--checkpoint", checkpoint)
    assert code == 1 and "exists" in one_line_error(err)
    assert (dec / "a.png").read_bytes() == before
    code, _, err = call(capsys, "compress", src, "-o", src / "a.png", "--checkpoint", checkpoint)
    assert code == 1 and "not a directory" in one_line_error(err)


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compress", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--quality", "--target-bpp", "--force", "--padding", "--model"):
        assert flag in out
    with pytest.raises(SystemExit):
        main(["compress", "x.png", "--quality", "1", "--target-bpp", "0.5"])
    assert "not allowed with" in capsys.readouterr().err


# ---------------------------------------------------------------------------- #23
def test_decompress_refuses_lossy_suffixes_and_writes_lossless_ones(checkpoint, tmp_path, capsys):
    src = image(tmp_path / "a.png", 20, 30)
    assert call(capsys, "compress", src, "--checkpoint", checkpoint)[0] == 0
    for name in ("a.jpg", "a.JPEG", "a.gif"):
        code, _, err = call(
            capsys, "decompress", tmp_path / "a.dcae", "-o", tmp_path / name,
            "--checkpoint", checkpoint,
        )  # fmt: skip
        assert code == 1 and "lossily" in one_line_error(err) and ".png" in err
        assert not (tmp_path / name).exists()
    decoded = {}
    for suffix in (".png", ".webp", ".tiff", ".bmp", ".ppm"):
        out = tmp_path / f"dec{suffix}"
        code, _, err = call(
            capsys, "decompress", tmp_path / "a.dcae", "-o", out, "--checkpoint", checkpoint
        )
        assert code == 0, err
        with Image.open(out) as img:
            decoded[suffix] = np.asarray(img.convert("RGB"))
    for arr in decoded.values():  # every one holds the decoded pixels exactly
        assert np.array_equal(arr, decoded[".png"])
    assert leftovers(tmp_path) == []


def test_compress_writes_only_dcae_names(checkpoint, tmp_path, capsys):
    src = image(tmp_path / "a.png", 20, 30)
    for name in ("x.png", "x.jpg", "x"):
        code, _, err = call(
            capsys, "compress", src, "-o", tmp_path / name, "--checkpoint", checkpoint
        )
        assert code == 1 and "writes .dcae files" in one_line_error(err)
        assert not (tmp_path / name).exists()
    code, _, err = call(
        capsys, "compress", src, "-o", tmp_path / "x.DCAE", "--checkpoint", checkpoint
    )
    assert code == 0, err


def run_bytes(*args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "dcae", *map(str, args)],
        input=stdin, capture_output=True, env=env, timeout=600,
    )  # fmt: skip


def test_dash_is_standard_input_and_output(checkpoint, tmp_path, capsys):
    src = image(tmp_path / "a.png", 20, 30)
    dcae_file, ref = tmp_path / "a.dcae", tmp_path / "ref.png"
    assert call(capsys, "compress", src, "-o", dcae_file, "--checkpoint", checkpoint)[0] == 0
    assert call(capsys, "decompress", dcae_file, "-o", ref, "--checkpoint", checkpoint)[0] == 0
    # compress - > stdout: the bytes of the file
    proc = run_bytes("compress", "-", "--checkpoint", checkpoint, stdin=src.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == dcae_file.read_bytes()
    assert b"- -> -" in proc.stderr  # the progress line goes to stderr
    # decompress - -o -: a PNG of the decoded pixels
    proc = run_bytes(
        "decompress", "-", "-o", "-", "--checkpoint", checkpoint, "-q", stdin=proc.stdout
    )
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    piped = tmp_path / "piped.png"
    piped.write_bytes(proc.stdout)
    assert np.array_equal(np.asarray(Image.open(piped)), np.asarray(Image.open(ref)))
    assert not (tmp_path / "-").exists() and not (Path.cwd() / "-").exists()
    # a file to standard output, standard input to a file
    proc = run_bytes("compress", src, "-o", "-", "--checkpoint", checkpoint)
    assert proc.returncode == 0 and proc.stdout == dcae_file.read_bytes()
    proc = run_bytes(
        "decompress", "-", "-o", tmp_path / "b.png", "--checkpoint", checkpoint,
        stdin=dcae_file.read_bytes(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), np.asarray(Image.open(ref)))
    # a directory to standard output: refused in one line
    code, _, err = call(capsys, "compress", tmp_path, "-o", "-", "--checkpoint", checkpoint)
    assert code == 1 and "standard output" in one_line_error(err)


# ---------------------------------------------------------------------------- --device
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["compress", "decompress", "eval", "train"])
def test_device_cuda_without_a_gpu_is_one_line(checkpoint, tmp_path, capsys, command):
    src = image(tmp_path / "a.png", 24, 40)
    args = {
        "compress": ["compress", src, "--checkpoint", checkpoint],
        "decompress": ["decompress", tmp_path / "a.dcae", "-o", tmp_path / "b.png"]
        + ["--checkpoint", checkpoint],
        "eval": ["eval", tmp_path, "--checkpoint", checkpoint, "-o", tmp_path / "ev"],
        "train": ["train", tmp_path, "-o", tmp_path / "run", "--steps", "1"],
    }[command]
    if command == "decompress":
        assert call(capsys, "compress", src, "--checkpoint", checkpoint)[0] == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = call(capsys, *args, "--device", "cuda")
    assert code == 1 and "no CUDA GPU" in one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_device_auto_and_cpu_code_the_same_bytes(checkpoint, tmp_path, capsys, device):
    src = image(tmp_path / "a.png", 24, 40)
    out = tmp_path / f"{device}.dcae"
    code, _, _ = call(capsys, "compress", src, "-o", out, "--checkpoint", checkpoint, "-q")
    assert code == 0
    ref = out.read_bytes()
    out.unlink()
    args = ["compress", src, "-o", out, "--checkpoint", checkpoint, "-q", "--device", device]
    assert call(capsys, *args)[0] == 0
    assert out.read_bytes() == ref
    dec = ["decompress", out, "-o", tmp_path / "d.png", "-q", "--device", device]
    assert call(capsys, *dec, "--checkpoint", checkpoint)[0] == 0
    assert Image.open(tmp_path / "d.png").size == (40, 24)


def test_unknown_device_is_one_line(checkpoint, tmp_path, capsys):
    src = image(tmp_path / "a.png", 24, 40)
    code, _, err = call(capsys, "compress", src, "--checkpoint", checkpoint, "--device", "tpu")
    assert code == 1 and "unknown device" in one_line_error(err)
