"""`autoswarm run` divides the machine's cores between the workers it starts on it."""

from __future__ import annotations

from autoswarm.local_run import THREAD_VARIABLES, worker_thread_limits


def test_two_workers_on_two_cores_get_one_thread_each() -> None:
    assert worker_thread_limits(2, 2, 1, {}) == {name: "1" for name in THREAD_VARIABLES}


def test_the_cores_are_shared_by_every_slot_of_every_worker() -> None:
    assert worker_thread_limits(16, 2, 2, {})["OMP_NUM_THREADS"] == "4"
    assert worker_thread_limits(16, 3, 1, {})["OMP_NUM_THREADS"] == "5"  # what is left over stays unused


def test_more_slots_than_cores_still_get_one_thread() -> None:
    assert worker_thread_limits(2, 4, 1, {})["OMP_NUM_THREADS"] == "1"


def test_one_worker_with_one_slot_keeps_every_core() -> None:
    assert worker_thread_limits(8, 1, 1, {}) == {}


def test_a_thread_count_the_user_set_is_left_alone() -> None:
    limits = worker_thread_limits(8, 2, 1, {"OMP_NUM_THREADS": "3"})
    assert "OMP_NUM_THREADS" not in limits
    assert limits["MKL_NUM_THREADS"] == "4"
