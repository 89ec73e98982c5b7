"""Shipped-weights packaging: int8 packing, CDF tables, manifest."""

from __future__ import annotations

import hashlib
import json

import torch

from dcae import DCAEModel
from dcae.pretrained import (
    load_checkpoint,
    pack_state_dict,
    package_models,
    save_checkpoint,
    unpack_state_dict,
)


def test_int8_packing_error_is_bounded_per_channel():
    torch.manual_seed(0)
    sd = {"w": torch.randn(8, 64, 3, 3), "b": torch.randn(8), "small": torch.randn(4, 4)}
    packed = pack_state_dict(sd)
    assert packed["w"]["int8"].dtype == torch.int8  # large weights packed
    assert torch.equal(packed["b"], sd["b"]) and torch.equal(packed["small"], sd["small"])
    back = unpack_state_dict(packed)
    step = sd["w"].reshape(8, -1).abs().amax(1) / 127  # one quantisation step per channel
    err = (back["w"] - sd["w"]).reshape(8, -1).abs().amax(1)
    assert (err <= step / 2 + 1e-7).all()


def test_package_models_writes_loadable_models_and_manifest(tmp_path):
    torch.manual_seed(0)
    ckpts = {}
    for q in (1, 2):
        model = DCAEModel("small").eval()
        ckpts[q] = tmp_path / f"run{q}.pt"
        save_checkpoint(model, ckpts[q], **{"lambda": 0.001 * q, "metric": "mse", "steps": 10})
    out = tmp_path / "weights"
    manifest = package_models(ckpts, out, default=2, total_steps={2: 30}, preset="small")

    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest and manifest["default"] == 2 and manifest["preset"] == "small"
    by_q = {e["quality"]: e for e in manifest["models"]}
    assert by_q[1]["steps"] == 10 and by_q[2]["steps"] == 30  # lineage steps override
    assert by_q[1]["lambda"] == 0.001
    for q, entry in by_q.items():
        path = out / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        shipped = load_checkpoint(path)
        # the stored CDF tables are those of the stored (int8-rounded) weights
        tables = shipped.entropy_model.gaussian_conditional.quantized_cdf.clone()
        shipped.update(force=True)
        assert torch.equal(shipped.entropy_model.gaussian_conditional.quantized_cdf, tables)
        # and the weights are the int8 round trip of the checkpoint's
        original = load_checkpoint(ckpts[q]).state_dict()
        expected = unpack_state_dict(pack_state_dict(original))
        now = shipped.state_dict()
        packed = [k for k, v in pack_state_dict(original).items() if isinstance(v, dict)]
        assert len(packed) > 20
        assert all(torch.equal(now[k], expected[k]) for k in packed)
        assert not all(torch.equal(now[k], original[k]) for k in packed)  # really rounded
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            enc = shipped.compress(x)
            dec = shipped.decompress(enc["strings"], enc["shape"], checksums=enc["checksums"])
            assert torch.equal(dec["x_hat"], shipped(x)["x_hat"].clamp(0, 1))
