"""Human-readable tables for the terminal (rich)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .config import load_config
from .protocol import time_budget
from .queueing.analysis import analyze
from .sweep import PROXY_KEYS

if TYPE_CHECKING:  # pragma: no cover
    from .queueing.analysis import Analysis
    from .system import System


#: What the approximation's validation measured (docs/theory.md sections 9.6 to 9.8), printed with
#: its results so that nobody reads its per-client delays as exact.
APPROX_ACCURACY = ("throughput within 3% of simulation at every validated point (cv 0 to 3); per-client "
                   "delays E[D_i] are approximate (every speed type within 3% at only 34% of the points; errors of "
                   "10-40% are common with few clients or cv >= 2): simulate (aflqueue simulate) for delays you "
                   "must rely on")


def fmt(x: float, digits: int = 4) -> str:
    """Compact number: NaN (undefined) as '-', large/small values in scientific notation."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def console():
    from rich.console import Console  # lazy: rich

    c = Console(highlight=False)
    if not c.is_terminal:  # piped output: do not squeeze tables into 80 columns
        c = Console(highlight=False, width=max(c.width, 120))
    return c


def analysis_table(system: "System", res: "Analysis", show_stations: bool = False) -> None:
    """Print the per-client table and the summary of a closed-form analysis, labelled exact only
    when the product form is exact for ``system``."""
    from rich.table import Table  # lazy: rich

    c = console()
    label = "Exact analysis" if system.is_product_form else "Product-form approximation"
    t = Table(title=f"{label} ({res.method}): n = {system.n}, concurrency m = {res.concurrency}")
    for col in ("client", "mu_i", "p_i", "E[X_i]", "util", "resp time", "E[D_i]"):
        t.add_column(col, justify="right" if col != "client" else "left")
    for i, cl in enumerate(system.clients):
        t.add_row(cl.name or str(i), fmt(cl.rate), fmt(res.routing[i]), fmt(res.mean_queue_lengths[i]),
                  fmt(res.utilization[i]), fmt(res.mean_response_times[i]), fmt(res.relative_delay[i]))
    c.print(t)
    if show_stations:
        s = Table(title="Stations")
        for col in ("client", "stage", "discipline", "rate", "visit", "E[X]", "util", "resp time"):
            s.add_column(col, justify="right" if col not in ("stage", "discipline") else "left")
        st = res.stations
        for k in range(st.rate.size):
            s.add_row("CS" if st.client[k] < 0 else str(st.client[k]), st.stage[k], st.discipline[k], fmt(st.rate[k]),
                      fmt(st.visit[k]), fmt(st.mean_queue_length[k]), fmt(st.utilization[k]), fmt(st.mean_response_time[k]))
        c.print(s)
    if not system.is_product_form:
        c.print(f"not exact: {system.describe_product_form()}; `aflqueue simulate` measures this system")
    laws = sorted({cl.compute.law.name + "".join(f" {k}={v:g}" for k, v in cl.compute.law.to_dict().items()
                                                 if k not in ("law", "mean", "samples", "weights", "components"))
                   for cl in system.clients if not cl.compute.law.is_exponential})
    if laws:
        c.print(f"compute service laws: {', '.join(laws)} (the closed forms use their means only)")
    c.print(f"throughput lambda = {fmt(res.throughput, 6)} updates per time unit")
    c.print(f"mean relative delay sum_i p_i E[D_i] = {fmt(res.mean_relative_delay, 6)} (m - 1 = {res.concurrency - 1})")
    c.print(f"log G(m) = {fmt(res.log_normalizing_constant, 8)}")
    if res.server is not None:
        c.print(f"central server: utilisation {fmt(res.server['utilization'])}, "
                f"E[X] {fmt(res.server['mean_queue_length'])}, resp. time {fmt(res.server['mean_response_time'])}")
    g = res.gradients
    if g is not None:
        c.print("d lambda / d p_i = [" + ", ".join(fmt(v) for v in g.d_throughput) + "]")
        c.print("d log G / d p_i = [" + ", ".join(fmt(v) for v in g.d_log_normalizing_constant) + "]")
    if any(res.routing <= 0):
        c.print("clients with p_i = 0 get no tasks; their delay and response time are undefined (-)")


def _pm(e) -> str:
    if e is None or e.mean != e.mean:
        return "-"
    if e.lo != e.lo:
        return fmt(e.mean)
    return f"{fmt(e.mean)} ± {fmt(e.half_width, 2)}"


