"""CompressAI registry and zoo entries, the authors' weights cache, eval_model."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import compressai.zoo
import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from compressai.registry import MODELS
from compressai.zoo.image import model_architectures
from PIL import Image
from torchvision.transforms.functional import to_tensor

from dcae import DCAEError, DCAEModel, ModelMismatchError
from dcae.zoo import official, registry
from dcae.zoo.checkpoints import save_checkpoint

KODAK = Path("/work/shared/datasets/kodak")


def test_registered_after_import() -> None:
    name = registry.ZOO_NAME
    assert name in ("dcae", "dcae-lu2025")
    assert MODELS[name] is DCAEModel
    assert compressai.zoo.image_models[name] is registry.dcae
    assert compressai.zoo.models[name] is registry.dcae
    assert model_architectures[name] is DCAEModel
    assert registry.register() == name  # idempotent


def test_does_not_override_a_compressai_dcae(monkeypatch: pytest.MonkeyPatch) -> None:
    class CompressAIsDCAE:  # stands for compressai.models.dcae.DCAE
        pass

    monkeypatch.setitem(MODELS, "dcae", CompressAIsDCAE)
    monkeypatch.setitem(compressai.zoo.image_models, "dcae", lambda **kw: None)
    monkeypatch.setitem(model_architectures, "dcae", CompressAIsDCAE)
    monkeypatch.delitem(MODELS, "dcae-lu2025", raising=False)
    assert registry._choose_name() == "dcae-lu2025"
    name = registry.register()
    try:
        assert name == "dcae-lu2025"
        assert MODELS["dcae"] is CompressAIsDCAE and MODELS[name] is DCAEModel
        assert model_architectures["dcae"] is CompressAIsDCAE
    finally:
        for d in (MODELS, compressai.zoo.image_models, compressai.zoo.models):
            d.pop("dcae-lu2025", None)
        model_architectures.pop("dcae-lu2025", None)


def test_qualities_map_to_the_official_lambdas() -> None:
    assert [official.lambda_for(q) for q in range(1, 7)] == [
        0.0018,
        0.0035,
        0.0067,
        0.013,
        0.025,
        0.05,
    ]
    assert [official.lambda_for(q, "ms-ssim") for q in range(1, 7)] == [
        2.40,
        4.58,
        8.73,
        16.64,
        31.73,
        60.5,
    ]
    assert set(official.OFFICIAL_URLS) == {(m, q) for m in official.METRICS for q in range(1, 7)}
    for bad in (0, 7, 2.0, True):
        with pytest.raises(ValueError, match="quality"):
            official.lambda_for(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric"):
        registry.dcae(1, metric="psnr")


def test_zoo_factory_builds_a_fresh_model() -> None:
    net = compressai.zoo.image_models[registry.ZOO_NAME](quality=2, config="small")
    assert isinstance(net, DCAEModel) and net.config.M == 96
    with pytest.raises(ValueError, match="no architecture"):
        registry.dcae(2, pretrained=True, config="small")


def test_missing_weights_say_what_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCAE_WEIGHTS_DIR", str(tmp_path))
    assert official.weights_dir() == tmp_path
    with pytest.raises(DCAEError) as err:
        registry.dcae(4, metric="ms-ssim", pretrained=True)
    msg = str(err.value)
    assert official.OFFICIAL_URLS[("ms-ssim", 4)] in msg
    assert str(tmp_path / "dcae-ms-ssim-q4.pth.tar") in msg
    assert "DCAE_WEIGHTS_DIR" in msg and "16.64" in msg
    monkeypatch.delenv("DCAE_WEIGHTS_DIR")
    assert official.weights_dir() == Path.home() / ".cache" / "dcae"


def _official_file(path: Path, model: DCAEModel) -> None:
    """Write ``model`` as the official train.py does (module. prefix, extras)."""
    sd = {"module." + k: v for k, v in model.to_official_state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 49, "state_dict": sd, "loss": 0.5}, path)


def test_pretrained_loads_converts_and_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    ref = DCAEModel("small").eval()
    # an official file under the name train.py gives it, in the metric subfolder
    _official_file(tmp_path / "mse" / "0.025checkpoint_best.pth.tar", ref)
    monkeypatch.setenv("DCAE_WEIGHTS_DIR", str(tmp_path))
    # the small model is not the authors' architecture: rejected
    with pytest.raises(ModelMismatchError, match="architecture"):
        registry.dcae(5, pretrained=True)
    # pretend the authors trained the small preset
    monkeypatch.setitem(official.PRESETS, "paper", ref.config)
    net = registry.dcae(5, pretrained=True)
    assert not net.training
    # what `eval_model pretrained -a dcae -q 5` calls
    loaded = _compressai_eval_model().load_pretrained(registry.ZOO_NAME, "mse", 5)
    assert isinstance(loaded, DCAEModel)
    assert net.entropy_model.gaussian_conditional.quantized_cdf.numel() > 0
    params = dict(net.named_parameters())
    for k, v in ref.named_parameters():
        assert torch.equal(params[k], v), k
    monkeypatch.setitem(official.KNOWN_SHA256, ("mse", 5), "0" * 64)
    with pytest.raises(DCAEError, match="sha256"):
        registry.dcae(5, pretrained=True)
    (tmp_path / "dcae-mse-q3.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelMismatchError, match="readable"):
        registry.dcae(3, pretrained=True)


def _bpp_and_psnr(model: DCAEModel, image: Path) -> tuple:
    """What compressai's eval_model computes, computed here."""
    x = to_tensor(Image.open(image).convert("RGB")).unsqueeze(0)
    pad, unpad = compute_padding(x.shape[2], x.shape[3], min_div=64)
    with torch.no_grad():
        enc = model.compress(F.pad(x, pad))
        x_hat = F.pad(model.decompress(enc["strings"], enc["shape"])["x_hat"], unpad)
    bpp = sum(len(s[0]) for s in enc["strings"]) * 8.0 / (x.shape[2] * x.shape[3])
    a, b = (x * 255).round(), (x_hat * 255).clamp(0, 255).round()
    return bpp, 20 * math.log10(255) - 10 * torch.log10((a - b).pow(2).mean()).item()


