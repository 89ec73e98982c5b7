"""dcae.eval.evaluate and ``dcae eval``: records, curves, BD table, anchors, Pillow
JPEG/WebP/AVIF sweeps, end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcae import DCAEError, DCAEModel
from dcae.cli import main
from dcae.eval import report as report_module
from dcae.eval.anchors import load_anchors
from dcae.eval.curves import Curve, ImageRecord, mean_curve
from dcae.eval.evaluate import collect_images, evaluate_model, run_evaluation
from dcae.eval.metrics import bd_rate, psnr
from dcae.eval.pillow import PILLOW_SETTINGS, describe_pillow, evaluate_pillow, pillow_supports
from dcae.eval.report import bd_table, format_bd_markdown
from dcae.format.padding import coding_padding, pad_image
from dcae.zoo.checkpoints import save_checkpoint

SIZE = (176, 184)  # (h, w): the smallest sizes MS-SSIM accepts, plus a non-square side

ANCHOR_RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
ANCHOR_PSNR = [28.0, 30.5, 33.0, 35.5, 38.0]

needs_avif = pytest.mark.skipif(not pillow_supports("AVIF"), reason="this Pillow has no AVIF")


def _photo(seed: int, size=SIZE) -> np.ndarray:
    """A smooth synthetic 'photo' with edges and some texture, uint8 RGB."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, size[0] // 16, size[1] // 16, generator=g)
    x = torch.nn.functional.interpolate(low, size=size, mode="bicubic", align_corners=False)
    x[..., size[0] // 3 :, : size[1] // 2] += 0.3  # an edge
    x = x + 0.03 * torch.randn(x.shape, generator=g)
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    for i in range(2):
        Image.fromarray(_photo(i)).save(d / f"img{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = DCAEModel("small").eval()
    model.update(force=True)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="module")
def anchors_dir(tmp_path_factory) -> Path:
    """A miniature anchors folder in the layout of ../shared/anchors."""
    d = tmp_path_factory.mktemp("anchors")
    (d / "kodak").mkdir()
    vtm = {
        "name": "VTM",
        "description": "test",
        "results": {
            "bpp": ANCHOR_RATES[::-1],  # unsorted on purpose
            "psnr-rgb": ANCHOR_PSNR[::-1],
            "ms-ssim-rgb": [0.995, 0.99, 0.98, 0.96, 0.92],
        },
    }
    (d / "kodak" / "vtm.json").write_text(json.dumps(vtm))
    paper = {
        "Kodak": {"bpp": [0.8, 0.6, 0.4, 0.3, 0.2, 0.1], "PSNR": [37, 36, 34, 33, 31, 29]},
        "Kodak_MS-SSIM": {"bpp": [0.6, 0.45, 0.33, 0.23], "MS_SSIM": [21.7, 20.1, 18.6, 16.9]},
    }
    (d / "dcae-paper-rd.json").write_text(json.dumps(paper))
    return d


# ---------------------------------------------------------------- units


def test_collect_images(image_dir, tmp_path):
    files = collect_images(image_dir)
    assert [f.name for f in files] == ["img0.png", "img1.png"]
    assert len(collect_images(image_dir, limit=1)) == 1
    with pytest.raises(DCAEError, match="no images"):
        collect_images(tmp_path)
    with pytest.raises(FileNotFoundError):
        collect_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="limit"):
        collect_images(image_dir, limit=0)


def test_evaluate_pillow_measures_real_files(image_dir):
    images = collect_images(image_dir)[:1]
    recs = evaluate_pillow(images, "jpeg", [10, 50, 90])
    assert [r.point for r in recs] == ["q10", "q50", "q90"]
    # Rate is the real file size: re-encode independently and compare.
    with Image.open(images[0]) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=50)
        h, w = img.height, img.width
    assert recs[1].n_bytes == len(buf.getvalue())
    assert recs[1].bpp == pytest.approx(8 * len(buf.getvalue()) / (h * w))
    # More quality, more bits and less distortion.
    assert recs[0].bpp < recs[1].bpp < recs[2].bpp
    assert recs[0].psnr < recs[1].psnr < recs[2].psnr
    assert recs[0].ms_ssim < recs[1].ms_ssim < recs[2].ms_ssim < 1
    with pytest.raises(ValueError, match="quality"):
        evaluate_pillow(images, "webp", [0])
    with pytest.raises(ValueError, match="format"):
        evaluate_pillow(images, "gif", [50])


