"""``python -m krypton.train``: the training command (``krypton.train.cli``)."""

import sys

from krypton.train.cli import main

sys.exit(main())
