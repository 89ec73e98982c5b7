"""Entropy coding of DCAE's latents as CompressAI ``LatentCodec``s, one
concept per module (CompressAI keeps its own in ``compressai.latent_codecs``).

- :mod:`~dcae.latent_codecs.entropy_model`: the DCAE entropy model of Eq. (4),
  ``DCAEEntropyModel``
- :mod:`~dcae.latent_codecs.slice_coders`: its slice coders (estimate, encode, decode)
- :mod:`~dcae.latent_codecs.string_checks`: the check bytes of its strings
- :mod:`~dcae.latent_codecs.param_nets`: its mean, scale and residual networks
- :mod:`~dcae.latent_codecs.spatial_context`: its checkerboard context inside a slice
- :mod:`~dcae.latent_codecs.hyper_codec`: the hyperprior with exact rounding,
  ``ExactHyperLatentCodec``
- :mod:`~dcae.latent_codecs.rounding`: rounding around the means (straight-through)
- :mod:`~dcae.latent_codecs.coding_mode`: float32 or portable coding, and its grid
- :mod:`~dcae.latent_codecs.float64` and :mod:`~dcae.latent_codecs.float64_layers`:
  the float64 arithmetic of portable coding
- :mod:`~dcae.latent_codecs.rans`: the guard around CompressAI's rANS decoder
- :mod:`~dcae.latent_codecs.host`: every copy between the device and the host

The public names are re-exported by :mod:`dcae`.
"""
