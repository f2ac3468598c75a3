"""``python -m fastnn.tune ...``: the same commands as ``python -m fastnn tune ...``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
