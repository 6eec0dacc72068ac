"""The coordinator's check of what each party answered to Prepare, and the one spec they agree on.

A party's policy may only *add* clipping bounds, for value columns the request gave none for
(:func:`check_effective_spec`); anything else -- another statistic, another budget, a dropped or
added DP request, a changed bound -- is refused, naming the party.  All parties must then run
one noise plan (:func:`agreed_spec`): answers that differ are refused with a message naming,
per party, only the bounds the policies filled in.  Pure functions on real ``StatSpec``\\ s.
"""

from __future__ import annotations

import pytest

from parties.privacy.policy import agreed_spec, check_effective_spec
from smpc import dp
from smpc.errors import InputError
from smpc.stats import StatSpec

OTHER = r"^p1 answered with a computation other than the one requested$"


def mean(bounds: dict[str, tuple[float, float]] | None = None, *, rho: float = 0.1,
         columns: tuple[str, ...] = ("x", "y")) -> StatSpec:
    """A DP mean of ``columns`` (exact when ``bounds`` is None)."""
    if bounds is None:
        return StatSpec("mean", columns)
    return StatSpec("mean", columns, dp=dp.DPRequest(rho=rho, bounds=bounds))


# ------------------------------------------------------------------------------ one answer


@pytest.mark.parametrize("asked", [
    mean(), mean({}), mean({"y": (-1.0, 1.0)}), mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)}),
], ids=["exact", "dp-no-bounds", "dp-some-bounds", "dp-all-bounds"])
def test_an_unchanged_answer_is_accepted_as_it_came(asked: StatSpec) -> None:
    """Equal (not identical) specs: exact or DP, with none, some or all bounds. Catches a check
    that refuses an unchanged spec, or that returns something else."""
    answer = StatSpec.from_json(asked.to_json())
    assert check_effective_spec(asked, answer, "p1") is answer


@pytest.mark.parametrize(("asked", "answer"), [
    (mean({}), mean({"x": (0.0, 10.0)})),
    (mean({}), mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})),
    (mean({"y": (-1.0, 1.0)}), mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})),
    (StatSpec("linreg", ("x",), target="y", dp=dp.DPRequest(rho=0.1)),
     StatSpec("linreg", ("x",), target="y",
              dp=dp.DPRequest(rho=0.1, bounds={"x": (0.0, 1.0), "y": (2.0, 3.0)}))),
], ids=["one-column-filled", "every-column-filled", "the-open-column-filled",
        "linreg-target-filled"])
def test_bounds_added_for_open_value_columns_are_accepted(asked: StatSpec,
                                                          answer: StatSpec) -> None:
    """What a policy does: fill in bounds for value columns (a linreg's target is one) that the
    request left open -- one of them or all of them. Catches a check that refuses filling in
    every open column, or the target's."""
    assert check_effective_spec(asked, answer, "p1") is answer


@pytest.mark.parametrize(("asked", "answer"), [
    (mean(), mean({"x": (0.0, 10.0)})),
    (mean({"x": (0.0, 10.0)}), mean()),
    (mean({}), StatSpec("sum", ("x", "y"), dp=dp.DPRequest(rho=0.1))),
    (mean({}), mean({}, columns=("x",))),
    (mean({}), mean({}, rho=0.2)),
    (mean({}), StatSpec("mean", ("x", "y"), dp=dp.DPRequest(epsilon=1.0, delta=1e-6))),
    (mean({"x": (0.0, 10.0)}), mean({"x": (0.0, 20.0)})),
    (mean({"x": (0.0, 10.0)}), mean({"y": (-1.0, 1.0)})),
    (mean({}), mean({"x": (0.0, 10.0), "z": (0.0, 1.0)})),
    (mean({}, rho=0.1), mean({"x": (0.0, 10.0)}, rho=0.2)),
    (mean(), StatSpec("sum", ("x", "y"))),
], ids=["exact-made-dp", "dp-dropped", "other-statistic", "other-columns", "other-rho",
        "other-budget-form", "requested-bound-widened", "requested-bound-dropped",
        "bound-for-a-column-not-read", "bounds-added-and-rho-changed", "exact-other-statistic"])
