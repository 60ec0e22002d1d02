"""The index of edits being evaluated: what `seen_candidate` / `known_candidate` ask of it."""

from hypothesis import given, strategies as st

from autoswarm.coordinator.in_flight import InFlightCandidates


def test_another_lease_evaluating_the_candidate_is_found_but_not_the_asker_itself() -> None:
    flights = InFlightCandidates()
    flights.add("l1", "p", "c")
    assert not flights.elsewhere("c", "l1")            # only the asker evaluates it
    assert flights.elsewhere("c", "l2")
    assert flights.elsewhere("c", "l2", parent="p")
    assert not flights.elsewhere("c", "l2", parent="q")  # the same edit of another parent
    flights.add("l2", "q", "c")
    assert flights.elsewhere("c", "l1")                 # l2 has it, from any parent
    assert not flights.elsewhere("c", "l1", parent="p")


def test_a_lease_naming_another_candidate_or_ending_stops_counting() -> None:
    flights = InFlightCandidates()
    flights.add("l1", "p", "c")
    flights.add("l1", "p", "d")                         # its next heartbeat names a new edit
    assert not flights.elsewhere("c", "l2") and flights.elsewhere("d", "l2")
    flights.discard("l1")
    flights.discard("l1")                               # twice is harmless
    assert not flights.elsewhere("d", "l2") and len(flights) == 0


ops = st.lists(st.tuples(st.sampled_from(["add", "discard"]), st.sampled_from("abcd"),
                         st.sampled_from("pq"), st.sampled_from("xyz")), max_size=40)


@given(ops, st.sampled_from("abcde"), st.sampled_from("xyz"), st.sampled_from(["p", "q", None]))
def test_the_index_answers_as_a_walk_over_every_lease_would(steps, asker, candidate, parent) -> None:
    flights, model = InFlightCandidates(), {}   # model: the plain dict StudyState kept before
    for op, lease, p, c in steps:
        if op == "add":
            flights.add(lease, p, c)
            model[lease] = (p, c)
        else:
            flights.discard(lease)
            model.pop(lease, None)
    walk = any(other != asker and cand == candidate and (parent is None or par == parent)
               for other, (par, cand) in model.items())
    assert flights.elsewhere(candidate, asker, parent) == walk
