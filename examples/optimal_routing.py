"""Optimal routing from a script: AsyncSGD's uniform routing against the optimum of each proxy.

    python examples/optimal_routing.py                          # built-in 5 fast + 5 slow clients
    python examples/optimal_routing.py examples/flat.toml --concurrency-range 1:20
    python examples/optimal_routing.py --objectives wallclock,max-throughput --json routings.json

For each objective (docs/theory.md section 6) the table gives the optimal concurrency, the exact
throughput at the optimum and under uniform routing (updates per time unit), the largest relative
delay E[D_i] (updates), and the objective's value at the optimum and under uniform routing. The
proxies rank routings; they do not predict accuracy (docs/theory.md section 5).
"""

from __future__ import annotations

import argparse
import json

import aflqueue as aq

OBJECTIVES = ("per-update", "wallclock", "time-to-accuracy", "max-throughput")


def main(argv: list[str] | None = None) -> dict[str, aq.OptimizationResult]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", nargs="?", help="system file (default: aflqueue.example_system())")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated objectives")
    ap.add_argument("--concurrency-range", metavar="LO:HI", help="optimise m jointly in LO..HI (default: fixed m)")
    ap.add_argument("--constants", default="Delta=2.3,L=0.5,sigma2=0.11,M2=0.6,G2=0.76",
                    help="proxy constants NAME=VALUE,.. (docs/theory.md section 7 estimates them)")
    ap.add_argument("--json", metavar="PATH", help="also write every result as JSON")
    args = ap.parse_args(argv)

    system = aq.load_system(args.system) if args.system else aq.example_system()
    constants = {k: float(v) for k, v in (item.split("=") for item in args.constants.split(","))}
    concurrency = tuple(int(x) for x in args.concurrency_range.split(":")) if args.concurrency_range else None
    print(system)

    results = {}
    for objective in args.objectives.split(","):
        results[objective] = aq.optimize(
            system, objective, constants=constants, concurrency=concurrency,
            p_min=0.0 if objective == "max-throughput" else 1e-3)  # the proxies need every p_i > 0

    head = f"{'objective':<17} {'m':>3} {'throughput':>10} {'(uniform)':>10} {'max E[D_i]':>10} " \
           f"{'value':>10} {'(uniform)':>10}"
    print(head)
    print("-" * len(head))
    for objective, r in results.items():
        # the optimum analysed exactly, as any routing can be
        exact = aq.analyze(system.with_routing(r.routing).with_concurrency(r.concurrency))
        base = r.baseline
        print(f"{objective:<17} {r.concurrency:>3} {exact.throughput:>10.4g} {base['throughput']:>10.4g} "
              f"{max(exact.relative_delay):>10.4g} {r.objective_value:>10.4g} {base['objective_value']:>10.4g}")
        print(f"{'':<17} routing {[round(float(x), 4) for x in r.routing]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: r.to_dict() for k, r in results.items()}, f, indent=1)
        print(f"results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
