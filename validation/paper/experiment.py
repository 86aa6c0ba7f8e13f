"""Paper-scale validation: the optimiser's operating point against tuned baselines.

The question: on n = 100 clients of five device types, does the
routing, concurrency and step size the toolkit recommends reach a target accuracy sooner than
AsyncSGD, when every treatment gets its own tuned learning rate? The protocol below is fixed in
code and in ``validation/paper/PROTOCOL.md`` before any evaluation run.

*Scenarios*: data set x partition (IID, Dirichlet 0.2, 3 classes per client) on ``clients``
clients with the five device types (rates 3, 1.5, 0.6, 0.25, 0.1: 30x apart), ``m = n`` for
AsyncSGD. *Budget*: ``tau`` = AsyncSGD's expected time for ``updates`` updates (exact
throughput, :func:`aflqueue.protocol.time_budget`), the same for every treatment.

*Treatments* (:data:`TREATMENTS`):

* ``asyncsgd`` -- uniform routing, ``m = n`` (AsyncSGD), learning rate tuned;
* ``p2`` -- the wall-clock-optimal routing at ``m = n``, learning rate tuned;
* ``p3`` -- the time-to-accuracy-optimal routing and concurrency (``m`` in ``1..2n``), tuned;
* ``op`` -- the toolkit's whole answer, untuned: P3's routing and concurrency with the step-size
  rule ``lr = lr_asyncsgd x eta*(p*, m*) / eta*(uniform, n)`` from the tuned AsyncSGD rate.

Optional safeguards against large importance weights ``1/(n p_i)`` (:data:`SAFEGUARDS`) are
extra treatments at P2's tuned rate on one scenario.

*Stages*: (1) tuning -- each tuned treatment at every rate of ``lr_grid`` on ``pilot_seeds``,
scored on a validation split (:mod:`aflqueue.tuning`); (2) selection -- the best
rate per scenario and treatment, and the target accuracy per data set, both from the pilot runs
only; (3) evaluation -- every treatment at its rate on ``eval_seeds`` (never used in tuning),
evaluated on the test set at ``eval_times`` equally spaced times.

Every run is a job of :func:`aflqueue.jobs.run_jobs`: saved as it finishes, resumable across
sessions, identical on every backend, stamped with the code version (the package's and, from
this study's move out of the package on, this study's own code: :data:`CODE`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aflqueue.config import OFFLINE_DATASET_NAMES
from aflqueue.errors import require
from aflqueue.io import read_json
from aflqueue.jobs import JobStore, run_staged
from aflqueue.outcomes import group_by_seed, paired_arms, run_times, with_baseline
from aflqueue.stats import bootstrap_interval, familywise_confidence, log_ratio_interval
from aflqueue.tuning import best_learning_rate, log_grid, score_curves
from validation import code

__all__ = ["Scenario", "Treatment", "PaperDataset", "PaperPreset", "PAPER_PRESETS", "TREATMENTS", "SAFEGUARDS",
           "TORCHVISION_DATASETS", "with_torchvision", "run_paper", "select", "paper_run", "load_paper", "summarize_paper",
           "run_times", "config_of", "CODE", "DATASETS"]

#: The code outside the package that computes this study's records (stamped into them).
CODE = code("paper")

PARTITIONS = {"iid": {"partition": "iid"}, "dir0.2": {"partition": "dirichlet", "alpha": 0.2},
              "k3": {"partition": "k_classes", "classes_per_client": 3}}


@dataclass(frozen=True)
class Treatment:
    """A routing (and step-size) policy.

    Attributes:
        name, label: id and display name.
        routing: the ``routing`` section of the run configuration (constants and the P3 target
            are filled in per run).
        tuned: True if its learning rate is tuned; False for the untuned operating point, whose
            rate follows the step-size rule from the tuned AsyncSGD rate.
        weight_cap: for safeguards, the largest importance weight allowed (None: no cap).
        cap_by: ``"p_min"`` (the optimiser keeps ``p_i >= 1/(n cap)``: unbiased) or ``"clip"``
            (the server clips ``1/(n p_i)`` at the cap: biased toward often-routed clients).
    """

    name: str
    label: str
    routing: dict[str, Any]
    tuned: bool = True
    weight_cap: float | None = None
    cap_by: str | None = None


def _optimal(objective: str, joint_m: bool, step: str = "fixed", p_min: float = 1e-3) -> dict[str, Any]:
    return {"kind": "optimal", "objective": objective, "p_min": p_min, "step_size": step,
            "concurrency_range": "1:2n" if joint_m else []}


TREATMENTS: dict[str, Treatment] = {
    "asyncsgd": Treatment("asyncsgd", "AsyncSGD (uniform, m = n), tuned", {"kind": "uniform"}),
    "p2": Treatment("p2", "P2 wall-clock routing, tuned", _optimal("wall-clock", False)),
    "p3": Treatment("p3", "P3 time-to-accuracy routing + m, tuned", _optimal("time-to-accuracy", True)),
    "op": Treatment("op", "operating point (P3 + its step size), untuned",
                    _optimal("time-to-accuracy", True, step="optimal"), tuned=False),
}
SAFEGUARDS: dict[str, Treatment] = {
    "p2-pmin4": Treatment("p2-pmin4", "P2 with p_i >= 1/(4n) (weights <= 4)", _optimal("wall-clock", False),
                          weight_cap=4.0, cap_by="p_min"),
    "p2-clip4": Treatment("p2-clip4", "P2 with weights clipped at 4 (biased)", _optimal("wall-clock", False),
                          weight_cap=4.0, cap_by="clip"),
}


@dataclass(frozen=True)
class PaperDataset:
    """Per data set settings, fixed from AsyncSGD-only pilots before any comparison.

    Attributes:
        name: data set; model: model name; options: loader options.
        updates: ``U0``: the budget is AsyncSGD's expected time for ``U0`` updates.
        lr_grid: learning rates tried in tuning (log grid).
    """

    name: str
    model: str
    updates: int
    lr_grid: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)


LR_GRID = tuple(log_grid(0.01, 0.3, 5))  # 30x span
DATASETS = {
    "digits": PaperDataset("digits", "mlp", 2000, LR_GRID),
    "mnist1d": PaperDataset("mnist1d", "mlp", 4000, LR_GRID, {"num_samples": 8000}),
    "synthetic": PaperDataset("synthetic", "mlp", 150, (0.05, 0.2),
                              {"num_samples": 600, "num_features": 8, "num_classes": 3}),
    # torchvision sets read from --data-root (never downloaded): the 28x28 CNN, as in the papers
    "mnist": PaperDataset("mnist", "cnn28", 3000, LR_GRID),
    "fashionmnist": PaperDataset("fashionmnist", "cnn28", 3000, LR_GRID),
    "kmnist": PaperDataset("kmnist", "cnn28", 3000, LR_GRID),
    "emnist": PaperDataset("emnist", "cnn28", 4000, LR_GRID),
}
#: The data sets a ``--data-root`` can add to a paper preset.
TORCHVISION_DATASETS = ("mnist", "fashionmnist", "kmnist", "emnist")


def with_torchvision(preset: "PaperPreset", found: Sequence[str]) -> "PaperPreset":
    """``preset`` on the torchvision data sets in ``found`` (those of :data:`TORCHVISION_DATASETS`)
    instead of its offline ones, named ``<preset>-<sets>``; the safeguards, defined on an
    offline scenario, are left out. Seeds, grids, criterion and partitions are unchanged."""
    sets = tuple(d for d in TORCHVISION_DATASETS if d in found)
    require(bool(sets), "data-root", f"holds none of {', '.join(TORCHVISION_DATASETS)} (found {', '.join(found)})")
    return replace(preset, name=f"{preset.name}-{'-'.join(sets)}", datasets=sets, safeguards=(),
                   safeguard_scenario=None)


@dataclass(frozen=True)
class Scenario:
    """One cell of the experiment's data x split x system grid (the treatments vary inside it)."""

    #: Data set name (:data:`DATASETS`).
    dataset: str
    #: ``iid``, ``dir<alpha>`` or ``k<classes per client>``.
    partition: str
    #: Number of clients n (five device types, n/5 of each).
    clients: int
    #: Fastest / slowest compute rate of the five device types.
    spread: float = 30.0

    @property
    def id(self) -> str:
        return f"{self.dataset}__n{self.clients}__{self.partition}"


