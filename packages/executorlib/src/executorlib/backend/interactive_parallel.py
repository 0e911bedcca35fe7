"""A worker for executorlib.api.SocketInterface (see executorlib.compat.worker):
``python interactive_parallel.py [--host H] --zmqport P [--worker-id N]``."""

from __future__ import annotations

import sys

from executorlib.compat.worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], parallel=True))
