"""The sections of ``benchmarks/gpu_check.py``, one module each.

``common`` holds the report (markdown and JSON, rewritten after every
section), the time budget and the model and image helpers; ``env``,
``correctness``, ``cross_device``, ``latency``, ``training`` and ``compile``
each hold one section of the report.  The modules import ``bench_latency``
from ``benchmarks/``, which the script puts on ``sys.path``.
"""