def simulation_table(system: "System", est, exact: "Analysis", exact_is_exact: bool, engine: str,
                     updates_per_second: float) -> None:
    """Print simulation estimates (mean ± CI half-width) next to the product-form values."""
    from rich.table import Table  # lazy: rich

    c = console()
    pf = "exact" if exact_is_exact else "product form (approx.)"
    t = Table(title=f"Simulation ({engine}, {est.method.replace('_', ' ')}, {int(est.confidence * 100)}% CI) "
                    f"vs {pf}: n = {system.n}, m = {system.concurrency}")
    for col in ("client", "E[X_i] sim", "E[X_i] pf", "util sim", "util pf", "E[D_i] sim", "E[D_i] pf", "D p99"):
        t.add_column(col, justify="left" if col == "client" else "right")
    for i, cl in enumerate(system.clients):
        q = est.delay_quantiles[i]
        t.add_row(cl.name or str(i), _pm(est.mean_queue_lengths[i]), fmt(exact.mean_queue_lengths[i]),
                  _pm(est.utilization[i]), fmt(exact.utilization[i]), _pm(est.relative_delay[i]),
                  fmt(exact.relative_delay[i]), "-" if q is None else fmt(q["p99"]))
    c.print(t)
    c.print(f"throughput: simulated {_pm(est.throughput)}, {pf} {fmt(exact.throughput, 6)} updates per time unit")
    c.print(f"mean relative delay: simulated {_pm(est.mean_relative_delay)} (m - 1 = {system.concurrency - 1})")
    c.print(f"{est.updates_used} updates after a warm-up of {est.warmup_updates}; {updates_per_second:,.0f} updates/s")


def optimization_table(system: "System", res) -> None:
    """Uniform routing (AsyncSGD) vs the optimum: summary and per-client table."""
    from rich.table import Table  # lazy: rich

    c = console()
    b = res.baseline
    t = Table(title=f"Optimal routing for '{res.objective}' vs uniform (AsyncSGD)")
    t.add_column("")
    t.add_column("uniform", justify="right")
    t.add_column("optimum", justify="right")
    t.add_row("concurrency m", str(b["concurrency"]), str(res.concurrency))
    t.add_row(f"objective ({res.objective})", fmt(b["objective_value"], 6), fmt(res.objective_value, 6))
    t.add_row("throughput (updates / time)", fmt(b["throughput"], 5), fmt(res.throughput, 5))
    t.add_row("mean relative delay", fmt(b["mean_relative_delay"], 5),
              fmt(float((res.routing * res.relative_delay).sum()), 5))
    t.add_row("step size eta", fmt(b["eta"]), fmt(res.eta))
    for k in res.proxies:
        if k in b["proxies"] and k != "throughput":
            t.add_row(k.replace("_", " "), fmt(b["proxies"][k], 6), fmt(res.proxies[k], 6))
    c.print(t)
    pc = Table(title="Per client")
    for col in ("client", "mu_i", "p_i uniform", "p_i optimum", "E[D_i] uniform", "E[D_i] optimum"):
        pc.add_column(col, justify="left" if col == "client" else "right")
    for i, cl in enumerate(system.clients):
        pc.add_row(cl.name or str(i), fmt(cl.rate), fmt(b["routing"][i]), fmt(res.routing[i]),
                   fmt(b["relative_delay"][i]), fmt(res.relative_delay[i]))
    c.print(pc)
    gain = (b["objective_value"] - res.objective_value) / b["objective_value"] if b["objective_value"] else float("nan")
    if res.objective == "max-throughput":
        gain = -gain
    c.print(f"improvement over uniform: {100 * gain:.1f}%  ({res.message}; {res.iterations} iterations, "
            f"{res.evaluations} evaluations, {res.wall_time:.2f} s, KKT residual {res.kkt_residual:.1e}, method {res.method})")


def training_summary(cfg, res) -> None:
    """A few lines after ``aflqueue train``."""
    c = console()
    acc = res.curves["test_accuracy"]
    c.print(f"{res.algorithm} on {cfg.data.dataset}: final test accuracy {100 * res.final_accuracy:.2f}% "
            f"(loss {fmt(res.final_loss)}) after {res.arrivals} arrivals, simulated time {fmt(res.simulated_time)}; "
            f"best {100 * max(acc):.2f}%")
    c.print(f"routing {[round(float(x), 4) for x in res.routing]}, concurrency {res.concurrency}; "
            f"wall time {res.wall_time:.1f} s ({res.arrivals / max(res.wall_time, 1e-9):.0f} arrivals/s)")
    step = res.meta.get("step_size") or {}
    if step.get("rule") == "optimal":
        c.print(f"learning rate {fmt(step['lr'])} = local.lr {fmt(step['base_lr'])} x {fmt(step['ratio'])} "
                "(the optimiser's step size over its step size for uniform routing)")
    ended = {"updates": "the update budget (run.updates)", "time_budget": "the time budget (run.time_budget)",
             "trace": "the end of the schedule", "diverged": f"divergence at arrival {res.diverged_at}"}
    c.print(f"stopped by {ended.get(res.stopped_by, res.stopped_by)}")
    c.print(f"outputs in {cfg.output}/ (results.json, updates.csv, checkpoint.pt, trace.npz, config.json)")


