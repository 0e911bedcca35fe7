"""Task schedulers: each owns at most one thread; the wire's IO thread belongs to its xl_comm Hub."""
