"""Old path of :mod:`dcae.nn.attention` (moved in #14): the same module object."""

import sys

from .nn import attention

sys.modules[__name__] = attention
