"""``python -m xl_cache``: the cache command line (see :mod:`xl_cache.cli`)."""

import sys

from xl_cache.cli import main

sys.exit(main())
