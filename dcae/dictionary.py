"""Old path of :mod:`dcae.nn.dictionary` (moved in #14): the same module object."""

import sys

from .nn import dictionary

sys.modules[__name__] = dictionary