@pytest.mark.skipif(not KODAK.is_dir(), reason="needs the Kodak images")
def test_eval_model_end_to_end(tmp_path: Path, small_model: DCAEModel) -> None:
    from dcae.eval import eval_model

    """dcae.eval.eval_model on two Kodak images with a small checkpoint, in the dcae
    and the official layouts; then compressai.utils.plot on its JSON."""
    images = tmp_path / "kodak2"
    images.mkdir()
    for name in ("kodim01.png", "kodim02.png"):
        shutil.copy(KODAK / name, images / name)
    ckpt = tmp_path / "dcae-small.pth.tar"
    save_checkpoint(small_model, ckpt)
    official = tmp_path / "official-small.pth.tar"
    torch.save({"state_dict": small_model.to_official_state_dict()}, official)
    # what `python -m dcae.eval_model checkpoint ...` runs, in this process
    argv = ["checkpoint", str(images), "-a", registry.ZOO_NAME, "-p", str(ckpt), str(official)]
    argv += ["-d", str(tmp_path), "-o", "dcae-small"]
    threads = torch.get_num_threads()
    try:
        eval_model.main(argv)
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "dcae-small.json").read_text())
    assert result["name"] == f"{registry.ZOO_NAME}-mse"
    assert result["description"] == "Inference (ans)"
    res = result["results"]
    assert set(res) >= {"psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"}
    assert len(res["bpp"]) == 2  # one entry per checkpoint
    figures = [_bpp_and_psnr(small_model, images / n) for n in sorted(os.listdir(images))]
    bpp = sum(f[0] for f in figures) / 2
    psnr = sum(f[1] for f in figures) / 2
    for i in range(2):  # both layouts give the same, our own figures
        assert res["bpp"][i] == pytest.approx(bpp, rel=1e-12)
        assert res["psnr-rgb"][i] == pytest.approx(psnr, abs=1e-3)
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from compressai.utils.plot.__main__ import main as plot

    plot(["-f", str(tmp_path / "dcae-small.json"), "-o", str(tmp_path / "rd.png")])
    assert (tmp_path / "rd.png").stat().st_size > 0


def _compressai_eval_model():
    """CompressAI's eval_model module (its import sets torch to one thread: undone)."""
    threads = torch.get_num_threads()
    try:
        import compressai.utils.eval_model.__main__ as module
    finally:
        torch.set_num_threads(threads)
    return module


def test_eval_model_accepts_exactly_compressais_arguments() -> None:
    setup_args = _compressai_eval_model().setup_args

    from dcae.eval import eval_model

    args = setup_args().parse_args(["checkpoint", "/data", "-a", registry.ZOO_NAME, "-p", "a.pth"])
    assert args.architecture == registry.ZOO_NAME
    assert eval_model.main.__module__ == "dcae.eval.eval_model"
