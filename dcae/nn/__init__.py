"""The paper's networks (Lu et al., CVPR 2025), one concept per module.

- :mod:`~dcae.nn.attention`: window and dictionary attention with their backends
- :mod:`~dcae.nn.layers`: Swin stages and blocks, ConvGLU, ResScale, bottlenecks
- :mod:`~dcae.nn.dictionary`: MSFA and the dictionary-based cross attention
- :mod:`~dcae.nn.entropy_model`: the DCAE entropy model (a CompressAI ``LatentCodec``)
- :mod:`~dcae.nn.slice_coders`: its slice coders (estimate, encode, decode)
- :mod:`~dcae.nn.float64`: the float64 arithmetic of portable coding
- :mod:`~dcae.nn.model`: ``DCAEModel`` (a CompressAI ``CompressionModel``)
- :mod:`~dcae.nn.fast`: reduced-precision fast mode

The public names are re-exported by :mod:`dcae`; the configuration is
:mod:`dcae.config`.
"""
