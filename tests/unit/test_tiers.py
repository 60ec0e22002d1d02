"""Comparability tiers: a class joins the reference's tier on evidence and leaves on disagreement."""

from __future__ import annotations

import random

from autoswarm.coordinator.tiers import CHECK_EVERY, MIN_SHARED, Tiers
from autoswarm.hardware_class import moved_class

SIGMA = 0.02


def sigma(_cls: str) -> float:
    return SIGMA


def _champions(tiers: Tiers, classes: dict[str, tuple[float, float]], scores: list[float],
               rng: random.Random, start: int = 0) -> None:
    """Each champion measured directly on every class: y = offset + scale * score + noise."""
    for i, score in enumerate(scores, start):
        for cls, (offset, scale) in classes.items():
            tiers.observe(f"v{i}", cls, offset + scale * score + rng.gauss(0, SIGMA), sigma)


def test_a_class_related_by_offset_and_scale_joins_and_is_predicted():
    rng = random.Random(1)
    tiers = Tiers()
    classes = {"ref": (0.0, 1.0), "fast": (0.7, 1.3)}
    tiers.observe("v0", "ref", -10.0, sigma)   # the reference measured one more champion
    _champions(tiers, classes, [-8.0, -6.0], rng, start=1)
    assert tiers.reference() == "ref"
    assert not tiers.member("fast", sigma), "two shared champions are not evidence enough"
    assert tiers.wants_direct("fast", 3, sigma)
    _champions(tiers, classes, [-4.0, -3.0], rng, start=3)
    assert tiers.member("fast", sigma)
    tiers.observe("v9", "ref", -2.0, sigma)
    prediction = tiers.predict("v9", "fast", sigma)
    assert prediction is not None and prediction.reference == "ref"
    assert abs(prediction.mean - (0.7 + 1.3 * -2.0)) < 0.1
    assert prediction.variance > 0
    assert tiers.predict("v9", "ref", sigma) is None, "the reference measures for itself"
    assert tiers.predict("v-unmeasured", "fast", sigma) is None, "nothing to predict from"


def test_members_spot_check_one_champion_in_check_every_and_the_reference_measures_all():
    rng = random.Random(2)
    tiers = Tiers()
    tiers.observe("v-first", "ref", -12.0, sigma)
    _champions(tiers, {"ref": (0.0, 1.0), "b": (0.3, 1.0)}, [-10.0, -8.0, -6.0, -5.0], rng)
    assert tiers.member("b", sigma)
    direct = [seq for seq in range(4 * CHECK_EVERY) if tiers.wants_direct("b", seq, sigma)]
    assert len(direct) == 4
    assert all(tiers.wants_direct("ref", seq, sigma) for seq in range(CHECK_EVERY))


def test_a_member_whose_direct_baseline_disagrees_leaves_and_must_earn_its_way_back():
    rng = random.Random(3)
    tiers = Tiers()
    tiers.observe("v-first", "ref", -12.0, sigma)
    _champions(tiers, {"ref": (0.0, 1.0), "b": (0.5, 1.0)}, [-10.0, -8.0, -6.0, -5.0], rng)
    assert tiers.member("b", sigma)
    tiers.observe("v10", "ref", -4.0, sigma)
    assert not tiers.observe("v10", "b", 0.5 - 4.0 + 1.0, sigma), "1.0 off the line: 50 σ"
    assert not tiers.member("b", sigma) and tiers.left("b") == 1
    assert tiers.wants_direct("b", 1, sigma)
    # It rejoins only on new evidence, from its new relation.
    _champions(tiers, {"ref": (0.0, 1.0), "b": (1.5, 1.0)}, [-3.5, -3.0, -2.5], rng, start=11)
    assert tiers.member("b", sigma)
    tiers.observe("v20", "ref", -2.0, sigma)
    prediction = tiers.predict("v20", "b", sigma)
    assert prediction is not None and abs(prediction.mean - (1.5 - 2.0)) < 0.1


def test_classes_that_do_not_measure_alike_never_join():
    rng = random.Random(4)
    tiers = Tiers()
    tiers.observe("v-first", "ref", -12.0, sigma)
    # Scores unrelated to the reference's: edits that help one class hurt the other.
    for i, (x, y) in enumerate([(-10.0, -3.0), (-8.0, -6.0), (-6.0, -2.0), (-5.0, -7.0), (-4.0, -1.0)]):
        tiers.observe(f"v{i}", "ref", x, sigma)
        tiers.observe(f"v{i}", "odd", y, sigma)
    assert not tiers.member("odd", sigma)
    # Better on the reference is worse here: a negative scale is no tier.
    for i, x in enumerate([-10.0, -8.0, -6.0, -4.0]):
        tiers.observe(f"v{i}", "flip", -x, sigma)
    assert not tiers.member("flip", sigma)
    assert tiers.wants_direct("odd", 0, sigma) and tiers.wants_direct("flip", 0, sigma)


def test_min_shared_agreeing_champions_are_enough_over_a_short_range():
    """Champions close together: the offset is learned, the scale is not guessed."""
    rng = random.Random(5)
    tiers = Tiers()
    tiers.observe("v-first", "ref", -1.0, sigma)
    _champions(tiers, {"ref": (0.0, 1.0), "b": (0.2, 1.2)}, [-1.0 + 0.01 * i for i in range(MIN_SHARED)], rng)
    relation = tiers.relation("b", sigma)
    assert relation is not None and relation.scale == 1.0


