"""``python -m dcae.eval_model``: CompressAI's ``eval_model`` with DCAE registered
and any codec's checkpoint loaded safely.

Takes exactly the arguments of ``python -m compressai.utils.eval_model``
(``checkpoint``/``pretrained`` sources, ``-a``, ``-p``, ``-q``, ``-m``, ``-d``,
``-o``, ``--entropy-estimation``, ...) and runs CompressAI's own code, so the
results JSON is the one ``python -m compressai.utils.plot`` reads::

    python -m dcae.eval_model checkpoint /data/kodak -a dcae -p dcae-small.pth.tar \\
        -d results -o dcae-small
    python -m dcae.eval_model pretrained /data/kodak -a dcae -q 1,2,3,4,5,6
    python -m dcae.eval_model checkpoint /data/kodak -a my_codecs:MyCodec -p mine.pth.tar

Three things differ from CompressAI's script:

- checkpoints are loaded by :func:`dcae.zoo.loading.load_model`, with
  ``torch.load(weights_only=True)`` (CompressAI's loader unpickles arbitrary
  objects), ``{"state_dict": ...}`` wrappers and ``module.`` prefixes
  accepted; DCAE checkpoints in the dcae or the official layout have their
  architecture inferred from the tensor shapes;
- ``-a`` also takes ``module:Class``, a user's ``CompressionModel`` (with the
  ``checkpoint`` source), besides CompressAI's names;
- images under 161 pixels per side are refused in one line before any model
  runs: CompressAI's script always computes MS-SSIM, which needs 161, and
  would stop with an ``AssertionError`` traceback (``dcae eval DIR
  --no-ms-ssim`` reports PSNR and bpp of such images).

The architecture name of DCAE is :data:`dcae.zoo.registry.ZOO_NAME` (``"dcae"``, or
``"dcae-lu2025"`` when CompressAI ships its own ``"dcae"``).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

__all__ = ["main"]


def _architecture(argv: List[str]) -> Optional[str]:
    """The value of ``-a``/``--architecture`` in ``argv`` (as argparse reads it)."""
    for i, arg in enumerate(argv):
        if arg in ("-a", "--architecture") and i + 1 < len(argv):
            return argv[i + 1]
        for prefix in ("--architecture=", "-a"):
            if arg.startswith(prefix) and len(arg) > len(prefix) and arg != "--architecture":
                return arg[len(prefix) :]
    return None


def _load_checkpoint(arch: str, no_update: bool, checkpoint_path: str) -> Any:
    """Replaces ``compressai.utils.eval_model``'s ``load_checkpoint``."""
    from ..zoo.loading import load_model

    return load_model(checkpoint_path, arch, update=not no_update).eval()


def _check_sizes(paths: List[Any]) -> List[Any]:
    """``paths``, after refusing images MS-SSIM cannot measure (sizes read
    from the headers)."""
    from PIL import Image

    from ..errors import DCAEError
    from .measure import MS_SSIM_MIN_SIDE

    for path in paths:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except OSError:
            continue  # CompressAI's reader says what is wrong with it
        if min(w, h) < MS_SSIM_MIN_SIDE:
            raise DCAEError(
                f"{path} is {w}x{h}; CompressAI's eval_model always computes MS-SSIM, which "
                f"needs at least {MS_SSIM_MIN_SIDE} pixels per side: use dcae eval "
                f"{Path(path).parent} --no-ms-ssim (PSNR and bpp) for such images"
            )
    return paths


@contextlib.contextmanager
def _patched(module: Any, user_class: Optional[str]) -> Iterator[None]:
    """CompressAI's loader replaced; ``user_class`` (``module:Class``) made a
    valid ``-a`` choice for the time of the run."""
    from ..errors import DCAEError
    from ..zoo.loading import resolve_class

    saved_loader = module.load_checkpoint
    module.load_checkpoint = _load_checkpoint
    saved_collect = module.collect_images
    module.collect_images = lambda rootpath: _check_sizes(saved_collect(rootpath))
    tables = (module.pretrained_models, module.architectures)
    added = []
    try:
        if user_class is not None:
            cls = resolve_class(user_class)

            def no_pretrained(*args: Any, **kwargs: Any) -> Any:
                raise DCAEError(
                    f"{user_class} has no pretrained weights: use the checkpoint source "
                    f"(checkpoint DATASET -a {user_class} -p WEIGHTS)"
                )

            for table, value in zip(tables, (no_pretrained, cls)):
                if user_class not in table:
                    table[user_class] = value
                    added.append(table)
        yield
    finally:
        module.load_checkpoint = saved_loader
        module.collect_images = saved_collect
        for table in added:
            del table[user_class]


def main(argv: Optional[List[str]] = None) -> None:
    """Run CompressAI's ``eval_model`` on ``argv`` (default ``sys.argv[1:]``).

    Raises:
        SystemExit: on bad arguments (argparse) or a :class:`~dcae.DCAEError`
            such as missing pretrained weights, with the error message.
    """
    import compressai.utils.eval_model.__main__ as module

    from ..errors import DCAEError
    from ..zoo.registry import register

    register()
    argv = sys.argv[1:] if argv is None else list(argv)
    arch = _architecture(argv)
    try:
        with _patched(module, arch if arch and ":" in arch else None):
            module.main(argv)
    except DCAEError as e:  # e.g. the authors' weights are not in the cache
        raise SystemExit(f"dcae.eval_model: error: {' '.join(str(e).split())}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