@needs_avif
def test_evaluate_pillow_avif(image_dir):
    images = collect_images(image_dir)
    recs = evaluate_pillow(images, "avif", [10, 50, 90])
    assert [(r.point, r.image) for r in recs] == [
        (f"q{q}", f"img{i}") for q in (10, 50, 90) for i in (0, 1)
    ]
    for image in ("img0", "img1"):
        lo, mid, hi = (r for r in recs if r.image == image)
        assert lo.n_bytes < mid.n_bytes < hi.n_bytes
        assert lo.psnr < mid.psnr < hi.psnr
        assert lo.ms_ssim < mid.ms_ssim < hi.ms_ssim < 1
        assert (lo.width, lo.height) == (SIZE[1], SIZE[0])
    # The reference settings (speed 4, one thread): the bytes of an independent
    # encode, which decodes to an AVIF image of the original size.
    with Image.open(images[0]) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="AVIF", quality=50, speed=4, max_threads=1)
    assert recs[2].n_bytes == len(buf.getvalue())
    with Image.open(io.BytesIO(buf.getvalue())) as dec:
        assert dec.format == "AVIF" and dec.size == (SIZE[1], SIZE[0])
    assert evaluate_pillow(images[:1], "AVIF", [0])[0].n_bytes > 0  # AVIF takes 0..100
    with pytest.raises(ValueError, match="0..100"):
        evaluate_pillow(images, "avif", [101])


def test_pillow_settings_are_the_reference_and_described(image_dir):
    assert PILLOW_SETTINGS["WEBP"] == {"method": 6}
    assert PILLOW_SETTINGS["AVIF"]["speed"] == 4
    images = collect_images(image_dir)[:1]
    with Image.open(images[0]) as img:
        rgb = img.convert("RGB")
    sizes = {}
    for method in (4, 6):
        buf = io.BytesIO()
        rgb.save(buf, format="WEBP", quality=50, method=method)
        sizes[method] = len(buf.getvalue())
    assert sizes[4] != sizes[6]
    assert evaluate_pillow(images, "webp", [50])[0].n_bytes == sizes[6]
    assert evaluate_pillow(images, "webp", [50], options={"method": 4})[0].n_bytes == sizes[4]
    webp = describe_pillow("WEBP")
    assert webp.startswith("Pillow ") and "libwebp" in webp and "method=6" in webp
    assert "method=4" in describe_pillow("WEBP", {"method": 4})
    avif = describe_pillow("AVIF")
    assert "libavif" in avif and "speed=4" in avif and "max_threads=1" in avif
    assert "4:2:0" in describe_pillow("JPEG")


