"""executorlib 1.x's file-mode worker: ``python cache_serial.py <file>_i.h5`` runs that task and writes
``<file>_o.h5``. It is the xl_cache worker (``python -m xl_cache.worker``), which finds its MPI rank itself."""

from __future__ import annotations

import runpy

if __name__ == "__main__":
    runpy.run_module("xl_cache.worker", run_name="__main__", alter_sys=True)
