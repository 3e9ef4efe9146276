#!/usr/bin/env python3
"""The side-by-side table of `make bench`: this project's CRM function against the Python peer
(tools/peer/crm_peer.py), measured in the same run against the same local DynamoDB, each figure
next to its target.

Inputs (all written by scripts/bench.sh under .local/bench/):
  coldstart-crm-webhook.json, coldstart-peer.json   the cold-start harness: init, warm invocations
  scenarios-crm-webhook.json, scenarios-peer.json   calls and capacity units per kind of event
  storage-project.json, storage-peer.json          hot key and growth (tools storage-bench, peer)
  peer-pure.json                                    the peer's pure path
  target/criterion                                  this project's pure path (criterion)
"""

import argparse
import glob
import json
import os
import statistics

SIDES = ("project", "peer")
INIT_TARGET_MS = 6.0
SEED_ITEM_BYTES = 2082
SEED_WRITE_UNITS = 3
HOT_KEY_503_SHARE = 0.05


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


def criterion_median_us(root, full_id):
    for path in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        if load(path).get("full_id") == full_id:
            estimates = load(os.path.join(os.path.dirname(path), "estimates.json"))
            return estimates["median"]["point_estimate"] / 1000
    return float("nan")


def met(condition):
    return "yes" if condition else "**no**"


def scenario_means(report):
    """Scenario name -> mean calls, read units, write units and the answers' statuses."""
    means = {}
    for scenario in report["scenarios"]:
        rounds = scenario["rounds"]
        mean = {key: statistics.mean(r[key] for r in rounds) for key in ("calls", "read_units", "write_units")}
        mean["status"] = "/".join(sorted({r["status"] for r in rounds}))
        means[scenario["scenario"]] = mean
    return means


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".local/bench")
    parser.add_argument("--criterion", default="target/criterion")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    def inputs(project, peer):
        return {"project": load(os.path.join(args.dir, project)), "peer": load(os.path.join(args.dir, peer))}

    cold = inputs("coldstart-crm-webhook.json", "coldstart-peer.json")
    scenarios = inputs("scenarios-crm-webhook.json", "scenarios-peer.json")
    storage = inputs("storage-project.json", "storage-peer.json")
    means = {side: scenario_means(scenarios[side]) for side in SIDES}
    pure = {
        "project": criterion_median_us(args.criterion, "ingest/crm/seed_124_object_create"),
        "peer": load(os.path.join(args.dir, "peer-pure.json"))["median_us"],
    }
    warm = {s: cold[s]["warm_invocation_ms"] for s in SIDES}
    cpu = {s: cold[s].get("warm_invocation_cpu_ms", []) for s in SIDES}
    init = {s: cold[s]["init_ms"] for s in SIDES}
    hot = {s: storage[s]["hot_key"] for s in SIDES}
    seed = {s: scenarios[s]["seed_item"] for s in SIDES}
    rows = []  # (figure, this project, peer, target, met)

    def row(figure, cell, target="—", verdict="—"):
        rows.append((figure, cell("project"), cell("peer"), target, verdict))

    row("warm invocation, wall: median (p90)",
        lambda s: f"{median(warm[s]):.2f} ms ({p90(warm[s]):.2f})",
        "median ≤ the peer's", met(median(warm["project"]) <= median(warm["peer"])))
    half = median(cpu["peer"]) / 2
    row("CPU per warm invocation, whole process: median (p90)",
        lambda s: f"{median(cpu[s]):.2f} ms ({p90(cpu[s]):.2f})",
        f"≤ half the peer's ({half:.2f} ms)", met(median(cpu["project"]) <= half))
    row(f"init: exec → first /next, Lambda's variables only: median (p90, n = {len(init['project'])})",
        lambda s: f"{median(init[s]):.2f} ms ({p90(init[s]):.2f})",
        f"≤ {INIT_TARGET_MS:g} ms", met(median(init["project"]) <= INIT_TARGET_MS))
    for name in means["project"]:
        one_call = name in ("new entity", "cached update")
        figures = means["project"][name]
        row(f"{name}: calls / read units / write units (answer)",
            lambda s, name=name: "{calls:g} / {read_units:g} / {write_units:g} ({status})".format(**means[s][name]),
            "1 call, 0 read units" if one_call else "—",
            met(figures["calls"] <= 1 and figures["read_units"] == 0) if one_call else "—")
    row("item size / write units, seed event (new entity)",
        lambda s: f"{seed[s]['bytes'] or 0:,.0f} B / {seed[s]['write_units']:g}",
        f"≤ {SEED_ITEM_BYTES:,} B, ≤ {SEED_WRITE_UNITS} units",
        met((seed["project"]["bytes"] or 0) <= SEED_ITEM_BYTES and seed["project"]["write_units"] <= SEED_WRITE_UNITS))
    row(f"hot key ({hot['project']['events']} events, one lead, {hot['project']['senders']} senders): "
        "deliveries answered 503",
        lambda s: f"{hot[s]['answered_503']} of {hot[s]['deliveries']} ({hot[s]['share_503']:.1%})",
        f"≤ {HOT_KEY_503_SHARE:.0%}", met(hot["project"]["share_503"] <= HOT_KEY_503_SHARE))
    row("hot key: event_count of the lead",
        lambda s: f"{hot[s]['event_count']} of {hot[s]['events']}" + (" (exact)" if hot[s]["event_count_exact"] else ""),
        "exact", met(hot["project"]["event_count_exact"]))
    row("hot key: fields not holding the newest value (of 40)",
        lambda s: f"{hot[s]['fields_not_newest']}", "0", met(hot["project"]["fields_not_newest"] == 0))
    row("hot key: calls / conditions failed / read units / write units, per event",
        lambda s: f"{hot[s]['calls_per_event']:.2f} / {hot[s]['conflicts_per_event']:.2f} / "
                  f"{hot[s]['read_units_per_event']:.2f} / {hot[s]['write_units_per_event']:.2f}")
    row("first invocation (cold), wall: median",
        lambda s: f"{median(cold[s]['first_invocation_ms']):.1f} ms")
    row("peak RSS (VmHWM)", lambda s: f"{(cold[s]['peak_rss_kib'] or 0) / 1024:.1f} MiB")
    row("pure path (verify + parse + normalize + merge + item), median", lambda s: f"{pure[s]:.1f} µs")
    for i, step in enumerate(storage["project"]["growth"]):
        row(f"growth: item bytes / write units after {step['events']:,} event{'s' if step['events'] != 1 else ''}",
            lambda s, i=i: f"{storage[s]['growth'][i]['item_bytes']:,.0f} B / {storage[s]['growth'][i]['write_units']:g}")

    header = ("figure (seed CRM event unless said)", "this project", "Python peer", "target", "met?")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
