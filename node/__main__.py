"""``python -m node`` is ``motcua-node``."""

import sys

from node.cli import main

sys.exit(main())
