"""Old path of :mod:`dcae.eval.report` (moved in #14): the same module object."""

import sys

from .eval import report

sys.modules[__name__] = report
