"""Old path of :mod:`dcae.nn.entropy_model` (moved in #14): the same module object."""

import sys

from .nn import entropy_model

sys.modules[__name__] = entropy_model
