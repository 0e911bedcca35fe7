"""Where the executor listens."""

from __future__ import annotations

import pytest
from xl_test_helpers import add

TIMEOUT = 60


@pytest.mark.parametrize("block_allocation", [False, True])
def test_hostname_localhost_false_binds_all_interfaces_and_still_works(make_executor, block_allocation: bool) -> None:
    """hostname_localhost=False is for workers on other hosts: the executor binds every interface and workers
    connect to this host's name; on one machine the tasks must still run."""
    import socket

    exe = make_executor(max_workers=1, block_allocation=block_allocation, hostname_localhost=False)
    assert exe.submit(add, 20, 22).result(timeout=TIMEOUT) == 42
    hub = exe._scheduler._hub
    assert hub.address.startswith(f"tcp://{socket.gethostname()}:")


@pytest.mark.parametrize("block_allocation", [False, True])
def test_single_node_workers_connect_over_an_abstract_unix_socket(make_executor, block_allocation: bool) -> None:
    """Workers on this host use a Linux abstract unix socket: cheaper per message than loopback TCP, no port and
    no file for anyone to find; the MAC still decides what is accepted."""
    exe = make_executor(max_workers=1, block_allocation=block_allocation)
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3
    assert exe._scheduler._hub.address.startswith("ipc://@xl-comm-")
