"""Old path of :mod:`dcae.eval.metrics` (moved in #14): the same module object."""

import sys

from .eval import metrics

sys.modules[__name__] = metrics
