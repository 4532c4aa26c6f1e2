"""The best any poll schedule can do on the benchmark's workload: close to a lower bound on the late share.

Without progress or a callback, a status request says only "done" or "still running", so every
schedule, however adaptive, is a fixed list of poll times per kind of job (or a random choice
between lists). This finds the plan pairs with the smallest share of jobs handed over more than
LATE_SECONDS after the vendor finished, within the request budget (a mean over the workload's mix
of kinds, as the bot spends it, no kind above KIND_BUDGET_CAP times it), knowing the workload's true
distributions (large samples, not the 1,000 past jobs the bot learns from), and prints them with
what the bot's own plans get on the same draws (the mean over HISTORIES plans, each learned from its
own history). The search is the bot's own (one price bisection over candidate instants 1 s apart),
so the bound is close, not exact: a finer grid or a third plan could do a little better. Each result
reaches Discord `--notice` seconds after the poll that found it (its round trip). `--per-kind`
spends the budget on each kind alone instead, as the bot did before it shared it.

Kling reports progress, so it is counted as never late (which flatters the bound), at
`--kling-requests` per job (what its jobs cost in the benchmark). If the jobs that must be late
exceed 1% of all jobs, no schedule within the budget gets the p99 to LATE_SECONDS.
`--frontier` sweeps the placement's weights on the true distributions: how many more jobs are late
when a plan buys a shorter median, i.e. whether both targets fit in one plan.

    python benchmarks/bound.py [--budget 10] [--sigma 0.15] [--failures realistic] [--history 1000]
                               [--unsmoothed] [--notice 0.25] [--kling-requests 4.7] [--per-kind] [--frontier]
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.catalog import Family, ModelSpec, ProviderName, get_model  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.jobs.placement import (  # noqa: E402
    LAG_WEIGHT, LATE_SECONDS, PROMPT_SECONDS, PROMPT_WEIGHT, Distribution, FinishTimes, PlanMix, PricedKind,
    optimal_mix, shared_mixes,
)
from bot.jobs.schedule import (  # noqa: E402
    HISTORY_ROWS, KIND_BUDGET_CAP, MIX_ROWS, KindHistory, PollPlan, PollSchedule, follows_dearer,
)
from bot.validation import GenerationRequest, validate_request  # noqa: E402
from benchmarks.workload import FAILURE_RATE, REQUEST_MIX, SIGMA, draw_outcome  # noqa: E402

SAMPLE = 20_000
TRIALS = 100_000
HISTORIES = 5
NOTICE = 0.25  # seconds from sending a poll to handing its result over (benchmarks/scenario.py VENDOR_LATENCY)
KLING_REQUESTS = 4.7  # status requests per Kling job in the benchmark (its progress paces them)
# (lag weight, prompt weight) pairs: lateness alone, then lag alone, then slowness beside a little lag.
FRONTIER_WEIGHTS = ((1e-6, 0.0), (0.001, 0.0), (0.003, 0.0), (0.01, 0.0), (0.03, 0.0),
                    (0.003, 0.01), (0.003, 0.03), (0.003, 0.05), (0.003, 0.1))


def _draws(rng: random.Random, vendor_model: str, sigma: float, failures: str, count: int) -> tuple[list[float], list[float]]:
    successes, failed = [], []
    for _ in range(count):
        took, succeeded = draw_outcome(rng, vendor_model, sigma, failures)
        (successes if succeeded else failed).append(took)
    return successes, failed


def _judge(plan: list[float] | PlanMix | PollPlan, ends: list[float], notice: float) -> tuple[float, float, float, float]:
    """(late share, mean requests, median lag, share noticed within PROMPT_SECONDS) of a plan on these
    finish times, each handed over `notice` after the poll that found it (past the plan: late). With
    a plan pair, the n-th job follows the plan that job id n would."""
    if isinstance(plan, PollPlan):
        cheaper = [*plan.early_checks, *plan.offsets]
        dearer = [*plan.dearer.early_checks, *plan.dearer.offsets] if plan.dearer else cheaper
        share = plan.dearer_share
    elif isinstance(plan, PlanMix):
        cheaper, dearer, share = plan.cheaper, plan.dearer, plan.dearer_share
    else:
        cheaper, dearer, share = plan, plan, 0.0
    lags, requests = [], 0
    for job_id, end in enumerate(ends, start=1):
        polls = dearer if follows_dearer(job_id, share) else cheaper
        index = bisect.bisect_left(polls, end)
        lags.append(math.inf if index == len(polls) else polls[index] + notice - end)
        requests += min(index + 1, len(polls))
    lags.sort()
    late = sum(lag > LATE_SECONDS for lag in lags) / len(lags)
    prompt = bisect.bisect_right(lags, PROMPT_SECONDS) / len(lags)
    return late, requests / len(ends), lags[len(lags) // 2], prompt


def _shared(kinds: list[tuple[float, FinishTimes]], budget: float, min_gap: float, notice: float,
            lag_weight: float = 1e-6, prompt_weight: float = 0.0) -> list[PlanMix]:
    """The true-distribution plans of these kinds sharing `budget` (their mean, weighted by share)."""
    priced = []
    for weight, truth in kinds:
        kind = PricedKind(truth, min_gap, lag_weight, prompt_weight, notice)
        kind.cap(KIND_BUDGET_CAP * budget)
        priced.append((weight, kind))
    return shared_mixes(priced, budget)


def _frontier(kinds: list[tuple[float, FinishTimes, list[float]]], budgets: list[float], min_gap: float,
              notice: float, per_kind: bool) -> None:
    """How the tail trades against the median, for plans that know the true distributions: the
    placement's weights swept from "lateness only" to "mostly the median"."""
    print(f"\nthe best plans' trade, by the placement's weights (Veo and Sora kinds; Kling counted never late;"
          f" the bot's: lag {LAG_WEIGHT:g}, slowness {PROMPT_WEIGHT:g})\n")
    print(f"| lag weight | weight of lag > {PROMPT_SECONDS:.0f} s | all jobs late | Veo/Sora jobs noticed within"
          f" {PROMPT_SECONDS:.0f} s | Veo/Sora median lag (mean of the kinds') |")
    print("| --- | --- | --- | --- | --- |")
    total = sum(weight for weight, _, _ in kinds)
    for lag_weight, prompt_weight in FRONTIER_WEIGHTS:
        if per_kind:
            plans = [optimal_mix(truth, budget, min_gap, lag_weight=lag_weight, prompt_weight=prompt_weight,
                                 notice=notice) for (_, truth, _), budget in zip(kinds, budgets)]
        else:
            plans = _shared([(weight, truth) for weight, truth, _ in kinds], budgets[0], min_gap, notice,
                            lag_weight, prompt_weight)
        late = prompt = median = 0.0
        for (weight, _, fresh), polls in zip(kinds, plans):
            kind_late, _, kind_median, kind_prompt = _judge(polls, fresh, notice)
            late += weight * kind_late
            prompt += weight * kind_prompt / total
            median += weight * kind_median / total
        print(f"| {lag_weight:g} | {prompt_weight:g} | {late:.2%} | {prompt:.1%} | {median:.1f} s |")


