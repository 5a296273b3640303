"""``python -m softmax``: the same as the ``softmax`` command."""

from __future__ import annotations

import sys

from softmax.cli import main

if __name__ == "__main__":
    sys.exit(main())
