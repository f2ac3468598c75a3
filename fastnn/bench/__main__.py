"""``python -m fastnn.bench``: the same as ``python -m fastnn bench``."""

import sys

from .cli import main

sys.exit(main())
