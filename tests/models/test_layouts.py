"""Checkpoint layouts: official <-> dcae <-> CompressAI port, and ``dcae convert``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Mapping

import pytest
import torch

from dcae import PRESETS, DCAEModel, ModelMismatchError
from dcae.cli import main as cli
from dcae.models.infer_config import config_of
from dcae.models.layouts import (
    compressai_to_official,
    detect_layout,
    official_to_compressai,
    to_dcae_layout,
    to_layout,
    to_official_layout,
)


def assert_same(a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    assert list(a) == list(b) or set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def small_sd() -> Dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = DCAEModel("small")
    model.update(force=True)
    return model.state_dict()


def test_official_dcae_official_is_lossless(small_sd) -> None:
    official = to_official_layout(small_sd)
    assert detect_layout(official) == "official"
    dcae_sd = to_dcae_layout(official)
    assert_same(dcae_sd, small_sd)
    assert_same(to_official_layout(dcae_sd), official)
    # as the official train.py saves it: wrapped, DataParallel prefixes
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in official.items()}}
    assert_same(to_dcae_layout(wrapped), small_sd)


def test_compressai_port_layout_round_trips(small_sd) -> None:
    official = to_official_layout(small_sd)
    port = official_to_compressai(official)
    assert detect_layout(port) == "compressai"
    assert "shared_dictionary.dt" in port and "dt" not in port
    m = 96
    # the port feeds [means, scales]: the leading 2M input channels are swapped
    w_off = official["dt_cross_attention.1.x_trans.weight"]
    w_port = port["latent_codec.y.channel_context.y1.cross_attention.x_trans.weight"]
    assert torch.equal(w_port[:, :m], w_off[:, m : 2 * m])
    assert torch.equal(w_port[:, m : 2 * m], w_off[:, :m])
    assert torch.equal(w_port[:, 2 * m :], w_off[:, 2 * m :])
    assert torch.equal(port["latent_codec.h_s.h_scale_s.0.weight"], official["h_z_s1.0.weight"])
    assert torch.equal(port["latent_codec.h_s.h_mean_s.0.weight"], official["h_z_s2.0.weight"])
    # one GaussianConditional, fanned out per slice
    gc = [k for k in port if k.endswith("gaussian_conditional.scale_table")]
    assert len(gc) == 3
    assert_same(compressai_to_official(port), official)
    assert_same(to_layout(port, "dcae"), small_sd)
    assert_same(to_layout(small_sd, "compressai"), port)
    assert config_of(port) == DCAEModel("small").config


def test_unknown_layouts_raise(small_sd) -> None:
    with pytest.raises(ModelMismatchError):
        detect_layout({"conv.weight": torch.zeros(1)})
    port = official_to_compressai(to_official_layout(small_sd))
    port["latent_codec.something_else"] = torch.zeros(1)
    with pytest.raises(ModelMismatchError, match="something_else"):
        compressai_to_official(port)
    with pytest.raises(ValueError, match="layout"):
        to_layout(small_sd, "tensorflow")


def test_cli_convert_round_trip(tmp_path: Path, small_sd, capsys) -> None:
    src = tmp_path / "official.pth.tar"
    torch.save({"state_dict": to_official_layout(small_sd)}, src)
    assert cli(["convert", str(src), str(tmp_path / "a.pth.tar"), "--to", "dcae"]) == 0
    assert "official layout" in capsys.readouterr().out
    a = torch.load(tmp_path / "a.pth.tar", weights_only=True)
    assert a["config"]["M"] == 96
    assert_same(a["state_dict"], small_sd)
    # the dcae file loads with the library's own loader
    from dcae.zoo.loading import load_checkpoint

    assert isinstance(load_checkpoint(tmp_path / "a.pth.tar"), DCAEModel)
    a_file, p_file, o_file = (str(tmp_path / n) for n in ("a.pth.tar", "p.pth", "o.pth.tar"))
    assert cli(["convert", a_file, p_file, "--to", "compressai"]) == 0
    assert cli(["convert", p_file, o_file, "--to", "official"]) == 0
    back = torch.load(tmp_path / "o.pth.tar", weights_only=True)
    assert_same(back["state_dict"], to_official_layout(small_sd))
    # refuses to overwrite, and rejects files that are not checkpoints
    assert cli(["convert", str(src), str(tmp_path / "a.pth.tar")]) == 1
    assert "exists" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"\x00junk")
    assert cli(["convert", str(tmp_path / "junk.pth"), str(tmp_path / "j.pth")]) == 1
    assert "not a readable" in capsys.readouterr().err
    assert not (tmp_path / "j.pth").exists()


def test_convert_writes_atomically(tmp_path: Path, small_sd, monkeypatch, capsys) -> None:
    """A failure while writing (disk full, interrupt) leaves no partial file and
    the previous output intact, as compress/decompress (#23)."""
    src = tmp_path / "official.pth.tar"
    torch.save({"state_dict": to_official_layout(small_sd)}, src)
    dst = tmp_path / "out.pth.tar"
    dst.write_bytes(b"previous")
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:  # half written, then the disk is full
            handle.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    args = ["convert", str(src), str(dst), "--force", "--no-verify"]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "No space left" in err and str(dst) in err and ".tmp" not in err
    assert dst.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(torch, "save", real_save)
    assert cli(args) == 0
    assert torch.load(dst, weights_only=True)["config"]["M"] == 96


@pytest.mark.official
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("DCAE_OFFICIAL_REPO"), reason="set DCAE_OFFICIAL_REPO to the official code"
)
def test_real_official_state_dict_round_trips() -> None:
    """The state dict of the official DCAE() converts to dcae and back exactly
    (also through CompressAI's port layout), loads strictly into DCAEModel and
    is recognised as the paper architecture."""
    pytest.importorskip("timm")
    sys.path.insert(0, os.environ["DCAE_OFFICIAL_REPO"])
    try:
        from models.dcae import DCAE  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    official = DCAE().state_dict()
    dcae_sd = to_dcae_layout(official)
    assert_same(to_official_layout(dcae_sd), official)
    assert_same(compressai_to_official(official_to_compressai(official)), official)
    model = DCAEModel.from_state_dict(official)
    model.load_state_dict(dcae_sd, strict=True)
    # the zoo's pretrained=True accepts exactly this architecture
    assert config_of(official) == PRESETS["paper"]
