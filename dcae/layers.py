"""Old path of :mod:`dcae.nn.layers` (moved in #14): the same module object."""

import sys

from .nn import layers

sys.modules[__name__] = layers
