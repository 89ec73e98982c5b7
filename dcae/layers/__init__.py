"""The paper's neural-network layers (Lu et al., CVPR 2025), one concept per
module; CompressAI keeps its own in ``compressai.layers``.

- :mod:`~dcae.layers.attention`: the attention backends and the dictionary
  attention of Eq. (8)
- :mod:`~dcae.layers.window_attention`: (shifted) window self-attention
- :mod:`~dcae.layers.swin`: ResScale, ConvGLU, Swin blocks and stages
- :mod:`~dcae.layers.bottleneck`: residual-bottleneck down/up-sampling stacks
- :mod:`~dcae.layers.msfa`: multi-scale feature aggregation (Eq. (5)-(6))
- :mod:`~dcae.layers.dictionary`: dictionary-based cross-attention (Eq. (7)-(8))
- :mod:`~dcae.layers.fast`: reduced-precision fast mode of the transforms

The public names are re-exported by :mod:`dcae`.
"""
