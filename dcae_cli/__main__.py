"""``python -m dcae_cli``: the command line with a light start."""

import sys

from . import main

sys.exit(main())