def _kind_of(fields: dict[str, Any]) -> tuple[ModelSpec, str]:
    """The model and mode the bot validates one of the workload's orders to."""
    request = GenerationRequest(prompt="bound", upsample=False if fields["family"] is Family.VEO else None, **fields)
    spec = validate_request(request, set(ProviderName), None)
    return get_model(spec.model_key), spec.mode.value


def _bot_plans(schedule: PollSchedule, rng: random.Random, args: argparse.Namespace,
               models: list[tuple[float, ModelSpec, str]]) -> dict[tuple[str, str], PollPlan]:
    """The bot's plans from one history: HISTORY_ROWS successes per kind, the vendor's failures among
    2,000, the mix of REQUEST_MIX, and Kling's jobs at `--kling-requests` each."""
    kinds = []
    for weight, model, mode in models:
        history, history_failed = _draws(rng, model.vendor_model, args.sigma, args.failures, 2000)
        while len(history) < args.history:
            history += _draws(rng, model.vendor_model, args.sigma, args.failures, args.history)[0]
        paced = model.family is Family.KLING
        kinds.append(KindHistory(model.key, mode, round(weight * MIX_ROWS), history[:args.history], history_failed,
                                 2000, costed_jobs=args.history if paced else 0,
                                 mean_requests=args.kling_requests if paced else 0.0,
                                 progress_share=1.0 if paced else 0.0))
    if args.per_kind:
        return {(kind.model_key, kind.mode): schedule.build_plan(kind.model_key, kind.durations, kind.failures,
                                                                  kind.finished) for kind in kinds}
    return schedule.build_plans(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--sigma", type=float, default=SIGMA)
    parser.add_argument("--failures", default="realistic")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--history", type=int, default=HISTORY_ROWS,
                        help="past successes per kind the bot's plans are learned from (default %(default)s)")
    parser.add_argument("--unsmoothed", action="store_true", help="the bot plans on its raw history, unsmoothed")
    parser.add_argument("--notice", type=float, default=NOTICE,
                        help="seconds from sending the poll that finds a job to handing its result to Discord"
                             " (default %(default)s: one vendor round trip, as in the benchmark's real-pace stretch)")
    parser.add_argument("--kling-requests", type=float, default=KLING_REQUESTS,
                        help="status requests per Kling job, paced by its progress (default %(default)s)")
    parser.add_argument("--per-kind", action="store_true", help="each kind spends the budget alone")
    parser.add_argument("--frontier", action="store_true",
                        help="also sweep the lag weight of the true-distribution plans: the tail against the median")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    schedule = PollSchedule(None, FakeClock(), explore_share=0,  # type: ignore[arg-type]
                            smooth_history=not args.unsmoothed)
    models = [(weight, *_kind_of(fields)) for weight, fields in REQUEST_MIX]
    kling_share = sum(weight for weight, model, _ in models if model.family is Family.KLING)
    polled = [(weight, model, mode) for weight, model, mode in models if model.family is not Family.KLING]
    kinds: list[tuple[float, FinishTimes, list[float]]] = []
    for weight, model, _ in polled:
        successes, failed = _draws(rng, model.vendor_model, args.sigma, args.failures, SAMPLE)
        truth = FinishTimes(Distribution.from_samples(successes), Distribution.from_samples(failed),
                            len(failed) / SAMPLE)
        fresh = [took for took, _ in (draw_outcome(rng, model.vendor_model, args.sigma, args.failures)
                                      for _ in range(TRIALS))]
        kinds.append((weight, truth, fresh))
    # What the polled kinds may spend: all of the budget per kind, or what Kling leaves of the mean.
    shared_budget = (args.budget - kling_share * args.kling_requests) / (1.0 - kling_share)
    budgets = [args.budget] * len(kinds) if args.per_kind else [shared_budget] * len(kinds)
    if args.per_kind:
        best = [optimal_mix(truth, args.budget, schedule.min_interval, lag_weight=1e-6, prompt_weight=0.0,
                            notice=args.notice) for _, truth, _ in kinds]
    else:
        best = _shared([(weight, truth) for weight, truth, _ in kinds], shared_budget, schedule.min_interval,
                       args.notice)
    # The bot's plans: each from one history, averaged over HISTORIES of them (one sample can be lucky or not).
    ours = [_bot_plans(schedule, rng, args, models) for _ in range(HISTORIES)]
    scope = "each kind alone" if args.per_kind else (
        f"a mean over the mix; Kling at {args.kling_requests:g}, so {shared_budget:.2f} for the others")
    print(f"budget {args.budget} requests/job ({scope}), late = handed over > {LATE_SECONDS:.0f} s after the vendor"
          f" finished, {args.notice:g} s after the poll that found it was sent\n")
    print("| kind | share of jobs | best possible late share | its requests/job | its median lag"
          f" | bot's plan: late share | bot's requests/job | bot's median lag | bot's within {PROMPT_SECONDS:.0f} s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    must_be_late = bot_late = bot_prompt = bot_requests = 0.0
    for (weight, model, mode), (_, truth, fresh), plan in zip(polled, kinds, best):
        best_late, best_requests, best_median, _ = _judge(plan, fresh, args.notice)
        judged = [_judge(plans[(model.key, mode)], fresh, args.notice) for plans in ours]
        ours_late, ours_requests, ours_median, ours_prompt = (sum(column) / HISTORIES for column in zip(*judged))
        must_be_late += weight * best_late
        bot_late += weight * ours_late
        bot_prompt += weight * ours_prompt
        bot_requests += weight * ours_requests
        print(f"| {model.key} | {weight:.0%} | {best_late:.2%} | {best_requests:.2f}"
              f" (planned {plan.expected_requests(truth):.2f}) | {best_median:.1f} s | {ours_late:.2%} | {ours_requests:.2f}"
              f" | {ours_median:.1f} s | {ours_prompt:.1%} |")
    for weight, model, _ in models:
        if model.family is Family.KLING:
            print(f"| {model.key} | {weight:.0%} | 0 (reports progress: counted as never late)"
                  f" | {args.kling_requests:g} (counted) | | | | | |")
    polled_share = 1.0 - kling_share
    print(f"\nall jobs noticed late, at best: {must_be_late:.2%} (the p99 can be <= {LATE_SECONDS:.0f} s only"
          f" if this is under 1%); with the bot's plans: {bot_late:.2%}, noticing"
          f" {bot_prompt / polled_share:.1%} of the Veo and Sora jobs within {PROMPT_SECONDS:.0f} s, at"
          f" {bot_requests + kling_share * args.kling_requests:.2f} requests per job over all. Failure rate"
          f" {FAILURE_RATE:.0%}, sigma {args.sigma}, failures '{args.failures}'; the bot learns from {args.history}"
          f" past successes per kind, {'unsmoothed' if args.unsmoothed else 'smoothed'}.")
    if args.frontier:
        _frontier(kinds, budgets, schedule.min_interval, args.notice, args.per_kind)


if __name__ == "__main__":
    main()