def test_any_other_change_is_refused_naming_the_party(asked: StatSpec,
                                                      answer: StatSpec) -> None:
    """A party that answers another computation (statistic, columns, budget), turns an exact
    request into a DP one or drops the DP, changes or drops a bound the analyst gave, or bounds a
    column the computation does not read, is refused: the noise plan would not be the one
    requested. Catches each of the comparisons being skipped or inverted."""
    with pytest.raises(InputError, match=OTHER):
        check_effective_spec(asked, answer, "p1")


# ------------------------------------------------------------------------------ all answers


def test_parties_that_agree_give_their_common_spec() -> None:
    """Two parties fill in the same bounds and one leaves the request unchanged (None) where
    nothing needed filling: the agreed spec is the filled one when all fill, the request when
    all leave it, and the request with no answers at all. Catches an agreement that returns the
    request instead of what the parties will run, or nothing."""
    asked = mean({})
    filled = mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})
    assert agreed_spec(asked, {"p1": filled, "p2": StatSpec.from_json(filled.to_json())}) == filled
    assert agreed_spec(asked, {"p1": None, "p2": None}) is asked
    assert agreed_spec(asked, {}) is asked
    whole = mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})
    assert agreed_spec(whole, {"p1": None, "p2": StatSpec.from_json(whole.to_json())}) == whole


def test_agreement_is_on_the_bounds_not_on_their_order() -> None:
    """Two parties answer the same bounds serialised in a different key order: one plan, so
    they agree. Catches a comparison of the answers' JSON text without sorted keys."""
    asked = mean({})
    a = mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})
    b = mean({"y": (-1.0, 1.0), "x": (0.0, 10.0)})
    assert list(b.to_json()["dp"]["bounds"]) == ["y", "x"]
    assert agreed_spec(asked, {"p1": a, "p2": b}) == a


def test_parties_that_disagree_are_named_with_the_bounds_they_filled_in() -> None:
    """p1 fills x with [0, 10], p2 with [0, 20], p3 leaves x open: refused, and the message
    shows each party's filled-in bound for x (``none`` for p3) -- not the analyst's own bound for
    y, which every party kept. Catches an agreement that accepts two plans, and a message that
    leaves out, invents or mislabels a party's bounds."""
    asked = mean({"y": (-1.0, 1.0)})
    p1 = mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})
    p2 = mean({"x": (0.0, 20.0), "y": (-1.0, 1.0)})
    with pytest.raises(InputError) as ei:
        agreed_spec(asked, {"p1": p1, "p2": p2, "p3": None})
    assert str(ei.value) == (
        "the parties' policies give different clipping bounds (p1: x [0.0, 10.0]; "
        "p2: x [0.0, 20.0]; p3: x none); give the bounds in the request (each within every "
        "party's policy)")
    with pytest.raises(InputError, match=r"\(p1: x \[0.0, 10.0\]; p2: x \[0.0, 20.0\]\)"):
        agreed_spec(asked, {"p1": p1, "p2": p2})


def test_two_columns_filled_differently_are_all_shown_in_order() -> None:
    asked = mean({})
    p1 = mean({"x": (0.0, 10.0), "y": (-1.0, 1.0)})
    p2 = mean({"y": (-2.0, 2.0), "x": (0.0, 10.0)})
    with pytest.raises(InputError, match=(r"\(p1: x \[0.0, 10.0\], y \[-1.0, 1.0\]; "
                                          r"p2: x \[0.0, 10.0\], y \[-2.0, 2.0\]\)")):
        agreed_spec(asked, {"p1": p1, "p2": p2})


def test_a_changed_answer_is_refused_before_agreement() -> None:
    """One party answering another computation is refused by name even if all answer alike."""
    other = mean({}, rho=0.2)
    with pytest.raises(InputError, match=r"^p1 answered with a computation other"):
        agreed_spec(mean({}), {"p1": other, "p2": other})