def _interval(e, scale: float = 1.0, form: str = "{:.3f}", sign: bool = False, suffix: str = "") -> str:
    """``mean [lo, hi]`` of an estimate dict (``{"mean", "ci", "n"}``), the interval left out when
    it is not stated."""
    if not e:
        return "-"

    def f(x):
        return (f"{scale * x:+.2f}" if sign else form.format(scale * x)) + suffix

    ci = e.get("ci")
    return f(e["mean"]) + ("" if ci is None else f" [{f(ci[0])}, {f(ci[1])}]")


def validation_report(v, *, what: str = "the wall-clock operating point") -> None:
    """The comparison of :func:`aflqueue.comparison.validate`: one row per arm, then the paired gains
    with their intervals (or, below 3 seeds, the per-seed values)."""
    from rich.table import Table  # lazy: rich

    c = console()
    n = len(v.seeds)
    note = f"{n} seeds, 95% intervals" if v.intervals else f"{n} seed(s): per-seed values, no interval below 3 seeds"
    t = Table(title=f"AsyncSGD vs {what} at equal simulated time {fmt(v.time_budget)} ({note})")
    pct = f"reached {100 * v.target_accuracy:g}%"
    for col in ("routing", "learning rate", "throughput pred.", "throughput sim.", "arrivals", "test accuracy", pct,
                "diverged"):
        t.add_column(col, justify="left" if col == "routing" else "right")
    from .comparison import ARMS  # lazy: numba

    for k, label in ARMS.items():
        r = v.per_arm.get(k)
        if r:
            t.add_row(label, fmt(r["lr"]), fmt(r["throughput_predicted"]), fmt(r["throughput_simulated"]),
                      f"{r['arrivals']:.0f}", _interval(r["accuracy"], 100, "{:.2f}", suffix="%"),
                      f"{r['reached_target']}/{n}", str(r["diverged"]))
    c.print(t)
    d = v.to_dict()
    c.print(f"predicted: wall-clock proxy ratio x{_interval(d['predicted_wallclock_ratio'])} "
            "(operating point / AsyncSGD; < 1 is better)")
    c.print(f"measured: accuracy difference {_interval(d['accuracy_difference'], 100, sign=True)} points (paired by "
            f"seed, bootstrap); time to {100 * v.target_accuracy:g}% ratio x{_interval(d['time_to_target_ratio'])} "
            f"over the {v.time_to_target_pairs} seed(s) where both reached it (log scale)")
    if not v.intervals:
        for r in v.per_seed:
            ratio = r["time_to_target_ratio"]
            c.print(f"  seed {r['seed']}: accuracy difference {100 * r['accuracy_difference']:+.2f} points, time ratio "
                    f"{'-' if ratio is None else f'x{ratio:.3f}'}")


def budget_report(cfg, updates: int | None) -> None:
    """Step 1 of a comparison: AsyncSGD's network analysed exactly, and the time budget it fixes."""
    from .pipeline import build_system  # lazy: numba

    cfg = cfg if cfg is not None else load_config(None)
    U0 = updates if updates is not None else cfg.run.updates
    system = build_system(cfg, cfg.data.clients)
    a = analyze(system)
    c = console()
    c.rule("1. exact analysis of AsyncSGD (uniform routing)" if system.is_product_form else
           "1. analysis of AsyncSGD (uniform routing; product form, not exact for these service laws)")
    c.print(f"{system.n} clients (rates {fmt(min(system.rates))} to {fmt(max(system.rates))}), m = {system.concurrency}: "
            f"throughput {fmt(a.throughput)} updates/time; E[D] from {fmt(min(a.relative_delay))} to "
            f"{fmt(max(a.relative_delay))} updates (mean {fmt(a.mean_relative_delay)} = m - 1); time budget "
            f"{fmt(time_budget(system, U0))} = {U0} AsyncSGD updates")
    c.rule("2-3. operating point, simulation and training")


