import numpy as np
import pytest

from synctalk2d.inference.schedule import PingPong, frame_schedule


def test_ping_pong_bounces_at_both_ends():
    assert frame_schedule(12, 4, loop_back=False).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]


@pytest.mark.parametrize("count", [1, 2, 7, 10, 11, 57, 200])
@pytest.mark.parametrize("start", [0, 3, 9])
def test_loop_back_ends_where_it_started_without_jumps(count, start):
    schedule = frame_schedule(count, 10, start=start)
    assert len(schedule) == count
    assert schedule[0] == schedule[-1] == start
    assert np.abs(np.diff(schedule)).max(initial=0) <= 1
    assert schedule.min() >= 0 and schedule.max() < 10


def test_stream_takes_continue_the_same_walk():
    walk = PingPong(5, start=2)
    chunks = np.concatenate([walk.take(3), walk.take(4), walk.take(6)])
    assert chunks.tolist() == frame_schedule(13, 5, start=2, loop_back=False).tolist()


def test_single_frame_avatar():
    assert frame_schedule(4, 1).tolist() == [0, 0, 0, 0]
