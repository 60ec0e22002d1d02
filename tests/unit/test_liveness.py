"""The heartbeat schedule as pure logic: intervals from lease deadlines and the swarm's size."""

from __future__ import annotations

import asyncio
import math
import threading

from hypothesis import given
from hypothesis import strategies as st

from autoswarm.coordinator.liveness import SHORTEST_INTERVAL, LivenessPolicy
from autoswarm.coordinator.service import ChangeSignal
from autoswarm.worker.connection import HeartbeatSchedule

POLICY = LivenessPolicy(min_interval=5.0, max_interval=300.0, heartbeat_budget=500.0)


def test_a_five_minute_evaluation_needs_no_five_second_heartbeat():
    ttl = 300 * 2 + 30  # timeout × lease factor + grace
    interval = POLICY.heartbeat_interval(1000.0, [1000.0 + ttl], connected=10)
    assert interval == ttl / POLICY.tries   # three heartbeats fit in the lease: two may be lost
    assert interval > 40 * POLICY.min_interval / 2


def test_a_short_lease_is_heartbeated_often_and_a_big_swarm_spreads_long_ones():
    assert POLICY.heartbeat_interval(0.0, [12.0], connected=10) == 5.0   # the configured shortest
    # 100,000 workers within 500 heartbeats a second: 200 s each, as long as the leases allow.
    assert POLICY.heartbeat_interval(0.0, [630.0], connected=100_000) == 210.0
    assert POLICY.heartbeat_interval(0.0, [3000.0], connected=100_000) == POLICY.max_interval
    # A lease of one minute in a huge swarm: only two heartbeats fit, but two still do.
    assert POLICY.heartbeat_interval(0.0, [60.0], connected=1_000_000) == 30.0


def test_a_worker_whose_lease_nears_its_deadline_heartbeats_in_time():
    now = 500.0
    for room in (30.0, 4.0, 1.0):
        interval = POLICY.heartbeat_interval(now, [now + 630.0, now + room], connected=50_000)
        assert interval <= room / POLICY.min_tries, "the nearest deadline decides"
    assert POLICY.heartbeat_interval(now, [now - 5.0], connected=1) == SHORTEST_INTERVAL, "overdue: at once"


def test_idle_workers_poll_longer_as_the_swarm_grows_within_bounds():
    assert POLICY.poll_seconds(100) == POLICY.min_poll
    assert POLICY.poll_seconds(12_000) == 60.0
    assert POLICY.poll_seconds(10_000_000) == POLICY.max_poll
    assert POLICY.heartbeat_interval(0.0, [], connected=100) == POLICY.min_poll   # paused: presence only
    assert POLICY.heartbeat_interval(0.0, [], connected=10_000_000) == POLICY.max_interval


def test_presence_outlasts_the_interval_and_restarts_outlast_any_interval_told():
    assert POLICY.allowed_silence(60.0) > 2 * 60.0
    ttl = 630.0
    longest_told = max(POLICY.heartbeat_interval(0.0, [ttl], connected=n) for n in (1, 10**4, 10**6, 10**8))
    assert POLICY.restart_room(ttl, grace=30.0) > longest_told


@given(now=st.floats(0, 1e6), rooms=st.lists(st.floats(-100, 1e5), min_size=1, max_size=8),
       connected=st.integers(0, 10**7))
def test_the_interval_always_leaves_two_heartbeats_before_the_nearest_deadline(now, rooms, connected):
    deadlines = [now + r for r in rooms]
    interval = POLICY.heartbeat_interval(now, deadlines, connected)
    room = max(min(deadlines) - now, 0.0)
    assert SHORTEST_INTERVAL <= interval <= POLICY.max_interval
    assert interval <= max(SHORTEST_INTERVAL, room / POLICY.min_tries)


@given(timeout=st.floats(1, 7200), factor=st.floats(1, 4), grace=st.floats(0, 60),
       connected=st.integers(0, 10**7), lost=st.sets(st.integers(0, 200)))
def test_a_worker_that_follows_the_schedule_keeps_its_lease_despite_single_lost_heartbeats(
        timeout, factor, grace, connected, lost):
    """Heartbeats as told, any of them lost but never two in a row: the lease never lapses."""
    ttl = timeout * factor + grace
    lost = {i for i in lost if i - 1 not in lost}
    now, deadline = 0.0, ttl
    for i in range(200):
        now += POLICY.heartbeat_interval(now, [deadline], connected)
        if i in lost:
            continue
        assert now <= deadline, f"heartbeat {i} came after the deadline"
        deadline = now + ttl


