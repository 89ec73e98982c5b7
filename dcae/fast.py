"""Old path of :mod:`dcae.nn.fast` (moved in #14): the same module object."""

import sys

from .nn import fast

sys.modules[__name__] = fast
