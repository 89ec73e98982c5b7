"""DCAE as a CompressAI ``CompressionModel``, one concept per module
(CompressAI keeps its own in ``compressai.models``).

- :mod:`~dcae.models.dcae`: ``DCAEModel`` (``g_a -> latent codec -> g_s``)
- :mod:`~dcae.models.transforms`: ``g_a``, ``g_s``, ``h_a``, ``h_s``
- :mod:`~dcae.models.gains`: the variable-rate gains
- :mod:`~dcae.models.layouts`: checkpoint layouts (official, dcae, CompressAI port)
- :mod:`~dcae.models.infer_config`: a checkpoint's configuration from its shapes
- :mod:`~dcae.models.readiness`: whether a CompressAI model can code

The public names are re-exported by :mod:`dcae`.
"""