@dataclass(frozen=True)
class PaperPreset:
    """Which runs the experiment contains (module docstring)."""

    name: str
    datasets: tuple[str, ...]
    partitions: tuple[str, ...] = ("iid", "dir0.2", "k3")
    clients: int = 100
    treatments: tuple[str, ...] = ("asyncsgd", "p2", "p3", "op")
    safeguards: tuple[str, ...] = ()
    safeguard_scenario: str | None = None
    pilot_seeds: tuple[int, ...] = (1000, 1001)
    eval_seeds: tuple[int, ...] = tuple(range(10))
    eval_times: int = 50
    validation_fraction: float = 0.1
    target_fraction: float = 0.9
    criterion_ratio: float = 0.71

    def scenarios(self) -> list[Scenario]:
        return [Scenario(d, p, self.clients) for d in self.datasets for p in self.partitions]


PAPER_PRESETS = {
    # the headline: n = 100, five device types, both offline data sets
    "paper": PaperPreset("paper", ("digits", "mnist1d"), safeguards=("p2-pmin4", "p2-clip4"),
                         safeguard_scenario="mnist1d__n100__dir0.2"),
    # second tier: n = 20
    "paper-n20": PaperPreset("paper-n20", ("digits", "mnist1d"), partitions=("iid", "dir0.2"), clients=20),
    # seconds: the machinery end to end (tests)
    "paper-tiny": PaperPreset("paper-tiny", ("synthetic",), partitions=("iid",), clients=6, pilot_seeds=(1000,),
                              eval_seeds=(0, 1), eval_times=10, safeguards=("p2-pmin4",),
                              safeguard_scenario="synthetic__n6__iid"),
}


