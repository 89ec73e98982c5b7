"""Evaluation: metrics and BD-rates, rate-distortion runs, reports, and
CompressAI's ``eval_model`` with safe loading.

- :mod:`~dcae.eval.metrics`: PSNR, MS-SSIM, bpp, BD-rate, BD-PSNR
- :mod:`~dcae.eval.evaluate`: the engine of ``dcae eval``
- :mod:`~dcae.eval.report`: curves, anchors, BD tables, CSV and plots
- :mod:`~dcae.eval.eval_model`: ``python -m dcae.eval_model``
"""
