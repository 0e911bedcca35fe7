from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from xl_comm.sockets import ZERO_COPY_MIN_BYTES, input_pending, recv_frames, recv_routed, send_frames, try_recv_routed


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind("inproc://test-sockets")
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.ROUTING_ID, b"worker-1")
    dealer.connect("inproc://test-sockets")
    router.setsockopt(zmq.RCVTIMEO, 5_000)
    dealer.setsockopt(zmq.RCVTIMEO, 5_000)
    yield router, dealer
    router.close(linger=0)
    dealer.close(linger=0)
    context.term()


frames_strategy = st.lists(
    st.binary(max_size=64) | st.integers(ZERO_COPY_MIN_BYTES, 2 * ZERO_COPY_MIN_BYTES).map(lambda n: b"z" * n),
    min_size=1,
    max_size=4,
)


@settings(max_examples=30)
@given(frames_strategy)
def test_frames_round_trip_and_routed_receive_names_the_sender(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]], frames: list[bytes]
) -> None:
    router, dealer = pair
    send_frames(dealer, [frames[0], *(pickle.PickleBuffer(f) for f in frames[1:])])
    identity, received = recv_routed(router)
    assert identity == b"worker-1"
    assert [f.bytes for f in received] == frames
    send_frames(router, [identity, *frames])
    assert [f.bytes for f in recv_frames(dealer)] == frames


def test_try_recv_routed_is_none_when_nothing_waits(pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    router, dealer = pair
    assert not input_pending(router)
    assert try_recv_routed(router) is None
    dealer.send(b"hello")
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    assert poller.poll(5_000), "the message should arrive"
    assert input_pending(router)
    message = try_recv_routed(router)
    assert message is not None and message[0] == b"worker-1" and message[1][0].bytes == b"hello"
    assert try_recv_routed(router) is None
