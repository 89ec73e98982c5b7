"""Old path of :mod:`dcae.nn.slice_coders` (moved in #14): the same module object."""

import sys

from .nn import slice_coders

sys.modules[__name__] = slice_coders
