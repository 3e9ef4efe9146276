#!/usr/bin/env python3
"""The side-by-side table of `make bench`: this project's CRM function against the Python peer
(tools/peer/crm_peer.py), measured in the same run, on the seed CRM event.

Inputs (all written by scripts/bench.sh under .local/bench/):
  coldstart-crm-webhook.json, coldstart-peer.json   the cold-start harness, one per function
  calls-crm-webhook.json, calls-peer.json           the local DynamoDB's accounting over that run
  storage-project.json, storage-peer.json          hot key and growth (tools storage-bench, peer)
  peer-pure.json                                    the peer's pure path
  target/criterion                                  this project's pure path (criterion)
"""

import argparse
import glob
import json
import os
import statistics

FUNCTION_CALLS = ("PutItem", "GetItem", "UpdateItem", "TransactWriteItems")


def load(path):
    with open(path) as f:
        return json.load(f)


def median(values):
    return statistics.median(values) if values else float("nan")


def p90(values):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


def invocations(coldstart):
    return len(coldstart["first_invocation_ms"]) + len(coldstart["warm_invocation_ms"])


def per_invocation(calls, coldstart):
    """Calls and units per event of the function's own calls (not the harness' clean-up)."""
    n = invocations(coldstart)
    count = sum(v for k, v in calls["calls"].items() if k in FUNCTION_CALLS)
    writes = sum(v for k, v in calls["write_units"].items() if k in FUNCTION_CALLS)
    reads = sum(v for k, v in calls["read_units"].items() if k in FUNCTION_CALLS)
    per_call = ", ".join(f"{k} {v / n:g}" for k, v in sorted(calls["calls"].items()) if k in FUNCTION_CALLS)
    return count / n, writes / n, reads / n, per_call


def criterion_median_us(root, full_id):
    for path in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        if load(path).get("full_id") == full_id:
            estimates = load(os.path.join(os.path.dirname(path), "estimates.json"))
            return estimates["median"]["point_estimate"] / 1000
    return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".local/bench")
    parser.add_argument("--criterion", default="target/criterion")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    d = lambda name: os.path.join(args.dir, name)  # noqa: E731
    cold = {"project": load(d("coldstart-crm-webhook.json")), "peer": load(d("coldstart-peer.json"))}
    calls = {"project": load(d("calls-crm-webhook.json")), "peer": load(d("calls-peer.json"))}
    storage = {"project": load(d("storage-project.json")), "peer": load(d("storage-peer.json"))}
    pure = {
        "project": criterion_median_us(args.criterion, "ingest/crm/seed_124_object_create"),
        "peer": load(d("peer-pure.json"))["median_us"],
    }
    rows = []

    def row(label, fn):
        rows.append((label, fn("project"), fn("peer")))

    def calls_cell(side):
        count, _, _, detail = per_invocation(calls[side], cold[side])
        return f"{count:.2f} ({detail})"

    row("DynamoDB calls per event (seed event, new lead)", calls_cell)
    row("item size (seed event)", lambda s: f"{calls[s]['last_put_bytes'].get('crm_entities', 0):,} B")
    row("write units per event", lambda s: f"{per_invocation(calls[s], cold[s])[1]:.2f}")
    row("read units per event", lambda s: f"{per_invocation(calls[s], cold[s])[2]:.2f}")
    row("warm invocation, wall: median (p90)",
        lambda s: f"{median(cold[s]['warm_invocation_ms']):.2f} ms ({p90(cold[s]['warm_invocation_ms']):.2f})")
    row("CPU per warm invocation (whole process): median (p90)",
        lambda s: f"{median(cold[s].get('warm_invocation_cpu_ms', [])):.2f} ms "
                  f"({p90(cold[s].get('warm_invocation_cpu_ms', [])):.2f})")
    row("cold start: exec → first /next, median",
        lambda s: f"{median(cold[s]['init_ms']):.1f} ms (CPU {median(cold[s]['init_cpu_ms']):.1f} ms)")
    row("first invocation, median", lambda s: f"{median(cold[s]['first_invocation_ms']):.1f} ms")
    row("peak RSS (VmHWM)", lambda s: f"{(cold[s]['peak_rss_kib'] or 0) / 1024:.1f} MiB")
    row("pure path (verify+parse+normalize+merge+item)", lambda s: f"{pure[s]:.1f} µs")
    for side in ("project",):
        pass
    hot = {s: storage[s]["hot_key"] for s in storage}
    row(f"hot key ({hot['project']['events']} events, one lead, {hot['project']['senders']} senders): "
        "calls / conflicts per event",
        lambda s: f"{hot[s]['calls_per_event']:.2f} / {hot[s]['conflicts_per_event']:.2f}")
    row("hot key: deliveries answered 503",
        lambda s: f"{hot[s]['answered_503']} of {hot[s]['deliveries']} ({hot[s]['share_503']:.1%})")
    row("hot key: write / read units per event",
        lambda s: f"{hot[s]['write_units_per_event']:.2f} / {hot[s]['read_units_per_event']:.2f}")
    row("hot key: fields not holding the newest value (of 40)", lambda s: f"{hot[s]['fields_not_newest']}")
    for i, _ in enumerate(storage["project"]["growth"]):
        events = storage["project"]["growth"][i]["events"]
        row(f"growth: item bytes / write units after {events:,} events",
            lambda s, i=i: f"{storage[s]['growth'][i]['item_bytes']:,.0f} B / "
                           f"{storage[s]['growth'][i]['write_units']:g}")

    lines = [
        "| figure (seed CRM event unless said) | this project | Python peer |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {label} | {a} | {b} |" for label, a, b in rows]
    ratio = pure["peer"] / pure["project"] if pure["project"] else float("nan")
    lines.append("")
    lines.append(f"Pure path: the peer takes {ratio:.1f}× this project's time (target: at least 6×).")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
