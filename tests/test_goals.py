"""Issue 29's scoreboard (``benchmarks/content_rd.py --goals``): each target judged right."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from content_rd import GOALS, judge_goals, labelled, parse_counts


def _at_bounds() -> dict[tuple[str, str], float]:
    return {(content, what): bound for content, what, _, bound in GOALS}


def test_a_value_on_its_bound_meets_the_goal():
    rows = judge_goals(_at_bounds())
    assert len(rows) == len(GOALS)
    assert all(met for *_, met in rows)


@pytest.mark.parametrize("index", range(len(GOALS)))
def test_a_value_past_its_bound_misses_only_that_goal(index):
    content, what, op, bound = GOALS[index]
    measured = _at_bounds()
    measured[content, what] = bound + (0.01 if op == "<=" else -0.01)
    met = [m for *_, m in judge_goals(measured)]
    assert met == [i != index for i in range(len(GOALS))]


def test_what_could_not_be_measured_is_not_met():
    # screens: the model never reaches WebP's PSNR range, so no BD-rate exists
    measured = _at_bounds()
    measured["screens", "bd_vs_webp"] = None
    goal, shown, met = judge_goals(measured)[3]
    assert goal.startswith("screens: BD-rate vs WebP ≤ 50%")
    assert (shown, met) == ("n/a", False)


def test_the_measured_values_are_shown_with_their_units():
    measured = _at_bounds()
    measured["photos", "bd_vs_webp"] = 1.1
    measured["screens", "top_psnr"] = 24.22
    measured["photos", "high"] = 0.897
    measured["photos", "rate_control"] = 0.37
    shown = {goal: value for goal, value, _ in judge_goals(measured)}
    assert shown["photos: BD-rate vs WebP ≤ 0%"] == "+1.1%"
    assert shown["screens: top PSNR ≥ 35 dB"] == "24.22 dB"
    assert shown["photos: highest rate ≥ 1.5 bpp"] == "0.897 bpp"
    # an error is a magnitude: no sign, unlike a BD-rate
    assert shown["photos: `--target-bpp` median error ≤ 1%"] == "0.4%"


def test_counts_are_given_for_every_set_or_one():
    assert parse_counts(["12", "screens=6"]) == {"photos": 12, "illustrations": 12, "screens": 6}
    assert parse_counts(["photos=3"])["photos"] == 3
    for bad in (["screen=6"], ["0"], ["photos=x"]):
        with pytest.raises(ValueError, match="--count"):
            parse_counts(bad)


def test_a_model_file_is_labelled_as_asked_and_a_file_named_with_an_equals_sign_is_a_file(
        tmp_path):
    assert labelled("gpu-h200=../runs/model.pt") == ("gpu-h200", "../runs/model.pt")
    assert labelled("../runs/model.pt") == ("model", "../runs/model.pt")
    assert labelled("slimcae-vr5") == ("slimcae-vr5", "slimcae-vr5")
    odd = tmp_path / "a=b.pt"
    odd.write_bytes(b"")
    assert labelled(str(odd)) == ("a=b", str(odd))
