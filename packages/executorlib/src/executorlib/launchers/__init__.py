"""How a worker or a job is started: one module per resource manager (see launchers/protocol.py)."""
