"""The best any poll schedule can do on the benchmark's workload: close to a lower bound on the late share.

Without progress or a callback, a status request says only "done" or "still running", so every
schedule, however adaptive, is a fixed list of poll times per kind of job (or a random choice
between lists). For each kind this finds the plan pair with the smallest share of jobs handed over
more than LATE_SECONDS after the vendor finished, within the request budget, knowing the workload's
true distribution (a large sample, not the 1,000 past jobs the bot learns from), and prints it with
what the bot's own plans get on the same draws (the mean over HISTORIES plans, each learned from its
own history). The search is the bot's own (price bisection over candidate instants 1 s apart), so
the bound is close, not exact: a finer grid or a third plan could do a little better. Each result
reaches Discord `--notice` seconds after the poll that found it (its round trip).

Kling reports progress, so it is counted as never late (which flatters the bound). If the jobs that
must be late exceed 1% of all jobs, no schedule within the budget gets the p99 to LATE_SECONDS.
`--frontier` sweeps the placement's weights on the true distributions: how many more jobs are late
when a plan buys a shorter median, i.e. whether both targets fit in one plan.

    python benchmarks/bound.py [--budget 10] [--sigma 0.15] [--failures realistic] [--history 1000]
                               [--unsmoothed] [--notice 0.25] [--frontier]
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.catalog import Family, get_model, models_for  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.jobs.placement import (  # noqa: E402
    LAG_WEIGHT, LATE_SECONDS, PROMPT_SECONDS, PROMPT_WEIGHT, Distribution, FinishTimes, PlanMix, optimal_mix,
)
from bot.jobs.schedule import HISTORY_ROWS, PollPlan, PollSchedule, follows_dearer  # noqa: E402
from benchmarks.workload import FAILURE_RATE, REQUEST_MIX, SIGMA, draw_outcome  # noqa: E402

SAMPLE = 20_000
TRIALS = 100_000
HISTORIES = 5
NOTICE = 0.25  # seconds from sending a poll to handing its result over (benchmarks/scenario.py VENDOR_LATENCY)
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


def _frontier(kinds: list[tuple[float, FinishTimes, list[float]]], budget: float, min_gap: float,
              notice: float) -> None:
    """How the tail trades against the median, for plans that know the true distributions: the
    placement's weights swept from "lateness only" to "mostly the median"."""
    print(f"\nthe best plans' trade, by the placement's weights (Veo and Sora kinds; Kling counted never late;"
          f" the bot's: lag {LAG_WEIGHT:g}, slowness {PROMPT_WEIGHT:g})\n")
    print(f"| lag weight | weight of lag > {PROMPT_SECONDS:.0f} s | all jobs late | Veo/Sora jobs noticed within"
          f" {PROMPT_SECONDS:.0f} s | Veo/Sora median lag (mean of the kinds') |")
    print("| --- | --- | --- | --- | --- |")
    total = sum(weight for weight, _, _ in kinds)
    for lag_weight, prompt_weight in FRONTIER_WEIGHTS:
        late = prompt = median = 0.0
        for weight, truth, fresh in kinds:
            polls = optimal_mix(truth, budget, min_gap, lag_weight=lag_weight, prompt_weight=prompt_weight,
                                notice=notice)
            kind_late, _, kind_median, kind_prompt = _judge(polls, fresh, notice)
            late += weight * kind_late
            prompt += weight * kind_prompt / total
            median += weight * kind_median / total
        print(f"| {lag_weight:g} | {prompt_weight:g} | {late:.2%} | {prompt:.1%} | {median:.1f} s |")


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
    parser.add_argument("--frontier", action="store_true",
                        help="also sweep the lag weight of the true-distribution plans: the tail against the median")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    schedule = PollSchedule(None, FakeClock(), explore_share=0,  # type: ignore[arg-type]
                            smooth_history=not args.unsmoothed)
    must_be_late = bot_late = bot_prompt = 0.0
    kinds: list[tuple[float, FinishTimes, list[float]]] = []
    print(f"budget {args.budget} requests/job, late = handed over > {LATE_SECONDS:.0f} s after the vendor finished,"
          f" {args.notice:g} s after the poll that found it was sent\n")
    print("| kind | share of jobs | best possible late share | its requests/job | its median lag"
          f" | bot's plan: late share | bot's requests/job | bot's median lag | bot's within {PROMPT_SECONDS:.0f} s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for weight, fields in REQUEST_MIX:
        if fields["family"] is Family.KLING:
            print(f"| kling-{fields['model']} | {weight:.0%} | 0 (reports progress: counted as never late) | | | | | | |")
            continue
        model = get_model(fields["model"]) if "model" in fields else models_for(fields["family"])[0]
        successes, failed = _draws(rng, model.vendor_model, args.sigma, args.failures, SAMPLE)
        truth = FinishTimes(Distribution.from_samples(successes), Distribution.from_samples(failed),
                            len(failed) / SAMPLE)
        best = optimal_mix(truth, args.budget, schedule.min_interval, lag_weight=1e-6, prompt_weight=0.0,
                           notice=args.notice)
        fresh = [took for took, _ in (draw_outcome(rng, model.vendor_model, args.sigma, args.failures)
                                      for _ in range(TRIALS))]
        best_late, best_requests, best_median, _ = _judge(best, fresh, args.notice)
        kinds.append((weight, truth, fresh))
        # The bot's plans: each from one history (HISTORY_ROWS successes, the vendor's failures among
        # 2,000), averaged over HISTORIES of them, since one sample can be lucky or not.
        judged = []
        for _ in range(HISTORIES):
            history, history_failed = _draws(rng, model.vendor_model, args.sigma, args.failures, 2000)
            while len(history) < args.history:
                history += _draws(rng, model.vendor_model, args.sigma, args.failures, args.history)[0]
            plan = schedule.build_plan(model.key, history[:args.history], history_failed, 2000)
            judged.append(_judge(plan, fresh, args.notice))
        ours_late, ours_requests, ours_median, ours_prompt = (sum(column) / HISTORIES for column in zip(*judged))
        must_be_late += weight * best_late
        bot_late += weight * ours_late
        bot_prompt += weight * ours_prompt
        print(f"| {model.key} | {weight:.0%} | {best_late:.2%} | {best_requests:.2f}"
              f" (planned {best.expected_requests(truth):.2f}) | {best_median:.1f} s | {ours_late:.2%} | {ours_requests:.2f}"
              f" | {ours_median:.1f} s | {ours_prompt:.1%} |")
    print(f"\nall jobs noticed late, at best: {must_be_late:.2%} (the p99 can be <= {LATE_SECONDS:.0f} s only"
          f" if this is under 1%); with the bot's plans: {bot_late:.2%}, noticing"
          f" {bot_prompt / sum(weight for weight, _, _ in kinds):.1%} of the Veo and Sora jobs within"
          f" {PROMPT_SECONDS:.0f} s. Failure rate {FAILURE_RATE:.0%},"
          f" sigma {args.sigma}, failures '{args.failures}'; the bot learns from {args.history} past successes"
          f" per kind, {'unsmoothed' if args.unsmoothed else 'smoothed'}.")
    if args.frontier:
        _frontier(kinds, args.budget, schedule.min_interval, args.notice)


if __name__ == "__main__":
    main()
