"""``python -m hopchain_demo``: the same as the ``hopchain-demo`` command."""

import sys

from hopchain_demo.cli import main

sys.exit(main())
