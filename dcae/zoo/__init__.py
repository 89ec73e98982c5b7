"""DCAE's models zoo: CompressAI registration, the authors' checkpoints, the
shipped model, and loading any checkpoint, one concept per module (CompressAI
keeps its own in ``compressai.zoo``).

- :mod:`~dcae.zoo.registry`: DCAE in CompressAI's registry and zoo (``ZOO_NAME``)
- :mod:`~dcae.zoo.official`: the authors' checkpoints (lambdas, links, local cache)
- :mod:`~dcae.zoo.shipped`: the model shipped in ``dcae/weights`` (``load_pretrained``)
- :mod:`~dcae.zoo.release`: packaging the shipped model
- :mod:`~dcae.zoo.checkpoints`: reading and saving checkpoint files
- :mod:`~dcae.zoo.packing`: int8 packing and difference files of shipped weights
- :mod:`~dcae.zoo.files`: safe ``torch.load`` and file digests
- :mod:`~dcae.zoo.loading`: any CompressAI model by name and checkpoint (``load_model``)
- :mod:`~dcae.zoo.resolve`: which model codes (given, checkpoint, shipped) or decodes a file
"""