def test_no_avif_in_this_pillow_skips_the_sweep(
    image_dir, checkpoint, monkeypatch, tmp_path, capsys
):
    from PIL import features

    check = features.check
    monkeypatch.setattr(features, "check", lambda name: name != "avif" and check(name))
    assert not pillow_supports("AVIF") and pillow_supports("JPEG")
    images = collect_images(image_dir, limit=1)
    with pytest.raises(DCAEError, match="without AVIF support"):
        evaluate_pillow(images, "AVIF", [50])
    # In Python: a warning and a line in the summary; the other codecs run.
    with pytest.warns(UserWarning, match="skipping the AVIF sweep"):
        report = run_evaluation(
            image_dir, tmp_path / "lib", [], jpeg_qualities=[50], avif_qualities=[50],
            limit=1, plot=False,
        )  # fmt: skip
    assert [c.name for c in report.curves] == ["JPEG (Pillow)"]
    assert "- not run: Pillow" in report.files["summary"].read_text()
    # On the command line: one line on stderr, the report as usual, no AVIF.
    out = tmp_path / "cli"
    argv = [
        "eval", str(image_dir), "-o", str(out), "--checkpoint", str(checkpoint),
        "--jpeg-qualities", "50", "--webp-qualities", "none", "--no-anchors", "--no-plot",
        "--limit", "1", "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "AVIF" in line]
    assert len(said) == 1 and "no AVIF support" in said[0] and "skipping" in said[0]
    assert (out / "jpeg-pillow.json").is_file() and not (out / "avif-pillow.json").exists()


def test_evaluate_model_counts_every_string(image_dir, small_model):
    images = collect_images(image_dir)[:1]
    [rec] = evaluate_model(small_model, images, "dcae", "q1", estimate_rate=True)
    with Image.open(images[0]) as img:
        x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    # coded as dcae.encode codes it: edge-replicated to a multiple of 16 (#23)
    _, _, (left, right, top, bottom) = coding_padding(small_model, *x.shape[2:])
    assert (left + right, top + bottom) == (8, 0)
    with torch.no_grad():
        enc = small_model.compress(pad_image(x, (left, right, top, bottom)))
        x_hat = small_model.decompress(enc["strings"], enc["shape"])["x_hat"]
    x_hat = x_hat[..., top : top + x.shape[2], left : left + x.shape[3]]
    n_bytes = sum(len(s) for strings in enc["strings"] for s in strings)
    assert rec.n_bytes == n_bytes
    assert rec.bpp == pytest.approx(8 * n_bytes / (SIZE[0] * SIZE[1]))
    expected_psnr = psnr(x, (x_hat.clamp(0, 1) * 255).round() / 255)
    assert rec.psnr == pytest.approx(expected_psnr, abs=1e-6)
    assert rec.bpp_estimate is not None and rec.bpp_estimate > 0
    assert rec.encoding_time > 0 and rec.decoding_time > 0
    assert (rec.width, rec.height) == (SIZE[1], SIZE[0])


def test_too_small_images_are_rejected(tmp_path, small_model):
    Image.fromarray(_photo(0, (64, 200))).save(tmp_path / "small.png")
    with pytest.raises(DCAEError, match="161"):
        evaluate_pillow(collect_images(tmp_path), "JPEG", [50])


def test_small_images_evaluate_without_ms_ssim(tmp_path, checkpoint, anchors_dir, capsys):
    """Images under 161 px per side: a one-line error naming the minimum and
    --no-ms-ssim; with it, PSNR and bpp, MS-SSIM reported as n/a (#23)."""
    images = tmp_path / "small"
    images.mkdir()
    Image.fromarray(_photo(0, (64, 96))).save(images / "a.png")
    Image.fromarray(_photo(1, (17, 40))).save(images / "b.png")
    out = tmp_path / "report"
    argv = [
        "eval", str(images), "-o", str(out), "--checkpoint", str(checkpoint),
        "--jpeg-qualities", "30,70", "--webp-qualities", "none", "--avif-qualities", "none",
        "--anchors", str(anchors_dir), "--quiet", "--no-plot",
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "161" in err[0] and "--no-ms-ssim" in err[0], err
    assert main([*argv, "--no-ms-ssim"]) == 0
    capsys.readouterr()
    summary = (out / "summary.md").read_text()
    assert "n/a" in summary and "nan" not in summary.lower()
    rows = (out / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3 and all(",,," in r for r in rows[1:])  # ms_ssim, its dB
    result = json.loads((out / "dcae.json").read_text())["results"]
    assert "ms-ssim-rgb" not in result and result["psnr-rgb"][0] > 0
    bd = json.loads((out / "bd_rate.json").read_text())["rows"]
    assert bd and all(r["bd_rate_ms_ssim"] is None for r in bd)


def test_eval_model_refuses_small_images_in_one_line(tmp_path):
    """``python -m dcae.eval_model`` on images MS-SSIM cannot measure: one
    line naming the minimum, not CompressAI's AssertionError traceback."""
    Image.fromarray(_photo(0, (64, 96))).save(tmp_path / "a.png")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "dcae.eval_model", "pretrained", str(tmp_path),
         "-a", "bmshj2018-factorized", "-q", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "AssertionError" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "161" in lines[0] and "--no-ms-ssim" in lines[0], proc.stderr


def _rec(point: str, image: str, bpp: float, p: float) -> ImageRecord:
    return ImageRecord("c", point, image, 10, 10, 1, bpp, p, 0.9, 0.1, 0.2)


def test_mean_curve_sorts_by_rate_and_averages():
    recs = [
        _rec("hi", "a", 1.0, 34.0),
        _rec("hi", "b", 2.0, 36.0),
        _rec("lo", "a", 0.2, 28.0),
        _rec("lo", "b", 0.4, 30.0),
    ]
    c = mean_curve(recs, "c")
    assert c.points == ["lo", "hi"]
    assert c.bpp == pytest.approx([0.3, 1.5])
    assert c.psnr == pytest.approx([29.0, 35.0])
    out = c.to_compressai()
    assert set(out) >= {"name", "description", "results"}
    assert set(out["results"]) == {
        "bpp",
        "psnr-rgb",
        "ms-ssim-rgb",
        "encoding_time",
        "decoding_time",
    }
    back = Curve.from_compressai(out)
    assert back.bpp == c.bpp and back.psnr == c.psnr


def test_results_json_readable_by_compressai_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = pytest.importorskip("compressai.utils.plot.__main__")
    c = mean_curve([_rec("lo", "a", 0.2, 28.0), _rec("hi", "a", 1.0, 34.0)], "mine")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(c.to_compressai()))
    parsed = plot.parse_json_file(path, "psnr")
    assert parsed["name"] == "mine" and parsed["xs"] == c.bpp and parsed["ys"] == c.psnr
    parsed = plot.parse_json_file(path, "ms-ssim")
    np.testing.assert_allclose(parsed["ys"], c.metric("ms-ssim"))


def test_bd_table_known_answer():
    anchor = Curve("anchor", ANCHOR_RATES, ANCHOR_PSNR, ms_ssim=[0.9, 0.93, 0.95, 0.97, 0.98])
    test = Curve("test", [0.8 * r for r in ANCHOR_RATES], ANCHOR_PSNR, ms_ssim=anchor.ms_ssim)
    psnr_only = Curve("psnr only", ANCHOR_RATES, [p - 0.5 for p in ANCHOR_PSNR])
    short = Curve("short", ANCHOR_RATES[:3], ANCHOR_PSNR[:3])
    for method in ("cubic", "pchip"):
        rows = bd_table([test], [anchor, psnr_only, short], method)
        assert [r.anchor for r in rows] == ["anchor", "psnr only", "short"]
        assert rows[0].bd_rate_psnr == pytest.approx(-20.0, abs=1e-9)
        assert rows[0].bd_rate_ms_ssim == pytest.approx(-20.0, abs=1e-9)
        assert rows[1].bd_psnr == pytest.approx(0.5 + rows[0].bd_psnr, abs=1e-9)
        assert rows[1].bd_rate_ms_ssim is None and not rows[1].notes  # no data, no error
        assert rows[2].bd_rate_psnr is None and "at least 4 points" in rows[2].notes[0]
        md = format_bd_markdown(rows, method)
        assert "| anchor |" in md and "-20.00 %" in md and "n/a" in md and "at least 4" in md


@needs_avif
def test_bd_table_against_measured_avif(image_dir):
    images = collect_images(image_dir)
    avif = mean_curve(evaluate_pillow(images, "AVIF", [10, 30, 50, 70]), "AVIF (Pillow)")
    jpeg = mean_curve(evaluate_pillow(images, "JPEG", [20, 40, 60, 80]), "JPEG (Pillow)")
    # a test curve that needs a fifth fewer bits than AVIF at each measured point
    test = Curve("dcae", [0.8 * b for b in avif.bpp], avif.psnr, avif.ms_ssim)
    rows = bd_table([test], [jpeg, avif])
    assert [r.anchor for r in rows] == ["JPEG (Pillow)", "AVIF (Pillow)"]
    assert rows[1].anchor_source == "this run"
    assert rows[1].bd_rate_psnr == pytest.approx(-20.0, abs=1e-6)
    assert rows[1].bd_rate_ms_ssim == pytest.approx(-20.0, abs=1e-6)
    assert "| AVIF (Pillow) | this run | -20.00 % |" in format_bd_markdown(rows)


def test_load_anchors(anchors_dir):
    curves = {c.name: c for c in load_anchors(anchors_dir, "kodak")}
    assert set(curves) == {"DCAE (paper)", "DCAE MS-SSIM models (paper)", "VTM"}
    vtm = curves["VTM"]
    assert vtm.bpp == sorted(ANCHOR_RATES) and vtm.psnr == ANCHOR_PSNR
    paper = curves["DCAE (paper)"]
    assert paper.bpp == sorted(paper.bpp) and paper.ms_ssim is None
    ms = curves["DCAE MS-SSIM models (paper)"]
    np.testing.assert_allclose(ms.metric("ms-ssim"), [16.9, 18.6, 20.1, 21.7])
    with pytest.raises(FileNotFoundError):
        load_anchors(anchors_dir / "missing")


def test_load_real_anchors():
    d = Path(__file__).resolve().parents[3] / "shared" / "anchors"
    if not d.is_dir():
        pytest.skip("no shared/anchors on this machine")
    curves = {c.name: c for c in load_anchors(d)}
    assert {"DCAE (paper)", "VTM", "JPEG", "WebP"} <= set(curves)
    # The paper's Table 1: DCAE vs VTM-12.1 on Kodak, BD-rate -17.0 %.
    vtm, paper = curves["VTM"], curves["DCAE (paper)"]
    for method in ("cubic", "pchip"):
        assert bd_rate(vtm.bpp, vtm.psnr, paper.bpp, paper.psnr, method) == pytest.approx(
            -17.0, abs=0.3
        )


# ---------------------------------------------------------------- end to end


def test_dcae_eval_end_to_end(image_dir, checkpoint, anchors_dir, tmp_path, capsys, monkeypatch):
    figures = []

    def rd_figure(*args, **kwargs):
        figures.append(real_rd_figure(*args, **kwargs))
        return figures[-1]

    real_rd_figure = report_module.rd_figure
    monkeypatch.setattr(report_module, "rd_figure", rd_figure)
    avif = pillow_supports("AVIF")
    out = tmp_path / "report"
    argv = [
        "eval", str(image_dir), "-o", str(out), "--checkpoint", str(checkpoint),
        "--jpeg-qualities", "20,50,80", "--webp-qualities", "30,70",
        "--avif-qualities", "10,40,70", "--anchors", str(anchors_dir), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "Bjontegaard" in stdout and "JPEG (Pillow)" in stdout

    expected_points = {"dcae.json": 1, "jpeg-pillow.json": 3, "webp-pillow.json": 2}
    if avif:
        expected_points["avif-pillow.json"] = 3
    for name, n in expected_points.items():
        data = json.loads((out / name).read_text())
        assert set(data) >= {"name", "description", "results"}
        results = data["results"]
        assert set(results) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
        assert all(len(v) == n for v in results.values()), (name, results)
        assert results["bpp"] == sorted(results["bpp"])
        assert all(0 < v < 1 for v in results["ms-ssim-rgb"])

    # the encoder settings are in the results and the summary
    settings = {
        "webp-pillow.json": "method=6",
        "avif-pillow.json": "speed=4",
        "jpeg-pillow.json": "4:2:0",
    }
    summary = (out / "summary.md").read_text()
    assert "## Codecs" in summary
    for name, setting in settings.items():
        if name in expected_points:
            description = json.loads((out / name).read_text())["description"]
            assert setting in description and description in summary

    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * sum(expected_points.values())
    dcae_rows = [r for r in rows if r["codec"] == "dcae"]
    assert {r["image"] for r in dcae_rows} == {"img0", "img1"}
    assert all(r["point"] == "tiny" and int(r["bytes"]) > 0 for r in dcae_rows)

    measured = ["JPEG (Pillow)", "WebP (Pillow)"] + (["AVIF (Pillow)"] if avif else [])
    bd = (out / "bd_rate.md").read_text()
    for anchor in (*measured, "DCAE (paper)", "VTM"):
        assert f"| {anchor} |" in bd
    bd_json = json.loads((out / "bd_rate.json").read_text())
    assert bd_json["method"] == "cubic"
    rows = [r for r in bd_json["rows"] if r["test"] == "dcae"]
    assert [r["anchor"] for r in rows[: len(measured)]] == measured
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "rd.png").exists()
    else:
        assert (out / "rd.png").stat().st_size > 1000
        # every measured curve is a line of both panels, with its own data
        [fig] = figures
        for ax in fig.axes:
            lines = {line.get_label(): line for line in ax.get_lines()}
            assert {"dcae", *measured} <= set(lines)
            assert set(ax.get_legend_handles_labels()[1]) == set(lines)
        if avif:
            curve = json.loads((out / "avif-pillow.json").read_text())["results"]
            line = {line.get_label(): line for line in fig.axes[0].get_lines()}["AVIF (Pillow)"]
            np.testing.assert_allclose(line.get_xdata(), curve["bpp"])
            np.testing.assert_allclose(line.get_ydata(), curve["psnr-rgb"])

    # --no-plot, --limit, no anchors, no WebP: fewer outputs
    out2 = tmp_path / "report2"
    argv2 = [
        "eval", str(image_dir), "-o", str(out2), "--checkpoint", str(checkpoint),
        "--jpeg-qualities", "50", "--webp-qualities", "none", "--avif-qualities", "none",
        "--no-anchors", "--no-plot", "--limit", "1", "--quiet",
    ]  # fmt: skip
    assert main(argv2) == 0
    assert not (out2 / "rd.png").exists() and not (out2 / "webp-pillow.json").exists()
    assert not (out2 / "avif-pillow.json").exists()
    with open(out2 / "per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_dcae_eval_uses_shipped_models(image_dir, small_model, monkeypatch, tmp_path):
    from dcae.zoo import shipped as pretrained

    loaded = []

    def fake_load(q=None):
        loaded.append(q)
        return small_model

    monkeypatch.setattr(pretrained, "available_qualities", lambda: [1, 2])
    monkeypatch.setattr(pretrained, "load_pretrained", fake_load)
    argv = [
        "eval", str(image_dir), "-o", str(tmp_path), "--jpeg-qualities", "none",
        "--webp-qualities", "none", "--avif-qualities", "none", "--no-anchors", "--no-plot",
        "--limit", "1", "--quiet",
    ]  # fmt: skip
    assert main([*argv, "--qualities", "2"]) == 0
    assert loaded == [2]
    data = json.loads((tmp_path / "dcae.json").read_text())
    assert data["points"] == ["q2"] and len(data["results"]["bpp"]) == 1
    # Real qualities in the shipped range, passed on as given (variable-rate model).
    loaded.clear()
    assert main([*argv, "--qualities", "1.25"]) == 0
    assert loaded == [1.25] and isinstance(loaded[0], float)
    assert json.loads((tmp_path / "dcae.json").read_text())["points"] == ["q1.25"]
    loaded.clear()
    assert main([*argv, "--qualities", "3"]) == 1  # outside the shipped range
    assert main([*argv, "--qualities", "0.5"]) == 1
    assert loaded == []
    for bad in ("nan", "a", "1,inf"):
        with pytest.raises(SystemExit):
            main([*argv, "--qualities", bad])


def test_dcae_eval_errors(image_dir, checkpoint, monkeypatch, tmp_path, capsys):
    from dcae.zoo import shipped as pretrained

    monkeypatch.setattr(pretrained, "available_qualities", lambda: [])
    base = ["eval", str(image_dir), "-o", str(tmp_path), "--no-anchors", "--quiet"]
    assert main(base) == 1
    assert "--checkpoint" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    assert main([*base, "--checkpoint", str(checkpoint), "--qualities", "1"]) == 1
    assert main([*base, "--checkpoint", str(checkpoint), "--jpeg-qualities", "0"]) == 1
    with pytest.raises(SystemExit):
        main([*base, "--jpeg-qualities", "a,b"])


def test_evaluate_model_leaves_the_callers_model_as_it_was(image_dir, small_model):
    images = collect_images(image_dir, limit=1)
    weights = {k: v.clone() for k, v in small_model.state_dict().items()}
    small_model.train()
    try:
        evaluate_model(small_model, images, "dcae", "q1")
        assert small_model.training  # its training flag is restored
    finally:
        small_model.eval()
    assert next(small_model.parameters()).device.type == "cpu"
    for k, v in small_model.state_dict().items():
        assert torch.equal(v, weights[k]), k


def test_anchors_come_from_the_users_folder_only(tmp_path, monkeypatch):
    """``$DCAE_ANCHORS`` or ``--anchors DIR``; no search of the folders above."""
    from dcae.eval.anchors import find_anchors_dir

    (tmp_path / "shared" / "anchors").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DCAE_ANCHORS", raising=False)
    assert find_anchors_dir() is None
    monkeypatch.setenv("DCAE_ANCHORS", str(tmp_path / "mine"))
    assert find_anchors_dir() == tmp_path / "mine"
