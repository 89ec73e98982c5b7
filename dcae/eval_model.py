"""``python -m dcae.eval_model``: CompressAI's ``eval_model`` with DCAE registered.

Takes exactly the arguments of ``python -m compressai.utils.eval_model``
(``checkpoint``/``pretrained`` sources, ``-a``, ``-p``, ``-q``, ``-m``, ``-d``,
``-o``, ``--entropy-estimation``, ...) and runs CompressAI's own code, so the
results JSON is the one ``python -m compressai.utils.plot`` reads::

    python -m dcae.eval_model checkpoint /data/kodak -a dcae -p dcae-small.pth.tar \\
        -d results -o dcae-small
    python -m dcae.eval_model pretrained /data/kodak -a dcae -q 1,2,3,4,5,6

The architecture name is :data:`dcae.zoo.ZOO_NAME` (``"dcae"``, or
``"dcae-lu2025"`` when CompressAI ships its own ``"dcae"``).  Checkpoints may
be in the dcae layout (:func:`dcae.pretrained.save_checkpoint`, training
checkpoints) or the official layout; CompressAI reads their ``state_dict`` and
builds the model with :meth:`dcae.DCAEModel.from_state_dict`, which infers the
architecture from the tensor shapes.
"""

from __future__ import annotations

import sys
from typing import List, Optional

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> None:
    """Run CompressAI's ``eval_model`` on ``argv`` (default ``sys.argv[1:]``).

    Raises:
        SystemExit: on bad arguments (argparse) or a :class:`~dcae.DCAEError`
            such as missing pretrained weights, with the error message.
    """
    from compressai.utils.eval_model.__main__ import main as compressai_main

    from . import zoo
    from .errors import DCAEError

    zoo.register()
    try:
        compressai_main(sys.argv[1:] if argv is None else list(argv))
    except DCAEError as e:  # e.g. the authors' weights are not in the cache
        raise SystemExit(f"dcae.eval_model: error: {e}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