# --------------------------------------------------------------------------- one run
def config_of(scenario: Scenario, spec: PaperDataset, preset: PaperPreset, seed: int, device: str = "cpu",
              data_root: str | None = None) -> dict[str, Any]:
    """The run configuration (a :class:`~aflqueue.config.TrainConfig` mapping) of a scenario and seed
    before its treatment: routing, rate, algorithm and budget are set by :func:`paper_run`."""
    part = dict(PARTITIONS[scenario.partition])
    data = {"dataset": scenario.dataset, "clients": scenario.clients, "partition": part.pop("partition"), **part,
            "validation_fraction": preset.validation_fraction, "options": dict(spec.options)}
    if data_root and scenario.dataset not in OFFLINE_DATASET_NAMES:  # the offline sets refuse a data root
        data["data_root"] = data_root
    return {"output": "unused", "seed": int(seed), "device": device, "data": data,
            "model": {"name": spec.model},
            "system": {"profile": "five-types", "spread": scenario.spread},
            "local": {"steps": 1, "lr": 0.05, "batch_size": 32},
            "run": {"time_budget": 1.0, "eval_every": 0, "eval_times": preset.eval_times, "checkpoint_every": 0}}


def paper_run(args: tuple) -> dict[str, Any]:
    """One training run of the experiment (a job of :func:`run_jobs`).

    ``args = (scenario, treatment, dataset spec, preset, seed, lr, stage, device, data_root)``
    with dataclasses as dicts; ``lr`` is the rate to train with, or for the untuned operating
    point the tuned AsyncSGD rate its rule starts from; ``stage`` is ``"tune"`` (evaluate on the
    validation split) or ``"eval"`` (on the test set)."""
    import tempfile

    import torch

    from aflqueue.calibration import calibrate
    from aflqueue.config import TrainConfig, with_updates
    from aflqueue.optimization import OptimizationProblem, assess
    from aflqueue.pipeline import build_data_and_model, build_system, prepare, train
    from aflqueue.protocol import largest_importance_weight, target_epsilon, time_budget

    sc_d, tr_d, spec_d, preset_d, seed, lr, stage, device, data_root = args
    scenario, treatment = Scenario(**sc_d), Treatment(**tr_d)
    spec = PaperDataset(**{**spec_d, "lr_grid": tuple(spec_d["lr_grid"])})
    preset = PaperPreset(**{k: tuple(v) if isinstance(v, list) else v for k, v in preset_d.items()})
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        raw = config_of(scenario, spec, preset, seed, device, data_root)
        cfg = TrainConfig.from_dict(raw)
        data, model = build_data_and_model(cfg)
        # the constants at the seed's initial model: the same for every treatment of a seed
        cal = calibrate(model, data.clients, seed=int(seed), num_batches=4, num_directions=4)
        constants = cal.constants
        system = build_system(cfg, cfg.data.clients)
        n = system.n
        tau = time_budget(system, spec.updates)
        # P3's target: the proxy value AsyncSGD reaches after U0 updates
        eps = target_epsilon(system, constants, spec.updates)
        routing = dict(treatment.routing)
        if routing["kind"] == "optimal":
            if routing.get("concurrency_range") == "1:2n":
                routing["concurrency_range"] = [1, 2 * n]
            routing.update(constants=constants.to_dict(), epsilon=eps)
            if treatment.cap_by == "p_min":
                routing["p_min"] = 1.0 / (n * treatment.weight_cap)
        params = {"weight_cap": treatment.weight_cap} if treatment.cap_by == "clip" else {}
        cfg = with_updates(cfg, output=tmp, routing=routing, local={"lr": float(lr)},
                           algorithm={"name": "generalized-asyncsgd", "params": params},
                           run={"time_budget": tau, "updates": None,
                                "evaluate_on": "validation" if stage == "tune" else "test"})
        pr = prepare(cfg, data, model)
        res = train(cfg, prepared=pr)
        problem = OptimizationProblem(pr.system, "wall-clock", constants=constants, time_budget=tau, epsilon=eps,
                                      updates=float(spec.updates), p_min=0.0)
        pred = assess(problem, pr.system.routing, pr.system.concurrency)
        if pr.step_size.get("rule") == "optimal":  # the proxies at the step size actually used
            pred["eta_trained"] = pr.step_size["eta"]
    p = np.asarray(pr.system.routing)
    return {
        "scenario": asdict(scenario), "treatment": treatment.name, "stage": stage, "seed": int(seed),
        "lr_base": float(lr), "lr": pr.lr, "step_size": pr.step_size, "time_budget": tau, "epsilon": eps,
        "routing": p.tolist(), "concurrency": int(pr.system.concurrency),
        "max_importance_weight": largest_importance_weight(p),
        "constants": constants.to_dict(), "predicted": {k: v for k, v in pred.items() if k != "routing"},
        "measured": {"final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "arrivals": res.arrivals,
                     "diverged": res.diverged, "diverged_at": res.diverged_at, "stopped_by": res.stopped_by,
                     "curves": res.curves,
                     "diverged_at_time": (float(res.log["time"][-1]) if res.diverged else None),
                     "tuning_score": score_curves(res.curves, tau) if stage == "tune" else None},
        "timing": {"wall_time": time.perf_counter() - t0},
    }


