#!/usr/bin/env python3
"""A discrete-event model of the hot-key bench, for choosing the conflict backoff offline.

`storage-bench` takes about a minute a run and its figures move with the machine's load; this
model takes a second and isolates the one thing the backoff changes: how many writes are in
flight on one item. It models:

- one server that answers one call at a time, first come first served, `--service-ms` each
  (the local DynamoDB serialises every call: 7.5 ms each on average in the latest bench);
- `--senders` senders, each delivering its share of `--events` distinct events to one item,
  and resending a delivery answered 503 at once, as storage-bench does;
- a delivery: one read, then conditional writes until one wins (a lost write returns the
  current item, so no second read), a pause from the policy between them, and a 503 after
  `--deadline` seconds or 32 lost races.

It prints, per policy, the share of deliveries answered 503, calls per event and the median and
p99 time to acceptance, over a few seeds. The model left out the clients' CPU, the network and
DynamoDB's own partition limits: use it to rank policies, then measure the chosen one with
`make bench`. Runs with the standard library only.
"""

import argparse
import heapq
import random

MAX_CONFLICT_RETRIES = 32
DEADLINE = 4.0  # seconds: shared/src/dynamo/client.rs


def exponential(lost, last_call, age):
    """A plain exponential backoff, for comparison: from 10 ms, doubling, at most 1 s."""
    return min(0.010 * 2 ** min(lost, 7), 1.0)


def crowd(lost, last_call, age):
    """The backoff used now (shared/src/dynamo/entity.rs, `backoff_window`): exponential for four
    lost races, then scaled by the failed write's time and shrinking with age to nothing at
    2.25 s; a window always ends three writes (at the last one's pace), and at least 1 s, before
    the deadline. The model overstates what the floor costs: here it tips the hot key into
    collapse at 7.5 ms a call and more, while `storage-bench` measured no change
    (docs/performance.md). It also understates make test's convergence suite (its latencies are
    steadier than a loaded machine's): use it to rank, measure to decide."""
    if lost < 5:
        window = 0.010 * 2**lost
    else:
        growth = min(2 ** min(lost + 1, 9), 300)
        youth = 1.0 - min(age / 2.25, 1.0)
        window = min(last_call * growth * youth, 3.0)
    return max(0.0, min(window, DEADLINE - age - max(3 * last_call, 1.0)))


POLICIES = {
    "exponential": exponential,
    "crowd": crowd,
}


def simulate(policy, senders, events, service, deadline, seed, items=1):
    rng = random.Random(seed)
    queue = []  # (time, sequence, callback)
    sequence = 0
    server_free = 0.0
    versions = [0] * items
    pending = list(range(events))
    rng.shuffle(pending)
    counts = {"calls": 0, "refused": 0}
    accepted_after = []

    def at(when, callback):
        nonlocal sequence
        sequence += 1
        heapq.heappush(queue, (when, sequence, callback))

    def call(now, item, write_on, answer):
        """One call: a read (`write_on` None) or a write conditional on version `write_on`."""
        nonlocal server_free
        server_free = max(now, server_free) + service
        counts["calls"] += 1
        won = write_on is not None and write_on == versions[item]
        if won:
            versions[item] += 1
        seen = versions[item]
        at(server_free, lambda when: answer(when, won, seen))

    def next_event(now):
        if pending:
            deliver(now, pending.pop())

    def deliver(started, event):
        state = {"open": True, "lost": 0, "sent": started}

        def refuse(now):
            if state["open"]:
                state["open"] = False
                counts["refused"] += 1
                deliver(now, event)

        item = event % items

        def write(now, base):
            if state["open"]:
                state["sent"] = now
                call(now, item, base, written)

        def written(now, won, seen):
            if not state["open"]:
                return
            if won:
                state["open"] = False
                accepted_after.append(now - started)
                next_event(now)
                return
            state["lost"] += 1
            if state["lost"] > MAX_CONFLICT_RETRIES:
                refuse(now)
                return
            window = policy(state["lost"], now - state["sent"], now - started)
            at(now + rng.random() * window, lambda when: write(when, seen))

        at(started + deadline, refuse)
        call(started, item, None, lambda now, _won, seen: write(now, seen) if state["open"] else None)

    for _ in range(senders):
        at(0.0, next_event)
    while queue:
        when, _, callback = heapq.heappop(queue)
        callback(when)
    accepted_after.sort()
    deliveries = events + counts["refused"]
    return {
        "share_503": counts["refused"] / deliveries,
        "calls_per_event": counts["calls"] / events,
        "p50": accepted_after[len(accepted_after) // 2],
        "p99": accepted_after[int(len(accepted_after) * 0.99)],
    }


def main():
    global DEADLINE  # the policies read it: --deadline moves it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--service-ms", type=float, default=10.0)
    parser.add_argument("--items", type=int, default=1, help="events are spread over this many items")
    parser.add_argument("--deadline", type=float, default=DEADLINE)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    DEADLINE = args.deadline
    for name, policy in POLICIES.items():
        runs = [
            simulate(policy, args.senders, args.events, args.service_ms / 1000, args.deadline, seed, args.items)
            for seed in range(args.seeds)
        ]
        mean = {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}
        # What decides whether a test suite passes: did any delivery of a run answer 503?
        failed_runs = sum(1 for run in runs if run["share_503"] > 0)
        print(
            f"{name:>17}: 503 {mean['share_503']:6.1%} (runs with one: {failed_runs}/{len(runs)})  "
            f"calls/event {mean['calls_per_event']:5.2f}  "
            f"accepted after: median {mean['p50'] * 1000:6.0f} ms, p99 {mean['p99'] * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()
