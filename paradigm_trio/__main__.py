"""``python -m paradigm_trio``: the same as the ``paradigm-trio`` command."""

import sys

from .cli import main

sys.exit(main())
