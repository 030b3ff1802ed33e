"""README "The metered API": no input a client may send costs more than about a second of CPU.

Each case of bench/products_worst_case.py (emoji, combining marks, nested JSON, the largest
images each format may have, files of millions of tiny markers...) must answer what it should
and stay under a bound twice the goal, measured in CPU time so a busy machine cannot fail it.
`make bench-products` prints the same cases' timings.
"""
from __future__ import annotations

import pytest

from bench.products_worst_case import CASES, case_measure

CPU_BOUND_MS = 2_000


@pytest.mark.parametrize("case", CASES, ids=[f"{case.product}: {case.label}" for case in CASES])
def test_no_input_costs_more_than_the_bound(case):
    ms, outcome = case_measure(case)
    assert outcome == case.expect
    assert ms < CPU_BOUND_MS, f"{case.label}: {ms:.0f} ms of CPU"
