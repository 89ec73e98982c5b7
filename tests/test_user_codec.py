"""dcae's tools with a researcher's own codec: ``dcae.encode``/``decode``, the
model loader, ``dcae compress/decompress/eval/convert --model`` and
``python -m dcae.eval_model``.

Two codecs stand in for a user's: CompressAI's ``bmshj2018-factorized``
(``FactorizedPrior(8, 8)``, a registry name with ``from_state_dict``) and
``user_codec:TinyCodec`` (tests/user_codec.py: built with ``TinyCodec()``, no
``downsampling_factor``, a dict ``shape``), both with random weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import FactorizedPrior
from PIL import Image
from user_codec import Payload, TinyCodec, tiny_codec

import dcae
from dcae.cli import main
from dcae.errors import DCAEError, DecodingError, FormatError, ModelMismatchError
from dcae.format.container import pack, unpack
from dcae.format.fingerprint import model_fingerprint, model_identity
from dcae.models.readiness import check_ready, missing_tables
from dcae.zoo import loading

TESTS = Path(__file__).resolve().parent
TINY = "user_codec:TinyCodec"
FACTORIZED = "bmshj2018-factorized"


def factorized(seed: int = 0) -> FactorizedPrior:
    torch.manual_seed(seed)
    model = FactorizedPrior(8, 8).eval()
    model.update(force=True)
    return model


def photo(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.BILINEAR)


def call(capsys, *args):
    """``(exit code, stdout, stderr)`` of the CLI run in-process."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny():
    return tiny_codec()


@pytest.mark.parametrize("make", [tiny_codec, factorized], ids=["TinyCodec", FACTORIZED])
@pytest.mark.parametrize("how", ["add_", "copy_"])
def test_writes_through_data_change_the_fingerprint(make, how):
    """CompressAI's latent codecs carry no string checks: a model changed in
    place through ``.data`` after encoding must be refused, not decode to
    garbage (#23)."""
    model = make()
    data = dcae.encode(photo(40, 56), model=model)
    assert dcae.decode(data, model=model).size == (56, 40)
    weight = model.g_s[0].weight
    if how == "add_":
        weight.data.add_(1e-3)
    else:
        weight.data.copy_(weight.data * 0.5)
    with pytest.raises(ModelMismatchError, match="not by the given model"):
        dcae.decode(data, model=model)


