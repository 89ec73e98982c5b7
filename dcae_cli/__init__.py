"""Entry point of the ``dcae`` console script, outside the ``dcae`` package.

``import dcae`` imports torch and CompressAI and registers DCAE with
CompressAI, whatever the host program and its arguments (about 3 s).  The
``dcae`` command must start faster than that (``dcae --help`` in about 0.1
s), and importing any ``dcae.X`` runs ``dcae/__init__.py`` first, so the
command starts here: :func:`main` tells ``dcae/__init__.py``, through
:data:`lazy_import`, that it runs the command line, whose commands import
what they use when they run; ``dcae``'s public names are then imported on
first use.  Nothing else sets the flag: no guess from ``sys.argv``.

``python -m dcae_cli`` is the light equivalent of ``python -m dcae``.
"""

from __future__ import annotations

from typing import List, Optional

__all__ = ["lazy_import", "main"]

#: set by :func:`main` before it imports ``dcae``: ``dcae/__init__.py``
#: then defers its heavy imports (and the CompressAI registration) to the
#: first use of a public name
lazy_import = False


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``dcae`` command line (:func:`dcae.cli.main`) with a light start."""
    global lazy_import
    lazy_import = True
    from dcae.cli import main as run

    return run(argv)
