"""Schedulers decide when and where calls run (see protocol.py); each owns at most one thread, and the wire's IO
thread belongs to its xl_comm Hub."""