@pytest.fixture(scope="module")
def fp():
    return factorized()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Checkpoints as researchers save them during training (before ``update()``,
    so without CDF tables) of the ``tiny`` and ``fp`` models: a plain state dict
    (TinyCodec), CompressAI's training-script layout with DataParallel prefixes
    (FactorizedPrior)."""
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    torch.save(TinyCodec().state_dict(), d / "tiny.pt")
    torch.manual_seed(0)
    wrapped = {f"module.{k}": v for k, v in FactorizedPrior(8, 8).state_dict().items()}
    torch.save({"epoch": 3, "state_dict": wrapped, "loss": 1.0}, d / "fp.pth.tar")
    return {"tiny": d / "tiny.pt", "fp": d / "fp.pth.tar"}


# ---------------------------------------------------------------------------- encode/decode
@pytest.mark.parametrize("which", ["tiny", "fp"])
@pytest.mark.parametrize("h, w, mode", [(37, 53, "RGB"), (1, 1, "RGB"), (64, 16, "L")])
def test_round_trip_with_a_user_codec(request, which, h, w, mode):
    model = request.getfixturevalue(which)
    img = photo(h, w).convert(mode)
    data = dcae.encode(img, model=model)
    stream = unpack(data)
    multiple = 64 if which == "tiny" else 16  # downsampling_factor, 64 when absent
    assert stream.padding_policy == "multiple" and stream.pad_multiple == multiple
    ch, cw = stream.coded_size
    assert ch % multiple == 0 and cw % multiple == 0 and ch - h < multiple and cw - w < multiple
    assert stream.model_digest == model_fingerprint(model)
    out = dcae.decode(data, model=model)
    assert out.size == (w, h) and out.mode == mode
    # the decoded image is the model's reconstruction of the padded image, cropped
    x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    left, right, top, bottom = stream.padding
    with torch.no_grad():
        x_hat = model(torch.nn.functional.pad(x, stream.padding))["x_hat"].clamp(0, 1)
    ref = (x_hat[0, :, top : top + h, left : left + w] * 255).round().byte().permute(1, 2, 0)
    ref_img = Image.fromarray(ref.numpy())
    assert np.array_equal(np.asarray(out), np.asarray(ref_img.convert(mode)))


def test_the_file_names_the_model(tiny, fp):
    s = unpack(dcae.encode(photo(20, 20), model=tiny))
    assert (s.model_kind, s.model_name) == ("class", TINY)
    assert s.shape == {"y": torch.Size([16, 16])} and isinstance(s.shape["y"], torch.Size)
    s = unpack(dcae.encode(photo(20, 20), model=fp))
    assert (s.model_kind, s.model_name, s.strings[0] != b"") == ("compressai", FACTORIZED, True)
    assert model_identity(dcae.DCAEModel("small")) == ("dcae", "small")


def test_padding_can_be_chosen(fp):
    data = dcae.encode(photo(20, 30), model=fp, padding="official")
    s = unpack(data)
    assert s.padding_policy == "official" and s.coded_size == (128, 128)
    assert dcae.decode(data, model=fp).size == (30, 20)


def test_decode_without_the_model_says_which_to_pass(tiny, fp):
    for model, name in ((tiny, TINY), (fp, FACTORIZED)):
        data = dcae.encode(photo(16, 16), model=model)
        with pytest.raises(ModelMismatchError) as e:
            dcae.decode(data)
        message = str(e.value)
        assert repr(name) in message and f"--model {name} --checkpoint" in message
        assert "model=" in message and "never imports" in message


def test_another_model_is_refused(tiny, fp):
    data = dcae.encode(photo(16, 16), model=tiny)
    with pytest.raises(
        ModelMismatchError, match=f"'{TINY}'.*not by the given model '{FACTORIZED}'"
    ):
        dcae.decode(data, model=fp)
    with pytest.raises(ModelMismatchError, match="not by the given model"):
        dcae.decode(data, model=tiny_codec(seed=1))


def test_models_must_be_ready():
    with pytest.raises(
        DCAEError, match=r"no CDF tables .*entropy_bottleneck.*update\(force=True\)"
    ):
        dcae.encode(photo(8, 8), model=TinyCodec())
    with pytest.raises(TypeError, match="CompressionModel"):
        dcae.encode(photo(8, 8), model=torch.nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]
    with pytest.raises(DCAEError, match="update"):
        check_ready(dcae.DCAEModel("small"))


def test_training_mode_is_restored(tiny):
    tiny.train()
    try:
        data = dcae.encode(photo(8, 8), model=tiny)
        assert tiny.training
        assert dcae.decode(data, model=tiny).size == (8, 8)
        assert tiny.training
    finally:
        tiny.eval()


def test_what_a_file_cannot_hold_is_refused(tiny):
    class BadShape(TinyCodec):
        def compress(self, x):
            out = super().compress(x)
            # a string (floats are storable since format version 4, NaN is not)
            return {**out, "shape": {"y": out["shape"]["y"], "scale": "half", "q": float("nan")}}

    class Batched(TinyCodec):
        def compress(self, x):
            out = super().compress(x)
            return {**out, "strings": [out["strings"][0] * 2]}

    for cls in (BadShape, Batched):
        model = cls()
        model.load_state_dict(tiny.state_dict())
        with pytest.raises(DCAEError, match="cannot store|one byte string"):
            dcae.encode(photo(8, 8), model=model.eval())


def test_corrupted_user_codec_files_fail_cleanly(tiny, fp):
    """Strings cut, emptied or swapped and shapes changed (CRC recomputed):
    CompressAI's decoder reads zeros, never past the string, and the result is a
    DCAEError or an image of the recorded size."""
    for model in (tiny, fp):
        stream = unpack(dcae.encode(photo(40, 40), model=model))
        y = stream.strings[0]
        cases = [dataclasses.replace(stream, strings=(y[: len(y) // 3],))]
        cases.append(dataclasses.replace(stream, strings=(b"",)))
        cases.append(dataclasses.replace(stream, strings=(y, y)))
        shape = stream.shape
        for bad in ({"y": torch.Size([1, 1])}, {"z": shape}, torch.Size([1, 1]), (3,), None):
            cases.append(dataclasses.replace(stream, shape=bad))
        outcomes = set()
        for case in cases:
            try:
                img = dcae.decode(pack(case), model=model)
            except DCAEError as e:
                outcomes.add(type(e).__name__)
            else:
                assert img.size == (40, 40)
                outcomes.add("decoded")
        assert "DecodingError" in outcomes


def test_crafted_shapes_are_bounded_by_the_image_size(tiny):
    stream = unpack(dcae.encode(photo(16, 16), model=tiny))
    huge = dataclasses.replace(stream, shape={"y": torch.Size([60000, 60000])})
    with pytest.raises(FormatError, match="describes more than"):
        pack(huge)


# ---------------------------------------------------------------------------- loader
def test_resolve_class():
    assert loading.resolve_class(TINY) is TinyCodec
    assert loading.resolve_class(FACTORIZED) is FactorizedPrior
    assert loading.resolve_class("dcae") is dcae.DCAEModel
    assert loading.resolve_class("compressai.models:FactorizedPrior") is FactorizedPrior
    for spec, message in [
        ("no_such_module_xyz:Codec", "cannot import 'no_such_module_xyz'"),
        ("user_codec:Missing", "has no 'Missing'"),
        ("user_codec:tiny_codec", "not a compressai.models.CompressionModel"),
        ("torch.nn:Conv2d", "not a compressai.models.CompressionModel"),
        ("user_codec:", "module:Class"),
        ("bmshj2018", "unknown model 'bmshj2018'.*bmshj2018-factorized"),
    ]:
        with pytest.raises(DCAEError, match=message):
            loading.resolve_class(spec)


def test_load_model_builds_updates_and_matches(checkpoints, tiny, fp):
    a = loading.load_model(checkpoints["tiny"], TINY)  # TinyCodec() + load_state_dict
    b = loading.load_model(checkpoints["fp"], FACTORIZED)  # from_state_dict, "module." stripped
    assert isinstance(a, TinyCodec) and isinstance(b, FactorizedPrior)
    assert not a.training and not missing_tables(a)
    assert model_fingerprint(a) == model_fingerprint(tiny)  # update() rebuilds the same tables
    assert model_fingerprint(b) == model_fingerprint(fp)
    with pytest.raises(ModelMismatchError, match="does not fit user_codec:TinyCodec"):
        loading.load_model(checkpoints["fp"], TINY)
    with pytest.raises(ModelMismatchError, match="does not fit a DCAE model.*--model"):
        loading.load_model(checkpoints["tiny"])
    with pytest.raises(FileNotFoundError):
        loading.load_model(checkpoints["tiny"].with_name("missing.pt"), TINY)


def test_checkpoints_are_loaded_with_weights_only(tmp_path, fp):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": fp.state_dict(), "extra": Payload()}, path)
    with pytest.raises(ModelMismatchError, match="not a readable PyTorch checkpoint"):
        loading.load_model(path, FACTORIZED)
    assert "DCAE_TEST_UNPICKLED" not in os.environ


def test_class_without_defaults_needs_from_state_dict(tmp_path, fp):
    torch.save(fp.state_dict(), tmp_path / "fp.pt")
    with pytest.raises(ModelMismatchError, match="from_state_dict"):
        loading.load_model(tmp_path / "fp.pt", "user_codec:NeedsArgs")


# ---------------------------------------------------------------------------- command line
def test_cli_compress_decompress_with_model(checkpoints, tiny, tmp_path, capsys):
    src = tmp_path / "a.png"
    photo(37, 53).save(src)
    for name, key, model in ((TINY, "tiny", tiny), (FACTORIZED, "fp", None)):
        out = tmp_path / f"a-{key}.dcae"
        code, stdout, err = call(
            capsys, "compress", src, "-o", out, "--model", name, "--checkpoint", checkpoints[key]
        )
        assert code == 0, err
        assert "bpp" in stdout and unpack(out.read_bytes()).model_name == name
        dec = tmp_path / f"a-{key}.png"
        code, _, err = call(
            capsys, "decompress", out, "-o", dec, "--model", name, "--checkpoint", checkpoints[key]
        )
        assert code == 0, err
        assert Image.open(dec).size == (53, 37)
        if model is not None:  # the CLI decodes exactly what the Python API decodes
            assert np.array_equal(
                np.asarray(Image.open(dec)), np.asarray(dcae.decode(out, model=model))
            )

    # without --model: the message names the model and the option to pass
    code, _, err = call(capsys, "decompress", tmp_path / "a-tiny.dcae", "-o", tmp_path / "x.png")
    assert code == 1 and f"--model {TINY} --checkpoint" in err
    assert not (tmp_path / "x.png").exists()
    # --model without --checkpoint, a wrong checkpoint, an unknown name
    code, _, err = call(capsys, "compress", src, "-o", tmp_path / "b.dcae", "--model", TINY)
    assert code == 1 and "needs --checkpoint" in err
    code, _, err = call(
        capsys, "compress", src, "-o", tmp_path / "b.dcae", "--checkpoint", checkpoints["tiny"]
    )
    assert code == 1 and "does not fit a DCAE model" in err and "--model" in err
    code, _, err = call(
        capsys, "compress", src, "-o", tmp_path / "b.dcae", "--model", "nope",
        "--checkpoint", checkpoints["tiny"],
    )  # fmt: skip
    assert code == 1 and "unknown model 'nope'" in err
    assert not (tmp_path / "b.dcae").exists()


def test_cli_finds_module_in_the_current_folder(checkpoints, tmp_path):
    """The ``dcae`` console script: a module in the current folder is found."""
    src = tmp_path / "a.png"
    photo(20, 20).save(src)
    (tmp_path / "my_codec_mod.py").write_text((TESTS / "user_codec.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = (
        "import sys; from dcae.cli import main; sys.path.remove('') if '' in sys.path else None; "
        "sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "compress", "a.png", "--model", "my_codec_mod:TinyCodec",
         "--checkpoint", str(checkpoints["tiny"])],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert unpack((tmp_path / "a.dcae").read_bytes()).model_name == "my_codec_mod:TinyCodec"


def test_convert_user_codec_checkpoint(checkpoints, tiny, tmp_path, capsys):
    out = tmp_path / "tiny-dcae.pt"
    code, stdout, err = call(capsys, "convert", checkpoints["tiny"], out, "--model", TINY)
    assert code == 0, err
    assert "CDF tables" in stdout
    saved = torch.load(out, weights_only=True)
    assert (
        saved["architecture"] == TINY
        and saved["state_dict"]["entropy_bottleneck._quantized_cdf"].numel()
    )
    # the converted file still needs --model for a module:Class (never imported from a file)
    with pytest.raises(ModelMismatchError, match=f"pass --model {TINY}"):
        loading.load_model(out)
    assert model_fingerprint(loading.load_model(out, TINY)) == model_fingerprint(tiny)
    code, _, err = call(
        capsys,
        "convert",
        checkpoints["tiny"],
        tmp_path / "o.pt",
        "--model",
        TINY,
        "--to",
        "official",
    )
    assert code == 1 and "--to dcae only" in err
    code, _, err = call(capsys, "convert", checkpoints["tiny"], tmp_path / "o.pt")
    assert code == 1 and "--model" in err
    # a registry name recorded in a converted file is used without --model
    fp_out = tmp_path / "fp-dcae.pt"
    assert call(capsys, "convert", checkpoints["fp"], fp_out, "--model", FACTORIZED)[0] == 0
    assert isinstance(loading.load_model(fp_out), FactorizedPrior)
    with pytest.raises(ModelMismatchError, match="holds a 'bmshj2018-factorized' model, not"):
        loading.load_model(fp_out, TINY)


@pytest.fixture(scope="module")
def eval_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    for i in range(2):
        photo(170, 180, seed=i).save(d / f"img{i}.png")
    return d


def test_dcae_eval_with_model(checkpoints, eval_images, tiny, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = call(
        capsys, "eval", eval_images, "-o", out, "--model", TINY,
        "--checkpoint", checkpoints["tiny"], checkpoints["tiny"],
        "--jpeg-qualities", "50", "--webp-qualities", "none", "--no-anchors", "--no-plot",
        "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "Bjontegaard" in stdout
    result = json.loads((out / "user-codec-tinycodec.json").read_text())
    assert result["name"] == TINY and len(result["results"]["bpp"]) == 2
    # the rate is the payload of the .dcae files the codec writes
    payloads = [
        unpack(dcae.encode(eval_images / f"img{i}.png", model=tiny)).payload_bytes for i in (0, 1)
    ]
    bpp = sum(8 * p / (170 * 180) for p in payloads) / 2
    assert result["results"]["bpp"] == pytest.approx([bpp, bpp])
    code, _, err = call(capsys, "eval", eval_images, "-o", out, "--model", TINY, "--no-anchors")
    assert code == 1 and "needs --checkpoint" in err


def _eval_model(argv):
    from dcae.eval import eval_model

    threads = torch.get_num_threads()
    try:
        eval_model.main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)


def test_eval_model_with_user_checkpoints(checkpoints, eval_images, tmp_path):
    import compressai.zoo

    for arch, key in ((TINY, "tiny"), (FACTORIZED, "fp")):
        _eval_model(
            ["checkpoint", eval_images, "-a", arch, "-p", checkpoints[key], "-d", tmp_path,
             "-o", f"{key}.json"]
        )  # fmt: skip
        result = json.loads((tmp_path / f"{key}.json").read_text())
        assert result["name"] == f"{arch}-mse" and len(result["results"]["bpp"]) == 1
        assert result["results"]["bpp"][0] > 0
    assert TINY not in compressai.zoo.image_models  # registered for the run only
    with pytest.raises(SystemExit, match="cannot import"):
        _eval_model(["checkpoint", eval_images, "-a", "nowhere_xyz:C", "-p", checkpoints["tiny"]])


def test_eval_model_loads_with_weights_only(eval_images, tmp_path, fp):
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": fp.state_dict(), "extra": Payload()}, path)
    with pytest.raises(SystemExit, match="not a readable PyTorch checkpoint"):
        _eval_model(["checkpoint", eval_images, "-a", FACTORIZED, "-p", path])
    assert "DCAE_TEST_UNPICKLED" not in os.environ


def test_decoding_error_type_is_exported():
    assert issubclass(DecodingError, DCAEError)


# ---------------------------------------------------------------------------- tutorial
TUTORIAL = TESTS.parent / "docs" / "guides" / "tutorial.rst"


def tutorial_block(caption: str) -> str:
    """The code block of docs/guides/tutorial.rst with ``:caption: caption``."""
    lines = TUTORIAL.read_text().splitlines()
    start = lines.index(f"   :caption: {caption}") + 1
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def test_tutorial_codec_section_runs(tmp_path, monkeypatch, capsys):
    """Section 5 of the tutorial as written: its codec, its training script (one
    step per rate point), dcae.encode, dcae compress --model and dcae eval --model."""
    import runpy

    for name in ("my_codecs.py", "train_my_codec.py"):
        (tmp_path / name).write_text(tutorial_block(name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_codecs", raising=False)
    images = TESTS.parent / "examples" / "images"
    monkeypatch.setattr(sys, "argv", ["train_my_codec.py", str(images), "1"])
    runpy.run_path("train_my_codec.py", run_name="__main__")
    assert sorted(p.name for p in tmp_path.glob("mine-q*.pt")) == [
        f"mine-q{q}.pt" for q in range(1, 5)
    ]

    model = loading.load_model("mine-q3.pt", "my_codecs:MyCodec")
    data = dcae.encode(images / "kodim23_crop.png", model=model)
    assert unpack(data).model_name == "my_codecs:MyCodec" and unpack(data).pad_multiple == 16
    assert dcae.decode(data, model=model).size == (384, 256)

    capsys.readouterr()
    code, _, err = call(
        capsys, "compress", images / "kodim23_crop.png", "-o", "k.dcae",
        "--model", "my_codecs:MyCodec", "--checkpoint", "mine-q3.pt",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "k.dcae").read_bytes() == data
    code, stdout, err = call(
        capsys, "eval", images, "--model", "my_codecs:MyCodec", "--checkpoint",
        *[f"mine-q{q}.pt" for q in range(1, 5)], "-o", "report", "--no-anchors", "--no-plot",
        "--jpeg-qualities", "10,30,50,70", "--webp-qualities", "none", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "report" / "my-codecs-mycodec.json").read_text())
    assert result["name"] == "my_codecs:MyCodec" and len(result["results"]["bpp"]) == 4
    assert "| JPEG (Pillow) |" in stdout


# ---------------------------------------------------------------------------- #23
def test_decompress_with_a_checkpoint_but_no_model_names_the_files_model(
    checkpoints, tmp_path, capsys
):
    """``--checkpoint`` without ``--model`` for a user codec's file: the
    message names the model the file records and the option to pass, instead
    of "does not fit a DCAE model" quoting a DCAE key."""
    src = tmp_path / "a.png"
    photo(20, 30).save(src)
    out = tmp_path / "a.dcae"
    args = ("--model", TINY, "--checkpoint", checkpoints["tiny"])
    assert call(capsys, "compress", src, "-o", out, *args)[0] == 0
    code, _, err = call(
        capsys, "decompress", out, "-o", tmp_path / "a2.png", "--checkpoint", checkpoints["tiny"]
    )
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"class '{TINY}'" in err and f"--model {TINY} --checkpoint" in err
    assert "DCAE key" not in err and "does not fit" not in err
    assert not (tmp_path / "a2.png").exists()


class RegisteredTiny(TinyCodec):
    """A user's codec registered in CompressAI's registry under a name of theirs."""


def test_a_registered_user_class_is_recorded_as_module_class(tmp_path):
    from compressai.registry import MODELS, register_model

    register_model("user-tiny-23")(RegisteredTiny)
    try:
        torch.manual_seed(0)
        model = RegisteredTiny().eval()
        model.update(force=True)
        s = unpack(dcae.encode(photo(16, 16), model=model))
        # the registry name means nothing to a fresh process: module:Class does
        assert (s.model_kind, s.model_name) == ("class", f"{__name__}:RegisteredTiny")
    finally:
        del MODELS["user-tiny-23"]
    # a file of an earlier dcae that recorded such a name: the advice is module:Class
    old = dataclasses.replace(s, model_kind="compressai", model_name="user-tiny-23")
    with pytest.raises(ModelMismatchError) as e:
        dcae.decode(pack(old))
    assert "--model module:Class" in str(e.value) and "user-tiny-23" in str(e.value)
    with pytest.raises(DCAEError, match="module:Class.*registers"):
        loading.resolve_class("user-tiny-23")


def test_minimal_padding_pads_to_the_codecs_need(tiny):
    """``padding="minimal"`` for a codec without internal padding raised a
    raw RuntimeError (tensor sizes 10 and 12); it now pads to the codec's
    downsampling factor (64 without one), edge-replicated."""
    img = photo(37, 53)
    data = dcae.encode(img, model=tiny, padding="minimal")
    s = unpack(data)
    assert s.padding_policy == "minimal" and s.coded_size == (64, 64)
    assert dcae.decode(data, model=tiny).size == (53, 37)


def test_a_codec_that_cannot_code_the_size_fails_in_one_line(capsys):
    """A hyperprior whose downsampling factor is wrong (16 for 64) fails in
    compress with a shape mismatch: one line naming the padded size."""
    from compressai.models import ScaleHyperprior

    class WrongFactor(ScaleHyperprior):
        @property
        def downsampling_factor(self) -> int:
            return 16

    torch.manual_seed(0)
    model = WrongFactor(8, 8).eval()
    model.update(force=True)
    with pytest.raises(DCAEError) as e:
        dcae.encode(photo(37, 53), model=model, padding="minimal")
    message = str(e.value)
    assert "\n" not in message
    assert "WrongFactor.compress failed on the 64x48 image (padding 'minimal'" in message
    assert "Error: " in message and "downsampling_factor" in message


def test_a_class_found_in_the_current_folder_leaves_sys_path_unchanged(tmp_path, monkeypatch):
    """``--model mod:Class`` looks in the current folder too, for that import
    only: ``sys.path`` is as it was afterwards (#21)."""
    (tmp_path / "cwd_codec_21.py").write_text((TESTS / "user_codec.py").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cwd_codec_21", raising=False)
    before = list(sys.path)
    cls = loading.resolve_class("cwd_codec_21:TinyCodec")
    assert cls.__name__ == "TinyCodec" and sys.path == before
