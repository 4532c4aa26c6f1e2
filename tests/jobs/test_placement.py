"""The optimal poll placement: exact against brute force, within budget, and better with more budget."""

from __future__ import annotations

import math
import random

import pytest

from bot.jobs.placement import (
    LAG_WEIGHT,
    LATE_SECONDS,
    NOTICE_SECONDS,
    PROMPT_SECONDS,
    Distribution,
    FinishTimes,
    _candidates,
    _cell_costs,
    _cheapest,
    expected_requests,
    optimal_polls,
)


def _lognormal(median: float, sigma: float, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median), sigma) for _ in range(count)]


def _late_share(finish: FinishTimes, polls: list[float]) -> float:
    late, previous = 0.0, 0.0
    for at in polls:
        late += max(0.0, finish.cdf(at - LATE_SECONDS) - finish.cdf(previous))
        previous = at
    return late


def test_the_dynamic_programme_finds_the_cheapest_plan_of_all() -> None:
    # Small enough to try every plan: jobs end 20-40 s after submit, a few fail at 5-8 s.
    finish = FinishTimes(Distribution.from_samples([20, 24, 27, 29, 30, 31, 33, 36, 40]),
                         Distribution.from_samples([5, 6, 7, 8]), 0.1)
    min_gap = 4.0
    instants, done = _candidates(finish, finish.last, min_gap)
    cells = _cell_costs(finish, instants, done, min_gap, LAG_WEIGHT)
    running = [1.0 - d for d in done]
    last = len(instants) - 1

    def every_plan(previous: int = 0) -> list[tuple[int, ...]]:
        """Every plan ending at the last instant whose polls keep the gap, from `previous` on."""
        plans = []
        for index in range(previous + 1, last + 1):
            first, costs = cells[index]
            if first <= previous < first + len(costs):
                plans += [(index,)] if index == last else [(index, *rest) for rest in every_plan(index)]
        return plans

    def value(plan: tuple[int, ...], price: float) -> float:
        total, previous = 0.0, 0
        for index in plan:
            first, costs = cells[index]
            total += price * running[previous] + costs[previous - first]
            previous = index
        return total

    plans = every_plan()
    assert len(plans) >= 500  # a real search space
    for price in (0.001, 0.01, 0.05):
        best = min(value(plan, price) for plan in plans)
        assert value(tuple(_cheapest(cells, running, price)), price) == pytest.approx(best, abs=1e-12)


def test_a_plans_cells_add_up_to_the_lateness_slowness_and_lag_of_its_jobs() -> None:
    # The programme is exact over cells; this checks what a cell costs, against the definition.
    finish = FinishTimes(Distribution.from_samples(_lognormal(150, 0.15, 400, seed=7)),
                         Distribution.from_samples([8.0, 12.0, 20.0, 24.0]), 0.05)
    lag_weight, prompt_weight, notice = 0.003, 0.03, NOTICE_SECONDS
    instants, done = _candidates(finish, finish.last, 3.0)
    cells = _cell_costs(finish, instants, done, 3.0, lag_weight, prompt_weight, notice)
    plan, index = [], 0
    while index + 13 < len(instants) - 1:
        index += 4 if len(plan) % 2 else 13  # candidates 1 s apart where jobs end: gaps of 4 s and 13 s
        plan.append(index)
    plan.append(len(instants) - 1)
    gaps = [instants[b] - instants[a] for a, b in zip([0, *plan], plan)]
    assert min(gaps) < 2 * PROMPT_SECONDS and max(gaps) > LATE_SECONDS  # slow and late cells both
    summed, previous = 0.0, 0
    for index in plan:
        first, costs = cells[index]
        summed += costs[previous - first]
        previous = index
    polls, step, direct, at = [instants[i] for i in plan], 0.005, 0.0, 0.0
    while at < polls[-1]:
        share = finish.cdf(at + step) - finish.cdf(at)
        if share:
            found = next(poll for poll in polls if poll >= at + step / 2) - (at + step / 2)
            lag = found + notice  # the member's lag: the poll's round trip and the handing over come after
            # The lag term leaves out the constant `notice` (it moves every plan alike).
            direct += share * ((lag > LATE_SECONDS) + prompt_weight * (lag > PROMPT_SECONDS) + lag_weight * found)
        at += step
    assert summed == pytest.approx(direct, rel=2e-3)


def test_plans_leave_room_for_the_round_trip_after_the_poll() -> None:
    # Many jobs end early (a wide spread): there, the cheapest on-time gap is all a plan can afford.
    # Planned as if a result reached Discord the instant its poll was sent, the jobs that finished
    # just after a poll arrive late once the poll's round trip is counted.
    finish = FinishTimes(Distribution.from_samples(_lognormal(150, 0.25, 2000, seed=11)))
    ends = _lognormal(150, 0.25, 20_000, seed=12)
    naive = optimal_polls(finish, 8.0, 3.0, notice=0.0)
    aware = optimal_polls(finish, 8.0, 3.0)
    assert expected_requests(finish, aware) <= 8.0
    assert any(LATE_SECONDS - NOTICE_SECONDS < b - a <= LATE_SECONDS for a, b in zip(naive, naive[1:]))
    assert not any(LATE_SECONDS - NOTICE_SECONDS < b - a <= LATE_SECONDS for a, b in zip(aware, aware[1:]))
    assert _late_on(aware, ends) < 0.8 * _late_on(naive, ends)


