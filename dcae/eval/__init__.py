"""Evaluation: metrics and BD-rates, rate-distortion runs, reports, and
CompressAI's ``eval_model`` with safe loading, one concept per module.

- :mod:`~dcae.eval.metrics`: PSNR, MS-SSIM, bpp, BD-rate, BD-PSNR
- :mod:`~dcae.eval.evaluate`: the engine of ``dcae eval``
- :mod:`~dcae.eval.measure`: how one reconstruction is measured
- :mod:`~dcae.eval.pillow`: JPEG, WebP and AVIF as Pillow writes them
- :mod:`~dcae.eval.curves`: per-image records and RD curves
- :mod:`~dcae.eval.anchors`: published anchors from a folder of the user's
- :mod:`~dcae.eval.report`: BD tables, summaries, CSV and plots
- :mod:`~dcae.eval.eval_model`: CompressAI's ``eval_model`` with safe loading
  (``python -m dcae.eval_model``)
"""