def test_a_prediction_carries_the_reference_baselines_own_error():
    """Every member's prediction of a champion rests on the reference's runs of it: their
    error (scale² σ_ref² / runs) is in the prediction's variance, beside the line's."""
    rng = random.Random(5)
    tiers = Tiers()
    classes = {"ref": (0.0, 1.0), "b": (0.3, 1.2)}
    tiers.observe("v-first", "ref", -12.0, sigma)
    _champions(tiers, classes, [-10.0, -8.0, -6.0, -4.0, -3.0], rng)
    relation = tiers.relation("b", sigma)
    assert relation is not None
    tiers.observe("one", "ref", -2.0, sigma, runs=1)
    tiers.observe("four", "ref", -2.0, sigma, runs=4)
    line = relation.predict(-2.0)[1]
    one, four = tiers.predict("one", "b", sigma), tiers.predict("four", "b", sigma)
    assert one is not None and four is not None
    assert abs(one.variance - (line + relation.scale ** 2 * SIGMA ** 2)) < 1e-12
    assert abs(four.variance - (line + relation.scale ** 2 * SIGMA ** 2 / 4)) < 1e-12


def test_a_class_a_worker_was_moved_to_follows_but_never_leads_nor_tiers_a_small_swarm():
    """A moved class is one machine that measured unlike the class it named, perhaps a liar:
    it may be predicted (its prediction judges only its own runs), but it is never the
    reference, whatever it measured, nor one of the classes that make a swarm tiered."""
    rng = random.Random(6)
    tiers = Tiers()
    moved = moved_class("cpu:Test x2", "w-1")
    liar = {moved: (10.0, 1.0)}   # +10 on every baseline, on every champion
    _champions(tiers, liar, [-10.0, -9.0], rng)
    assert tiers.reference() is None and tiers.classes() == 0
    _champions(tiers, {"ref": (0.0, 1.0)} | liar, [-8.0, -6.0, -4.0], rng, start=2)
    assert tiers.reference() == "ref", "five points against three: the moved class does not lead"
    assert tiers.classes() == 1
    assert tiers.member(moved, sigma), "a steady lie is a steady offset: it predicts only its own runs"
    tiers.observe("v5", "ref", -3.0, sigma)
    prediction = tiers.predict("v5", moved, sigma)
    assert prediction is not None and abs(prediction.mean - 7.0) < 0.2
    assert tiers.predict("v5", "ref", sigma) is None



def test_a_made_up_class_named_first_that_measures_every_champion_first_never_leads():
    """An attacker's one machine in a made-up class "0000" measures every champion before
    anyone else, as many times as the honest class does: the reference is chosen by evidence
    (distinct workers behind each point; the newest champion not yet counted), never by a
    name that sorts first nor by who measured first. Members are predicted from the honest
    class, not from the attacker's numbers."""
    rng = random.Random(7)
    tiers = Tiers()
    honest, attacker, member = "cpu:Intel Xeon x8", "0000", "cpu:AMD EPYC x4"
    for i, score in enumerate([-10.0, -8.0, -6.0, -5.0, -4.0, -3.0]):
        version = f"v{i}"
        tiers.observe(version, attacker, score - 0.3 + rng.gauss(0, SIGMA), sigma, runs=2, workers=1)
        if i:
            assert tiers.reference() == honest, f"{version}: measured first, and still not the reference"
        tiers.observe(version, honest, score + rng.gauss(0, SIGMA), sigma, runs=2, workers=2)
        tiers.observe(version, member, 0.4 + score + rng.gauss(0, SIGMA), sigma, runs=2, workers=2)
        assert tiers.reference() in {honest, member}
        assert tiers.reference() != attacker
    tiers.observe("v-new", attacker, -2.9, sigma, runs=2, workers=1)
    assert tiers.reference() != attacker
    assert tiers.predict("v-new", member, sigma) is None, "nothing is predicted from the attacker's point"


def test_one_machine_cannot_outweigh_a_class_measured_by_two_however_many_runs_it_repeats():
    rng = random.Random(8)
    tiers = Tiers()
    for i, score in enumerate([-10.0, -8.0, -6.0, -5.0]):
        tiers.observe(f"v{i}", "0000", score + rng.gauss(0, SIGMA), sigma, runs=6, workers=1)
        tiers.observe(f"v{i}", "cpu:B x2", score + rng.gauss(0, SIGMA), sigma, runs=2, workers=2)
    assert tiers.reference() == "cpu:B x2"


def test_the_reference_does_not_move_to_whoever_measures_a_new_champion_first():
    """Between classes of equal evidence the reference stays where it is when a new champion
    arrives: members are not refitted against every class that measured it first."""
    rng = random.Random(9)
    tiers = Tiers()
    classes = {"cpu:A x2": (0.0, 1.0), "cpu:B x2": (0.3, 1.0), "cpu:C x2": (-0.2, 1.0)}
    _champions(tiers, classes, [-10.0, -8.0, -6.0], rng)
    first = tiers.reference()
    assert first is not None
    for i, score in enumerate([-5.0, -4.0, -3.0], 3):
        for cls in sorted(classes, key=lambda c: c == first):   # the reference measures last
            offset, scale = classes[cls]
            tiers.observe(f"v{i}", cls, offset + scale * score + rng.gauss(0, SIGMA), sigma)
            assert tiers.reference() == first