# --------------------------------------------------------------------------- stages
def _args(scenario: Scenario, treatment: Treatment, preset: PaperPreset, seed: int, lr: float, stage: str,
          device: str, data_root: str | None) -> tuple:
    spec = DATASETS[scenario.dataset]
    return (asdict(scenario), asdict(treatment), asdict(spec), asdict(preset), int(seed), float(lr), stage, device,
            data_root)


def _tuned(preset: PaperPreset) -> list[Treatment]:
    return [TREATMENTS[t] for t in preset.treatments if TREATMENTS[t].tuned]


def tuning_jobs(preset: PaperPreset, device: str = "cpu", data_root: str | None = None) -> list[tuple[str, Any]]:
    jobs = []
    for sc in preset.scenarios():
        for tr in _tuned(preset):
            for lr in DATASETS[sc.dataset].lr_grid:
                for s in preset.pilot_seeds:
                    jobs.append((f"{sc.id}__{tr.name}__lr{lr:g}__s{s}",
                                 _args(sc, tr, preset, s, lr, "tune", device, data_root)))
    return jobs


def select(preset: PaperPreset, tuning: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stage 2: the tuned rate per scenario and treatment, and the target per data set, from the
    pilot runs only (the pre-registered rules of the module docstring)."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in tuning:
        sc = Scenario(**r["scenario"])
        by.setdefault((sc.id, r["treatment"]), []).append(
            {"lr": r["lr_base"], "seed": r["seed"], "score": r["measured"]["tuning_score"],
             "diverged": r["measured"]["diverged"], "final_accuracy": r["measured"]["final_accuracy"]})
    lrs: dict[str, dict[str, Any]] = {}
    targets: dict[str, float] = {}
    for sc in preset.scenarios():
        lrs[sc.id] = {}
        for tr in _tuned(preset):
            recs = by.get((sc.id, tr.name), [])
            require(len(recs) == len(DATASETS[sc.dataset].lr_grid) * len(preset.pilot_seeds), "tuning",
                    f"{sc.id} / {tr.name}: {len(recs)} tuning runs finished; run the tuning stage to the end")
            res = best_learning_rate(recs)
            lrs[sc.id][tr.name] = res.to_dict()
        best = lrs[sc.id]["asyncsgd"]["best_lr"]
        pilot = [r["final_accuracy"] for r in by[(sc.id, "asyncsgd")] if r["lr"] == best]
        level = float(np.mean(pilot))
        # one target per data set: reachable by tuned AsyncSGD in every scenario of that data set
        targets[sc.dataset] = min(targets.get(sc.dataset, 1.0), math.floor(100 * preset.target_fraction * level) / 100)
    return {"preset": preset.name, "learning_rates": lrs, "targets": targets,
            "rule": f"best mean validation score over {len(preset.pilot_seeds)} pilot seed(s); target = "
                    f"{preset.target_fraction} x the tuned AsyncSGD pilots' final validation accuracy, the lowest "
                    "over the data set's scenarios, rounded down to 0.01"}


def evaluation_jobs(preset: PaperPreset, selection: dict[str, Any], device: str = "cpu",
                    data_root: str | None = None) -> list[tuple[str, Any]]:
    jobs = []
    for sc in preset.scenarios():
        chosen = selection["learning_rates"][sc.id]
        names = list(preset.treatments)
        if preset.safeguard_scenario == sc.id:
            names += list(preset.safeguards)
        for name in names:
            tr = TREATMENTS.get(name) or SAFEGUARDS[name]
            # the untuned operating point starts its rule from the tuned AsyncSGD rate;
            # safeguards run at P2's tuned rate
            source = name if tr.tuned and name in chosen else ("p2" if name in SAFEGUARDS else "asyncsgd")
            lr = chosen[source]["best_lr"]
            for s in preset.eval_seeds:
                jobs.append((f"{sc.id}__{name}__s{s}", _args(sc, tr, preset, s, lr, "eval", device, data_root)))
    return jobs


def run_paper(preset: PaperPreset, output: str | Path, *, stage: str = "all", device: str = "cpu",
              data_root: str | None = None, backend: str = "serial", workers: int | None = None,
              address: str | None = None, progress: Callable[[str], None] | None = print,
              limit: int | None = None) -> dict[str, Any]:
    """Run the missing runs of ``stage`` (``tune``, ``eval`` or ``all``) and return
    ``{"tuning": records, "selection": ..., "evaluation": records}`` (what exists so far).

    The selection is computed once all tuning runs exist and written to ``selection.json``
    before any evaluation run starts; later calls read it back, so the rates and the targets
    cannot move once evaluation has begun (:func:`aflqueue.jobs.run_staged`)."""
    return run_staged(output, tuning_jobs(preset, device, data_root), paper_run, lambda recs: select(preset, recs),
                      lambda sel: evaluation_jobs(preset, sel, device, data_root), stage=stage,
                      describe_tuning=lambda r: f"score {r['measured']['tuning_score']:.4f}",
                      describe_evaluation=lambda r: f"accuracy {r['measured']['final_accuracy']:.4f}",
                      backend=backend, workers=workers, address=address, progress=progress, limit=limit,
                      code=CODE)


def load_paper(output: str | Path) -> dict[str, Any]:
    """The saved runs and selection of an experiment folder (no computation)."""
    out = Path(output)
    sel = out / "selection.json"
    return {"tuning": JobStore(out / "tuning").load(), "selection": read_json(sel) if sel.is_file() else None,
            "evaluation": JobStore(out / "cells").load()}


# --------------------------------------------------------------------------- statistics
# The pre-registered criterion (``validation/paper/PROTOCOL.md``): per scenario and treatment, the
# geometric mean over evaluation seeds of the paired time ratio ``t_treatment / t_asyncsgd`` to
# reach the data set's target accuracy, with a 95% t-interval on the log scale; the criterion is
# met when the whole interval lies below ``criterion_ratio`` (0.71: at least 29% less time) and no
# treatment run failed to reach the target. Times are interpolated between evaluations. A run that
# does not reach the target within the budget (a diverged run never does) enters the ratio with
# the budget ``tau`` as its time: for the treatment that is the most favourable value it could
# have, so the criterion then also requires that no treatment run is censored; for AsyncSGD it
# is unfavourable to the treatment, hence conservative. Secondary: the paired difference of test
# accuracy at the end of the budget (equal time), with a bootstrap interval (accuracies live in
# [0, 1]). Every number says how many seeds it rests on.


def summarize_paper(preset: PaperPreset, selection: dict[str, Any], records: Sequence[dict[str, Any]],
                    confidence: float = 0.95) -> dict[str, Any]:
    """Per scenario and treatment: reached counts, paired time ratios and accuracy differences
    against tuned AsyncSGD with their intervals, divergences, predicted ratios (module docstring)."""
    by = group_by_seed(records, scenario=lambda r: Scenario(**r["scenario"]).id, arm=lambda r: r["treatment"])
    n_tests = sum(len([t for t in by[sc.id] if t != "asyncsgd"]) for sc in preset.scenarios() if sc.id in by)
    out = []
    for sc, runs, base in with_baseline(preset.scenarios(), by, "asyncsgd"):
        target = selection["targets"][sc.dataset]
        rows = []
        for name, rr, seeds in paired_arms(runs, base, [*preset.treatments, *preset.safeguards]):
            ratios, diffs, censored_t, censored_b = [], [], 0, 0
            for s in seeds:
                tt, ok_t = run_times(rr[s], target)
                tb, ok_b = run_times(base[s], target)
                censored_t += not ok_t
                censored_b += not ok_b
                ratios.append(tt / tb)
                diffs.append(rr[s]["measured"]["final_accuracy"] - base[s]["measured"]["final_accuracy"])
            ratio = log_ratio_interval(ratios, confidence)
            # a family-wise (Bonferroni) interval over every treatment-vs-AsyncSGD comparison
            strict = log_ratio_interval(ratios, familywise_confidence(confidence, n_tests))
            acc = [rr[s]["measured"]["final_accuracy"] for s in sorted(rr)]
            pred_ratio = [_pred(rr[s]) / _pred(base[s]) for s in seeds if _pred(rr[s]) and _pred(base[s])]
            met = name != "asyncsgd" and math.isfinite(ratio.hi) and ratio.hi < preset.criterion_ratio \
                and censored_t == 0
            rows.append({
                "treatment": name, "label": (TREATMENTS.get(name) or SAFEGUARDS[name]).label, "seeds": len(seeds),
                "lr": float(np.mean([r["lr"] for r in rr.values()])),
                "concurrency": float(np.mean([r["concurrency"] for r in rr.values()])),
                "max_importance_weight": float(np.max([r["max_importance_weight"] for r in rr.values()])),
                "reached": int(sum(run_times(r, target)[1] for r in rr.values())),
                "diverged": int(sum(bool(r["measured"]["diverged"]) for r in rr.values())),
                "accuracy": bootstrap_interval(acc).to_dict(),
                "time_ratio": ratio.to_dict(), "time_ratio_familywise": strict.to_dict(),
                "censored_treatment": censored_t, "censored_asyncsgd": censored_b,
                "accuracy_difference": bootstrap_interval(diffs).to_dict(),
                "predicted_time_ratio": log_ratio_interval(pred_ratio).to_dict(),
                "criterion_met": bool(met),
                "criterion_met_familywise": bool(met and strict.hi < preset.criterion_ratio),
            })
        out.append({"scenario": sc.id, "dataset": sc.dataset, "partition": sc.partition, "clients": sc.clients,
                    "target": target, "time_budget": float(next(iter(base.values()))["time_budget"]), "rows": rows})
    return {"scenarios": out, "comparisons": n_tests, "confidence": confidence,
            "criterion_ratio": preset.criterion_ratio}


def _pred(rec: dict[str, Any]) -> float | None:
    """The proxy's predicted time to the P3 target (time units) at the run's routing and m."""
    v = rec.get("predicted", {}).get("time_to_accuracy")
    return v if v is not None and math.isfinite(v) and v > 0 else None