def test_plans_keep_the_budget_the_gap_and_end_where_every_job_has_ended() -> None:
    finish = FinishTimes(Distribution.from_samples(_lognormal(240, 0.15, 1000, seed=1)))
    for budget in (4.0, 7.0, 10.0):
        polls = optimal_polls(finish, budget, 3.0)
        assert expected_requests(finish, polls) <= budget
        assert polls[0] >= 3.0 and all(b - a >= 3.0 - 1e-9 for a, b in zip(polls, polls[1:]))
        assert polls[-1] == finish.last
        if budget >= 10.0:
            assert finish.cdf(polls[0]) < 0.02  # with enough to spend, few jobs wait long at the fast end


def test_more_budget_means_fewer_late_jobs_and_a_shorter_median() -> None:
    finish = FinishTimes(Distribution.from_samples(_lognormal(240, 0.15, 1000, seed=2)))
    lates, medians = [], []
    for budget in (5.0, 8.0, 11.0):
        polls = optimal_polls(finish, budget, 3.0)
        lates.append(_late_share(finish, polls))
        lags = sorted(next(at for at in polls if at >= end) - end for end in _lognormal(240, 0.15, 2000, seed=3)
                      if end <= polls[-1])
        medians.append(lags[len(lags) // 2])
    assert lates[0] > lates[1] > lates[2]
    assert medians[0] > medians[2]


def test_early_failures_get_a_check_only_when_enough_jobs_end_there() -> None:
    successes = Distribution.from_samples(_lognormal(150, 0.15, 1000, seed=4))
    rejections = Distribution.from_samples([5.0 + n for n in range(21)])  # 5-25 s
    for share, expect_checks in ((0.03, True), (0.0002, False)):
        polls = optimal_polls(FinishTimes(successes, rejections, share), 10.0, 3.0)
        assert any(at <= 25.0 for at in polls) is expect_checks


def test_a_budget_below_one_request_still_polls_once() -> None:
    finish = FinishTimes(Distribution.from_samples([100.0, 120.0]))
    assert optimal_polls(finish, 0.5, 3.0) == [120.0]


def _late_on(polls: list[float], ends: list[float], notice: float = NOTICE_SECONDS) -> float:
    """Share of these finish times a plan hands over more than LATE_SECONDS later, `notice` after the
    poll that found them (past the plan: late)."""
    late = 0
    for end in ends:
        after = next((at for at in polls if at >= end), math.inf)
        late += after + notice - end > LATE_SECONDS
    return late / len(ends)


def test_smoothing_keeps_the_centre_widens_a_little_and_repeats_exactly() -> None:
    samples = _lognormal(240, 0.15, 1000, seed=5)
    raw, smooth = Distribution.from_samples(samples), Distribution.smoothed(samples)
    assert smooth.quantile(0.5) == pytest.approx(raw.quantile(0.5), rel=0.01)
    assert smooth.quantile(0.0) < raw.quantile(0.0) and smooth.last > raw.last
    assert smooth.last < raw.last * 1.1  # a bandwidth of a few percent of the duration, not a blur
    again = Distribution.smoothed(list(reversed(samples)))
    assert [again.quantile(q / 20) for q in range(21)] == [smooth.quantile(q / 20) for q in range(21)]


def test_smoothing_leaves_what_it_cannot_smooth() -> None:
    for samples in ([150.0], [150.0] * 10, [0.0, 150.0]):
        smooth, raw = Distribution.smoothed(samples), Distribution.from_samples(samples)
        assert [smooth.quantile(q / 4) for q in range(5)] == [raw.quantile(q / 4) for q in range(5)]


@pytest.mark.parametrize("history", [100, 1000])
def test_plans_from_a_smoothed_history_are_late_less_often_on_new_jobs(history: int) -> None:
    # The plan is fitted exactly to past jobs; the next jobs come from the same distribution, not
    # the same sample. Averaged over several histories, so one lucky sample cannot decide.
    fresh = _lognormal(240, 0.15, 20_000, seed=99)
    raw_late = smooth_late = 0.0
    for seed in range(6):
        past = _lognormal(240, 0.15, history, seed=100 + seed)
        raw_late += _late_on(optimal_polls(FinishTimes(Distribution.from_samples(past)), 9.8, 3.0), fresh)
        smooth_late += _late_on(optimal_polls(FinishTimes(Distribution.smoothed(past)), 9.8, 3.0), fresh)
    assert smooth_late < 0.85 * raw_late