def recommendation_report(rec) -> None:
    """What :func:`aflqueue.recommendation.recommend` found: the verdict, the operating point, the
    finalists' pilot ratios, the pilot cost and any rate left at an edge."""
    c = console()
    c.print(f"[bold]{rec.verdict()}[/bold]")
    cap = "no cap" if rec.weight_cap is None else f"weights clipped at {rec.weight_cap:g}"
    if rec.keep_asyncsgd:
        c.print(f"AsyncSGD's pilot rate {fmt(rec.asyncsgd_lr)} was chosen on short runs: not a tuned rate")
    else:
        c.print(f"operating point: {rec.candidate}, m = {rec.concurrency}, {cap}, learning rate {fmt(rec.lr)} "
                f"(AsyncSGD's pilot rate {fmt(rec.asyncsgd_lr)}); routing {[round(float(x), 4) for x in rec.routing]}")
    for name, f in sorted(rec.finalists.items(), key=lambda kv: kv[1]["ratio"]):
        seeds = ", ".join("never" if r is None or r == float("inf") else f"x{r:.3f}" for r in f["ratios"])
        c.print(f"  finalist {name}: pilot time ratios {seeds} (geometric mean x{f['ratio']:.3f}) at rate {fmt(f['lr'])}")
    cal = rec.calibration
    c.print(f"target {rec.target:.2f} validation accuracy; sigma {fmt(rec.sigma)}; interval: "
            + (f"{cal['confidence']:.0%}, q = {cal['quantile']:.3g} from {cal['regimes']} held-in regimes ({cal['source']})"
               if cal.get("quantile") is not None else "none (no calibration given)"))
    c.print(f"pilots: {len(rec.arms)} runs, {rec.pilot_updates:,} updates = "
            f"{rec.pilot_updates / rec.comparison_updates:.1%} of the {rec.comparison_updates:,} of the comparison "
            f"they replace; {rec.wall_time:.0f} s")
    if rec.at_edge:
        c.print(f"[yellow]rates still at an edge of those tried (pilot budget spent): {', '.join(rec.at_edge)}[/yellow]")


def tuning_report(res, out) -> None:
    """``aflqueue tune``: the score of every rate tried (its seeds, divergences), the best rate, and
    whether it was extended out of an edge or is still at one (flagged)."""
    for row in res.table:
        mark = " <- best" if row["lr"] == res.best_lr else ""
        div = f"; {row['diverged']} diverged" if row["diverged"] else ""
        seeds_txt = ", ".join(f"{x:.4f}" for x in row["scores"])
        print(f"lr {row['lr']:<8g} score {row['score']:.4f} (seeds: {seeds_txt}{div}){mark}")
    ext = f" after {res.extensions} rate(s) added out of an edge" if res.extensions else ""
    edge = " -- still at the edge of the rates tried: flagged" if res.at_edge else ""
    print(f"best learning rate {res.best_lr:g}{ext}{edge}; results in {out}/tune.json")


def approx_table(system: "System", res, grad=None) -> None:
    """``analyze --analysis approx``: per-client metrics of the approximation for general service
    laws (docs/theory.md section 9), which stations it approximates, and its validated accuracy."""
    what = (f"approximation for general service at {len(res.approximated)} FIFO station(s): "
            + ", ".join(res.approximated[:6]) + (" ..." if len(res.approximated) > 6 else "")
            if res.approximated else "exact: every FIFO station is exponential (product form)")
    print(f"Approximate analysis (docs/theory.md section 9), n = {system.n}, concurrency m = {res.concurrency}; {what}")
    print("client  mu_i  p_i  E[X_i]  util  resp_time  E[D_i]")
    for i, cl in enumerate(system.clients):
        print("  ".join([cl.name or str(i), fmt(cl.rate), fmt(res.routing[i]), fmt(res.mean_queue_lengths[i]),
                         fmt(res.utilization[i]), fmt(res.mean_response_times[i]), fmt(res.relative_delay[i])]))
    print(f"throughput lambda = {fmt(res.throughput, 6)} updates per time unit")
    print(f"mean relative delay sum_i p_i E[D_i] = {fmt(res.mean_relative_delay, 6)} (m - 1 = {res.concurrency - 1})")
    if res.server is not None:
        print(f"central server: utilisation {fmt(res.server['utilization'])}, "
              f"E[X] {fmt(res.server['mean_queue_length'])}, resp. time {fmt(res.server['mean_response_time'])}")
    if grad is not None:
        print("d lambda / d p_i = [" + ", ".join(fmt(v) for v in grad) + "]")
    if res.approximated:
        print(f"accuracy: {APPROX_ACCURACY}")


def sweep_table(res, system: "System", concurrency: tuple[int, int], paths, output) -> None:
    """``aflqueue sweep``: each objective's optimal concurrency and value beside uniform routing
    (AsyncSGD at the system's concurrency, clipped to the range), and the files written."""
    lo, hi = concurrency
    print(f"{'objective':<18} {'m*':>6} {'optimum':>12} {'uniform':>12}  (uniform: AsyncSGD at m = "
          f"{min(max(system.concurrency, lo), hi)})")
    for o, r in res.optima.items():
        base = r["baseline"]
        print(f"{o:<18} {r['concurrency']:>6} {r['objective_value']:>12.5g} "
              f"{(f'{base:.5g}' if base is not None else '-'):>12}")
    print(f"{len(paths)} files written to {output}/ (sweep.csv: one row per m; columns "
          f"{', '.join(PROXY_KEYS[o] + '_optimal' for o in res.optima)} hold the best value at each m)")
