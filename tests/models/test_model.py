"""DCAEModel: presets, CompressAI contract, exact round trips, checkpoint layouts."""

from __future__ import annotations

import pytest
import torch
from compressai.latent_codecs import LatentCodec
from compressai.models import CompressionModel
from hypothesis import given, settings
from hypothesis import strategies as st

from dcae import PRESETS, DCAEEntropyModel, DCAEModel, ModelMismatchError, get_config
from dcae.models.infer_config import infer_config
from dcae.models.layouts import to_dcae_layout, to_official_layout


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_preset_parameter_count():
    """The paper configuration has the official model's 119.4M parameters."""
    model = DCAEModel("paper")
    assert n_params(model) == 119_400_351
    cfg = model.config
    assert (cfg.M, cfg.N, cfg.num_slices, cfg.dict_entries, cfg.dict_dim) == (
        320,
        192,
        5,
        128,
        640,
    )
    em = model.entropy_model
    assert [em.context_channels(i) for i in range(5)] == [640, 704, 768, 832, 896]
    assert em.mean_transforms[4][0].in_channels == 960 + 64 * 4


def test_ablation_preset_depths():
    model = DCAEModel("ablation")
    assert model.config.depths == (0, 0, 4)
    assert len(model.g_a[5].blocks) == 4 and len(model.g_a[1].blocks) == 0


def test_compressai_types(small_model):
    assert isinstance(small_model, CompressionModel)
    assert isinstance(small_model.entropy_model, DCAEEntropyModel)
    assert isinstance(small_model.entropy_model, LatentCodec)
    assert small_model.aux_loss().dim() == 0


@settings(max_examples=6, deadline=None)
@given(
    batch=st.integers(1, 3),
    h=st.sampled_from([1, 16, 23, 40, 64]),
    w=st.sampled_from([1, 17, 32, 48, 65]),
)
def test_decompress_equals_eval_forward(small_model, batch, h, w):
    """decompress(compress(x)) reproduces the eval-mode forward exactly."""
    torch.manual_seed(h * 100 + w)
    x = torch.rand(batch, 3, h, w)
    with torch.no_grad():
        fwd = small_model(x)
        enc = small_model.compress(x)
        dec = small_model.decompress(enc["strings"], enc["shape"])
    assert fwd["x_hat"].shape == x.shape
    assert dec["x_hat"].shape == x.shape
    assert torch.equal(dec["x_hat"], fwd["x_hat"].clamp(0, 1))
    assert all(len(s) == batch for s in enc["strings"])
    y_shape = (-(-h // 16), -(-w // 16))
    assert tuple(enc["shape"]["y"]) == (small_model.config.M, *y_shape)
    assert fwd["likelihoods"]["y"].shape[-2:] == y_shape


def test_forward_training_mode_backward(small_model):
    model = DCAEModel("small").train()
    x = torch.rand(2, 3, 32, 48)
    out = model(x)
    bpp = sum(-lik.log2().sum() for lik in out["likelihoods"].values()) / (2 * 32 * 48)
    loss = ((out["x_hat"] - x) ** 2).mean() * 100 + bpp
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if not n.endswith("quantiles")]
    assert all(g is not None for g in grads)


def test_bad_image_shapes_raise(small_model):
    with pytest.raises(ValueError, match="expected images"):
        small_model(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="expected images"):
        small_model.compress(torch.rand(3, 16, 16))


def _assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("preset", ["small", "ablation", "paper"])
def test_infer_config_recovers_preset(preset):
    cfg = PRESETS[preset]
    if preset != "small":
        # shapes only: build the state dict on the meta device to stay fast
        with torch.device("meta"):
            sd = DCAEModel(cfg).state_dict()
    else:
        sd = DCAEModel(cfg).state_dict()
    assert infer_config(sd) == cfg
    assert infer_config(to_dcae_layout(to_official_layout(sd))) == cfg


def test_official_layout_round_trip_is_lossless(small_model):
    sd = small_model.state_dict()
    official = to_official_layout(sd)
    assert "dt" in official and any(k.startswith("h_z_s1.") for k in official)
    assert any(".layers.0.msa.embedding_layer." in k for k in official)
    temp = [k for k in official if k.endswith("dt_cross_attention.0.scale")]
    assert temp and official[temp[0]].shape == (small_model.config.dict_heads, 1, 1)
    _assert_same_state(to_dcae_layout(official), sd)


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "module"])
def test_from_state_dict_layouts(small_model, wrap):
    sd = to_official_layout(small_model.state_dict())
    if wrap == "state_dict":
        sd = {"state_dict": sd}
    elif wrap == "module":
        sd = {"state_dict": {"module." + k: v for k, v in sd.items()}}
    model = DCAEModel.from_state_dict(sd).eval()
    _assert_same_state(model.state_dict(), small_model.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        enc = small_model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])
        assert torch.equal(dec["x_hat"], small_model(x)["x_hat"].clamp(0, 1))


def test_from_state_dict_rejects_foreign_dicts():
    with pytest.raises(ModelMismatchError):
        DCAEModel.from_state_dict({"foo.weight": torch.zeros(1)})
    with pytest.raises(ModelMismatchError):
        DCAEModel.from_state_dict({"dt": torch.zeros(4, 8), "bogus.key": torch.zeros(1)})


def test_config_overrides_and_errors():
    cfg = get_config("small", max_support_slices=1, lrp=False)
    model = DCAEModel(cfg)
    assert len(model.entropy_model.lrp_transforms) == 0
    assert infer_config(model.state_dict()) == cfg
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("huge")
    with pytest.raises(ValueError, match="multiple"):
        get_config("small", feature_dims=(30, 48, 64))
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
