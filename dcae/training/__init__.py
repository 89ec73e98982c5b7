"""Rate-distortion training of DCAE models (``dcae train``), one concept per
module.

- :mod:`~dcae.training.loop`: the training run (:func:`~dcae.training.loop.train`:
  single process or ``torchrun`` DDP, checkpoints, logs)
- :mod:`~dcae.training.data`: the images, random crops and the validation split
- :mod:`~dcae.training.loss`: the rate-distortion loss
- :mod:`~dcae.training.warm_start`: the model a run starts from
- :mod:`~dcae.training.rng`: the random state saved for an exact resume
"""
