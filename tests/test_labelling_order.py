"""Which unlabelled scan comes next (sarcopenia_app.labelling_order)."""

from sarcopenia_app.labelling_order import Candidate, labelling_order

NOW = 1_000_000.0


def test_most_uncertain_free_scan_comes_first():
    order = labelling_order({"a": Candidate(0.2), "b": Candidate(0.9), "c": Candidate(0.5)}, NOW, reserve_s=60)
    assert order == ["b", "c", "a"]


def test_scan_handed_out_recently_is_skipped_until_its_reservation_ends():
    candidates = {"a": Candidate(0.9, handed_out_ts=NOW - 10), "b": Candidate(0.1)}
    assert labelling_order(candidates, NOW, reserve_s=60)[0] == "b"
    assert labelling_order(candidates, NOW + 100, reserve_s=60)[0] == "a"


def test_unscored_scans_come_before_scored_ones():
    order = labelling_order({"new": Candidate(None), "known": Candidate(5.0)}, NOW, reserve_s=60)
    assert order == ["new", "known"]


def test_when_every_scan_was_handed_out_the_one_handed_out_longest_ago_comes_first():
    candidates = {"a": Candidate(0.9, handed_out_ts=NOW - 5), "b": Candidate(0.1, handed_out_ts=NOW - 30)}
    assert labelling_order(candidates, NOW, reserve_s=60) == ["b", "a"]
