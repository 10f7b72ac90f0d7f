"""The statistics over independent units: exact sign-flip p, Holm, the interval, by hand."""

import itertools

import numpy as np
import pytest

from msstlib import stats


def test_signflip_p_of_eight_positive_units_is_the_smallest_possible():
    # all eight agree: only the all-plus and all-minus patterns reach |sum|
    assert stats.signflip_p(np.arange(1.0, 9.0)) == pytest.approx(2 / 256)
    # five units can never reach 0.05 (the reason the fold-based verdicts rested on normality)
    assert stats.signflip_p(np.ones(5)) == pytest.approx(2 / 32) and 2 / 32 > 0.05


def test_signflip_p_counts_patterns_by_hand():
    d = np.array([3.0, 1.0, -0.5, 2.0])
    sums = [abs(np.dot(s, d)) for s in itertools.product((1, -1), repeat=4)]
    expected = np.mean([v >= abs(d.sum()) - 1e-12 for v in sums])
    assert stats.signflip_p(d) == pytest.approx(expected)
    assert stats.signflip_p(d) == pytest.approx(4 / 16)  # |±3±1±0.5±2| >= 5.5: 4 of the 16 patterns


def test_signflip_p_against_a_margin_shifts_the_units():
    d = np.array([-0.5, -0.2, 0.1, -0.4, -0.3, -0.1, 0.2, -0.6])
    assert stats.signflip_p(d) > 0.05  # not distinguishable from 0 ...
    assert stats.signflip_p(d, null=-1.0) == pytest.approx(2 / 256)  # ... but every unit lies above -1


def test_holm_by_hand_and_keeps_order_and_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 over m=4: 0.04, max(0.04, 0.09), max(0.09, 0.08), max(0.09, 0.5)
    np.testing.assert_allclose(stats.holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])
    assert (stats.holm(np.array([0.6, 0.9])) <= 1).all()


def test_interval_is_students_t_on_k_minus_one_df():
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    mean, low, high, mde = stats.interval(d)
    se = np.std(d, ddof=1) / np.sqrt(8)
    assert mean == 4.5 and low == pytest.approx(4.5 - 2.3646243 * se, abs=1e-6)
    assert mde == pytest.approx((2.3646243 + 0.8960296) * se, abs=1e-6)
    assert np.isnan(stats.interval(np.array([1.0]))[1])
