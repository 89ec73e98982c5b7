"""``python -m dcae.eval_model``: the old path of :mod:`dcae.eval.eval_model`
(moved in #14), kept as a command and as a module name."""

import sys

from .eval import eval_model

if __name__ == "__main__":
    eval_model.main()
else:
    sys.modules[__name__] = eval_model
