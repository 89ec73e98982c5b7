"""Old path of :mod:`dcae.nn.model` (moved in #14): the same module object."""

import sys

from .nn import model

sys.modules[__name__] = model
