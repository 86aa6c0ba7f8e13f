"""Training-run configuration: one validated, serialisable object (TOML/YAML/JSON).

Sections mirror the flow of the toolkit: ``data`` (data set and split), ``model``, ``system``
(client speeds, concurrency), ``routing`` (uniform, optimal for a proxy, or explicit), ``local``
(local training), ``algorithm`` (server algorithm and its hyper-parameters) and ``run`` (budget,
evaluation, checkpoints, execution). Every field has a default; the defaults are the embedded
configuration of ``aflqueue train`` (digits, 10 clients, two speed groups 10x apart).

Overrides use dotted keys: ``--set local.lr=0.1 --set routing.kind=optimal``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ValidationError, require

__all__ = ["TrainConfig", "DataConfig", "ModelConfig", "SystemConfig", "RoutingConfig", "LocalSection",
           "AlgorithmConfig", "RunSection", "load_config", "apply_overrides", "system_rates"]


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_root: str | None = None
    clients: int = 10
    partition: str = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    quantity_alpha: float = 1.0
    unlabeled_fraction: float = 0.0
    max_train: int | None = None
    max_test: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str | None = None  # default: the data set's (aflqueue.fl.data.default_model_for)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SystemConfig:
    """Client speeds: a profile of :func:`aflqueue.system.speed_profile` (``two-groups``,
    ``five-types`` with ``spread``, ``homogeneous`` or ``custom`` ``rates``). ``file`` loads a
    system file instead. ``concurrency = 0`` means ``n``."""

    profile: str = "two-groups"
    rates: list[float] = field(default_factory=list)
    fast_rate: float = 1.0
    slow_factor: float = 10.0
    spread: float = 30.0
    concurrency: int = 0
    service: str = "exponential"
    file: str | None = None


@dataclass
class RoutingConfig:
    """``kind``: ``uniform``, ``optimal`` (minimise ``objective`` with ``aflqueue.optimize``) or
    ``explicit`` (``values``). ``concurrency_range = [lo, hi]`` also optimises ``m``.
    ``constants``: proxy constants, or ``"calibrate"`` to estimate them from the initial model."""

    kind: str = "uniform"
    values: list[float] = field(default_factory=list)
    objective: str = "wallclock"
    p_min: float = 1e-3
    concurrency_range: list[int] = field(default_factory=list)
    constants: Any = field(default_factory=dict)
    epsilon: float | None = None


@dataclass
class LocalSection:
    steps: int = 1
    lr: float = 0.05
    batch_size: int = 32
    optimizer: str = "sgd"
    weight_decay: float = 0.0


@dataclass
class AlgorithmConfig:
    name: str = "generalized-asyncsgd"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSection:
    """Budget: ``time_budget`` (simulated time units) or ``updates`` (arrivals); with both, the
    first reached. ``trace``: replay a saved trace instead of simulating."""

    updates: int | None = 1500
    time_budget: float | None = None
    eval_every: int = 100
    eval_times: int = 0
    checkpoint_every: int = 500
    batched: bool | None = None  # None: batched (vmap) on CUDA, serial on CPU (faster there, measured)
    max_batch: int | None = None  # None: 8 on CPU, 256 on CUDA
    engine: str = "auto"
    trace: str | None = None
    threads: int = 1  # torch intra-op threads on CPU; small models lose time to thread spinning


@dataclass
class TrainConfig:
    output: str = "runs/train"
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    local: LocalSection = field(default_factory=LocalSection)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        return _from_mapping(cls, d, "")


def _from_mapping(cls, d: Mapping[str, Any], prefix: str):
    require(isinstance(d, Mapping), prefix or "config", "must be a table")
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    require(not unknown, prefix or "config", f"unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    kw = {}
    for k, v in d.items():
        f = names[k]
        default = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        kw[k] = _from_mapping(type(default), v, f"{prefix}{k}.") if is_dataclass(default) else v
    try:
        return cls(**kw)
    except TypeError as e:  # a wrong type that the dataclass itself rejects
        raise ValidationError(prefix.rstrip(".") or "config", str(e)) from None


def validate(c: TrainConfig) -> None:
    """Range checks that need no data (the rest is checked where it is used)."""
    require(isinstance(c.seed, int) and c.seed >= 0, "seed", f"must be an integer >= 0 (got {c.seed!r})")
    from .system import SPEED_PROFILES

    require(c.system.profile in SPEED_PROFILES, "system.profile",
            f"must be one of {', '.join(SPEED_PROFILES)} (got {c.system.profile!r})")
    require(c.system.fast_rate > 0, "system.fast_rate", f"must be > 0 (got {c.system.fast_rate})")
    require(c.system.slow_factor > 0, "system.slow_factor", f"must be > 0 (got {c.system.slow_factor})")
    require(isinstance(c.system.concurrency, int) and c.system.concurrency >= 0, "system.concurrency",
            f"must be an integer >= 0 (0 = n) (got {c.system.concurrency!r})")
    require(c.routing.kind in ("uniform", "optimal", "explicit"), "routing.kind",
            f"must be uniform, optimal or explicit (got {c.routing.kind!r})")
    require(isinstance(c.data.clients, int) and c.data.clients >= 1, "data.clients",
            f"must be an integer >= 1 (got {c.data.clients!r})")
    r = c.run
    require(r.updates is not None or r.time_budget is not None or r.trace is not None, "run",
            "give run.updates or run.time_budget (or a run.trace to replay)")
    if r.updates is not None:
        require(isinstance(r.updates, int) and r.updates >= 1, "run.updates", f"must be an integer >= 1 (got {r.updates!r})")
    if r.time_budget is not None:
        require(r.time_budget > 0, "run.time_budget", f"must be > 0 (got {r.time_budget})")
    require(r.engine in ("auto", "simpy", "fast"), "run.engine", f"must be auto, simpy or fast (got {r.engine!r})")
    require(isinstance(r.threads, int) and r.threads >= 1, "run.threads", f"must be an integer >= 1 (got {r.threads!r})")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """The embedded default, updated by a TOML/YAML/JSON file and by ``key=value`` overrides."""
    base = TrainConfig().to_dict()
    if path is not None:
        from .system import read_mapping

        _deep_update(base, read_mapping(path), "")
    cfg = TrainConfig.from_dict(base)
    return apply_overrides(cfg, overrides or [])


def _deep_update(dst: dict, src: Mapping, prefix: str) -> None:
    for k, v in src.items():
        require(k in dst, f"{prefix}{k}", f"unknown key; allowed here: {sorted(dst)}")
        if isinstance(dst[k], dict) and isinstance(v, Mapping) and k not in ("options", "params", "constants"):
            _deep_update(dst[k], v, f"{prefix}{k}.")
        else:
            dst[k] = v


def _parse_value(text: str) -> Any:
    t = text.strip()
    if t.lower() in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except json.JSONDecodeError:
        return t


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` strings (values parsed as JSON when possible)."""
    d = cfg.to_dict()
    for item in overrides:
        require("=" in item, "set", f"{item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            require(isinstance(node, dict) and p in node, "set", f"unknown section {p!r} in {key!r}")
            node = node[p]
        leaf = parts[-1]
        require(isinstance(node, dict) and (leaf in node or parts[-2:-1] in (["options"], ["params"], ["constants"])),
                "set", f"unknown key {key!r}")
        node[leaf] = _parse_value(value)
    return TrainConfig.from_dict(d)


def system_rates(cfg: SystemConfig, n: int) -> np.ndarray:
    """Compute rates of the ``n`` clients for the configured speed profile (tasks per time unit)."""
    from .system import speed_profile

    return speed_profile(cfg.profile, n, fast_rate=cfg.fast_rate, slow_factor=cfg.slow_factor, spread=cfg.spread,
                         rates=cfg.rates)


def with_updates(cfg: TrainConfig, **sections: Mapping[str, Any]) -> TrainConfig:
    """A copy with some section fields replaced, e.g. ``with_updates(cfg, routing={"kind": "optimal"})``."""
    kw = {}
    for name, upd in sections.items():
        kw[name] = replace(getattr(cfg, name), **upd) if isinstance(upd, Mapping) else upd
    return replace(cfg, **kw)
