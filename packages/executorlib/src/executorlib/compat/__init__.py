"""executorlib 1.x's socket API, rebuilt on our parts: what ``executorlib.api`` exports beyond the executors.

Our own executors do not use it (they speak xl-comm through a Hub); it exists so that code written against
executorlib 1.x (pyiron's conda_subprocess, workflow tools) runs unchanged, with every message authenticated.
"""