def test_the_worker_schedule_follows_the_coordinator_and_stays_quiet_while_polling():
    clock = [0.0]
    schedule = HeartbeatSchedule(5.0, 20.0, clock=lambda: clock[0])
    schedule.told(0.0, 0.0)                    # an older coordinator: nothing changes
    assert (schedule.interval, schedule.lease_wait) == (5.0, 20.0)
    schedule.told(60.0, 90.0)
    assert (schedule.interval, schedule.lease_wait) == (60.0, 90.0)
    clock[0] = 30.0
    assert schedule.due_in(running=1) == 30.0
    schedule.polling(+1)
    assert schedule.due_in(running=0) == math.inf, "an idle worker's long-poll is its presence"
    assert schedule.due_in(running=1) == 30.0, "a lease running next to a long-poll is still kept"
    schedule.news()
    assert schedule.due_in(running=0) == 0.0
    schedule.sent()
    schedule.polling(-1)
    assert schedule.due_in(running=0) == 60.0, "paused: presence at the interval"
    schedule.told(2.0)
    assert schedule.due_in(running=1) == 2.0


def test_the_heartbeat_thread_wakes_for_a_shorter_interval_and_stops():
    schedule = HeartbeatSchedule(3600.0, 20.0)
    stop = threading.Event()
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(schedule.wait(lambda: 1, stop, tick=0.05)))
    thread.start()
    schedule.told(0.01)
    thread.join(5)
    assert woke == [True]
    stop.set()
    assert schedule.wait(lambda: 1, stop) is False


def test_a_change_wakes_every_waiter_while_few_wait_and_a_few_of_many():
    async def scenario() -> tuple[int, int, int]:
        signal = ChangeSignal(fanout=2, wake_all_below=4)
        few = [asyncio.create_task(signal.wait(5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        signal.notify()
        woken_few = sum(await asyncio.gather(*few))
        many = [asyncio.create_task(signal.wait(0.2)) for _ in range(10)]
        await asyncio.sleep(0)
        signal.notify()
        results = await asyncio.gather(*many)
        return woken_few, sum(results), results.index(True)
    woken_few, woken_many, first = asyncio.run(scenario())
    assert woken_few == 3
    assert woken_many == 2 and first == 0, "the longest waiting are woken first; the rest time out"


# -- LiveIndex: who is connected, per class, without a pass over the swarm -------------------

from autoswarm.coordinator.live_index import LiveIndex  # noqa: E402


def test_the_live_index_follows_contacts_expiries_and_class_moves():
    index = LiveIndex()
    for worker, cls in (("a", "x"), ("b", "x"), ("c", "y")):
        index.place(worker, cls)
    assert index.members("x") == {"a", "b"} and index.live("x") == set() and index.connected == 0
    index.heard("a", until=10.0)
    index.heard("b", until=10.5)
    index.heard("c", until=30.0)
    index.heard("ghost", until=99.0)   # never placed (unknown worker): ignored
    index.sweep(9.0)
    assert index.live("x") == {"a", "b"} and index.connected == 3
    index.heard("a", until=40.0)       # it called again
    index.sweep(10.6)                  # b's time ran out within this second: it may count until its end
    assert index.live("x") <= {"a", "b"} and "a" in index.live("x")
    index.sweep(11.0)
    assert index.live("x") == {"a"} and index.connected == 2
    index.place("c", "z")              # moved out of its class, still connected
    assert index.members("y") == set() and index.live("z") == {"c"} and index.members("z") == {"c"}
    assert set(index.live_classes()) == {"x", "z"}
    index.sweep(35.0)
    assert index.live("z") == set() and index.connected == 1 and set(index.live_classes()) == {"x"}
    index.heard("b", until=50.0)       # back after going offline
    index.sweep(45.0)
    assert index.live("x") == {"b"} and index.connected == 1


def test_the_live_index_counts_exactly_at_the_edge_of_a_second():
    index = LiveIndex()
    index.place("a", "x")
    index.place("b", "x")
    index.heard("a", until=5.0)
    index.heard("b", until=5.0)
    index.sweep(5.0)                    # still within its silence at exactly `until`
    assert index.connected == 2
    index.sweep(5.0001)
    assert index.connected == 0 and index.live("x") == set()


def test_the_live_index_agrees_with_a_full_recount_through_random_contacts():
    import random
    rng = random.Random(7)
    index = LiveIndex()
    until: dict[str, float] = {}
    classes = {f"w{i}": f"c{i % 5}" for i in range(300)}
    for worker, cls in classes.items():
        index.place(worker, cls)
    now = 0.0
    for _ in range(3000):
        now += rng.uniform(0, 0.2)
        worker = rng.choice(list(classes))
        if rng.random() < 0.05:
            classes[worker] = f"c{rng.randrange(7)}"
            index.place(worker, classes[worker])
        else:
            until[worker] = now + rng.uniform(0, 20)
            index.heard(worker, until[worker])
        if rng.random() < 0.3:
            index.sweep(now)
            for cls in set(classes.values()):
                truth = {w for w, c in classes.items() if c == cls and until.get(w, -1.0) >= now}
                # A worker whose time ran out within the current second may still count.
                late = {w for w in index.live(cls) - truth if until[w] > now - 1.0}
                assert truth <= set(index.live(cls)) and set(index.live(cls)) - truth == late
            assert index.connected == sum(len(index.live(c)) for c in set(classes.values()))
