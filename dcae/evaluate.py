"""Old path of :mod:`dcae.eval.evaluate` (moved in #14): the same module object."""

import sys

from .eval import evaluate

sys.modules[__name__] = evaluate
