"""The ``.dcae`` file format and what it records, one concept per module.

- :mod:`~dcae.format.container`: the container (``Bitstream``, ``pack``, ``unpack``)
- :mod:`~dcae.format.shape`: the model's ``shape`` field
- :mod:`~dcae.format.padding`: the padding policies
- :mod:`~dcae.format.fingerprint`: the writing model's digest and name
- :mod:`~dcae.format.limits`: sizes and counts a file may hold
- :mod:`~dcae.format.images`: image files (the one reader)
- :mod:`~dcae.format.pixels`: images <-> tensors (the one conversion)

Nothing here imports torch at import time but ``pixels``: the command line's
parsers read the rest.
"""
