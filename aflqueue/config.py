"""Training-run configuration: one validated, serialisable object (TOML/YAML/JSON).

Sections mirror the flow of the toolkit: ``data`` (data set and split), ``model``, ``system``
(client speeds, concurrency), ``routing`` (uniform, optimal for a proxy, or explicit), ``local``
(local training), ``algorithm`` (server algorithm and its hyper-parameters) and ``run`` (budget,
evaluation, checkpoints, execution). Every field has a default; the defaults are the embedded
configuration of ``aflqueue train`` (digits, 10 clients, two speed groups 10x apart).

Overrides use dotted keys: ``--set local.lr=0.1 --set routing.kind=optimal``.

No default silently overrides a value the user gave:
* the budget: ``run.updates`` defaults to 1500 *only if* neither ``run.updates`` nor
  ``run.time_budget`` (nor a ``run.trace``) is given; with both, the first reached ends the run
  and the result says which (``stopped_by``);
* a value that the chosen mode would ignore is an error, e.g. ``routing.values`` with
  ``routing.kind = "uniform"``, ``system.rates`` with a profile other than ``custom``, or
  ``data.alpha`` with a partition other than ``dirichlet`` (see :func:`load_config`).

Every field is type-checked (a string where a number belongs, a bool where an integer belongs,
``null`` for a required value...) and range-checked, with one-line errors naming the field.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Union, get_args, get_origin, get_type_hints

import numpy as np

from .errors import ValidationError, check_fraction, check_integer, check_number, check_positive, require
from .io import MAX_DEPTH, check_values, file_errors, json_depth, naming_file, read_mapping, source_name
from .system import SPEED_PROFILES, load_system, speed_profile

__all__ = ["TrainConfig", "DataConfig", "ModelConfig", "SystemConfig", "RoutingConfig", "LocalSection",
           "AlgorithmConfig", "RunSection", "load_config", "apply_overrides", "system_rates", "with_updates",
           "system_file_overrides",
           "DEFAULT_UPDATES", "STEP_SIZE_RULES"]

#: Arrivals of the embedded default run, used only when no budget is given.
DEFAULT_UPDATES = 1500
#: The data sets that need no files (generated, or bundled with a dependency): the rest are read
#: from ``data.data_root``.
OFFLINE_DATASET_NAMES: tuple[str, ...] = ("digits", "mnist1d", "synthetic")
#: How ``routing.kind = "optimal"`` sets the learning rate (see :class:`RoutingConfig`).
STEP_SIZE_RULES = ("optimal", "fixed")
_OBJECTIVE_ALIASES = {"wallclock": "wall-clock"}


#: The routing floor every command and configuration uses unless told otherwise: each ``p_i >= 0.001``
#: (a client's importance weight ``1/(n p_i)`` stays below ``1000/n``).
DEFAULT_P_MIN = 1e-3


@dataclass
class DataConfig:
    """The ``[data]`` section: which data set, and how it is split over the clients."""

    #: ``digits``, ``mnist1d``, ``synthetic`` (offline) or a torchvision set read from ``data_root``.
    dataset: str = "digits"
    #: Folder holding the torchvision sets' files (never downloaded); None for the offline sets.
    data_root: str | None = None
    #: Number of clients n.
    clients: int = 10
    #: ``iid``, ``dirichlet`` (labels ~ Dirichlet(alpha)), ``k_classes`` or ``quantity_skew``.
    partition: str = "dirichlet"
    #: Concentration of the ``dirichlet`` label split (> 0; small = more heterogeneous).
    alpha: float = 0.5
    #: Labels per client of the ``k_classes`` split.
    classes_per_client: int = 2
    #: Concentration of the client sizes of the ``quantity_skew`` split (> 0).
    quantity_alpha: float = 1.0
    #: Share of the training set held by the server, unlabeled (FedEcho, FedRevive), in [0, 1).
    unlabeled_fraction: float = 0.0
    #: Share of the training set set aside for validation (tuning, pilots), in [0, 1).
    validation_fraction: float = 0.0
    #: Caps on the training and test set sizes (None: all).
    max_train: int | None = None
    max_test: int | None = None
    #: Data-set specific options (e.g. ``num_samples`` for mnist1d).
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
    """``kind``: ``uniform``, ``optimal`` (minimise ``objective`` with :mod:`aflqueue.optimization`) or
    ``explicit`` (``values``). ``concurrency_range = [lo, hi]`` also optimises ``m``.
    ``constants``: proxy constants, ``"calibrate"`` to estimate them from the initial model, or the
    path of a constants file (its table ``constants``; e.g. written by ``aflqueue calibrate``).

    ``step_size`` (``optimal`` only): ``"optimal"`` (default) trains with the optimiser's whole
    operating point -- routing, concurrency and step size: the local learning rate becomes
    ``local.lr * eta*(p*, m*) / eta*(uniform, n)``, the proxy's optimal step at the optimum over
    its optimal step for AsyncSGD (uniform routing, ``m = n``) on the same budget, so that
    ``local.lr`` keeps meaning "the AsyncSGD learning rate"; ``"fixed"`` keeps ``local.lr``.
    """

    kind: str = "uniform"
    values: list[float] = field(default_factory=list)
    objective: str = "wall-clock"
    p_min: float = DEFAULT_P_MIN
    concurrency_range: list[int] = field(default_factory=list)
    constants: Any = field(default_factory=dict)
    epsilon: float | None = None
    step_size: str = "optimal"


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
    """Budget: ``time_budget`` (simulated time units) and/or ``updates`` (arrivals); with both,
    the first reached; with neither (and no ``trace``), :data:`DEFAULT_UPDATES` updates.
    ``trace``: replay a saved trace instead of simulating. ``max_memory_gb``: refuse, before
    starting, a run whose schedule and logs would need more memory than this."""

    updates: int | None = None
    time_budget: float | None = None
    eval_every: int = 100
    eval_times: int = 0
    checkpoint_every: int = 500
    batched: bool | None = None  # None: batched (vmap) on CUDA, serial on CPU (faster there, measured)
    max_batch: int | None = None  # None: 8 on CPU, 256 on CUDA
    engine: str = "auto"
    trace: str | None = None
    threads: int = 1  # torch intra-op threads on CPU; small models lose time to thread spinning
    max_memory_gb: float = 4.0
    evaluate_on: str = "test"


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
        _check_types(self, "")
        r = self.run
        if r.updates is None and r.time_budget is None and r.trace is None:
            r.updates = DEFAULT_UPDATES
        self.routing.objective = _OBJECTIVE_ALIASES.get(self.routing.objective, self.routing.objective)
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        return _from_mapping(cls, d, "")


# --------------------------------------------------------------------------- types
def _type_ok(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin is Union or (origin is not None and type(tp).__name__ == "UnionType"):
        return any(_type_ok(value, a) for a in get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
             type(None): "null"}
    if tp in names:
        return names[tp]
    origin = get_origin(tp)
    if origin is Union or type(tp).__name__ == "UnionType":
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0]).split(' ', 1)[-1]}s"
    if origin is dict:
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _check_types(obj: Any, prefix: str) -> None:
    """Every field of a (nested) config dataclass has its annotated type; ints become floats
    where a float is expected."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(v):
            _check_types(v, name + ".")
            continue
        tp = hints[f.name]
        if not _type_ok(v, tp):
            raise ValidationError(name, f"must be {_type_name(tp)} (got {v!r})")
        if tp in (float, float | None) and isinstance(v, int) and not isinstance(v, bool):
            setattr(obj, f.name, float(v))
        if get_origin(tp) is list and get_args(tp)[0] is float:
            setattr(obj, f.name, [float(x) for x in v])


def _from_mapping(cls, d: Mapping[str, Any], prefix: str):
    require(isinstance(d, Mapping), prefix.rstrip(".") or "config", f"must be a table (got {type(d).__name__})")
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    require(not unknown, prefix.rstrip(".") or "config",
            f"unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(names)}")
    kw = {}
    for k, v in d.items():
        f = names[k]
        default = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        kw[k] = _from_mapping(type(default), v, f"{prefix}{k}.") if is_dataclass(default) else v
    return cls(**kw)  # sections are type-checked with the whole configuration


# --------------------------------------------------------------------------- ranges
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def validate(c: TrainConfig) -> None:
    """Range checks that need no data (the rest is checked where it is used)."""

    require(c.output.strip() != "", "output", "must be a folder path (got an empty string)")
    check_integer(c.seed, "seed", 0, 2**32 - 1)
    require(bool(_DEVICE.match(c.device)), "device", f"must be auto, cpu, cuda or cuda:K (got {c.device!r})")
    d = c.data
    # the offline sets read no files: a data root given for one would be silently ignored
    require(d.data_root is None or str(d.dataset).lower() not in OFFLINE_DATASET_NAMES, "data.data_root",
            f"the data set {d.dataset!r} is generated or bundled and reads no files; leave data_root unset")
    check_integer(d.clients, "data.clients", 1, 100_000)
    check_positive(d.alpha, "data.alpha")
    check_integer(d.classes_per_client, "data.classes_per_client", 1)
    check_positive(d.quantity_alpha, "data.quantity_alpha")
    check_fraction(d.unlabeled_fraction, "data.unlabeled_fraction")
    check_fraction(d.validation_fraction, "data.validation_fraction")
    for name in ("max_train", "max_test"):
        if getattr(d, name) is not None:
            check_integer(getattr(d, name), f"data.{name}", 1)
    s = c.system
    require(s.profile in SPEED_PROFILES, "system.profile",
            f"must be one of {', '.join(SPEED_PROFILES)} (got {s.profile!r})")
    check_positive(s.fast_rate, "system.fast_rate")
    check_positive(s.slow_factor, "system.slow_factor")
    check_number(s.spread, "system.spread", 1.0)
    check_integer(s.concurrency, "system.concurrency", 0, 100_000)
    for j, x in enumerate(s.rates):
        check_positive(x, f"system.rates[{j}]")
    r = c.routing
    require(r.kind in ("uniform", "optimal", "explicit"), "routing.kind",
            f"must be uniform, optimal or explicit (got {r.kind!r})")
    check_fraction(r.p_min, "routing.p_min")
    if r.epsilon is not None:
        check_positive(r.epsilon, "routing.epsilon")
    require(r.step_size in STEP_SIZE_RULES, "routing.step_size",
            f"must be one of {', '.join(STEP_SIZE_RULES)} (got {r.step_size!r})")
    require(isinstance(r.constants, dict) or r.constants == "calibrate" or _is_constants_file(r.constants),
            "routing.constants", f"must be a table of constants, \"calibrate\" or a constants file (.toml, .json, "
                                 f".yaml; e.g. from aflqueue calibrate) (got {r.constants!r})")
    if r.concurrency_range:
        require(len(r.concurrency_range) == 2, "routing.concurrency_range",
                f"must be [lo, hi] (got {r.concurrency_range})")
        lo, hi = r.concurrency_range
        require(1 <= lo <= hi <= 100_000, "routing.concurrency_range",
                f"must satisfy 1 <= lo <= hi <= 100000 (got {r.concurrency_range})")
    lc = c.local
    check_integer(lc.steps, "local.steps", 1, 100_000)
    check_number(lc.lr, "local.lr", 0.0, 100.0, lo_open=True)
    check_integer(lc.batch_size, "local.batch_size", 1)
    require(lc.optimizer in ("sgd", "adam"), "local.optimizer", f"must be sgd or adam (got {lc.optimizer!r})")
    check_number(lc.weight_decay, "local.weight_decay", 0.0)
    run = c.run
    if run.updates is not None:
        check_integer(run.updates, "run.updates", 1, 10**9)
    if run.time_budget is not None:
        check_positive(run.time_budget, "run.time_budget")
    check_integer(run.eval_every, "run.eval_every", 0)
    check_integer(run.eval_times, "run.eval_times", 0, 100_000)
    check_integer(run.checkpoint_every, "run.checkpoint_every", 0)
    if run.max_batch is not None:
        check_integer(run.max_batch, "run.max_batch", 1, 65_536)
    require(run.engine in ("auto", "simpy", "fast"), "run.engine", f"must be auto, simpy or fast (got {run.engine!r})")
    # more threads than cores only spin, and torch crashes on absurd counts
    check_integer(run.threads, "run.threads", 1, max(1, os.cpu_count() or 1))
    check_positive(run.max_memory_gb, "run.max_memory_gb")
    require(run.evaluate_on in ("test", "validation"), "run.evaluate_on",
            f"must be test or validation (got {run.evaluate_on!r})")
    require(run.evaluate_on == "test" or d.validation_fraction > 0, "run.evaluate_on",
            "validation needs data.validation_fraction > 0 (the slice of the training set to evaluate on)")


def _is_constants_file(value: Any) -> bool:
    """A string naming a constants file (by extension; read where it is used)."""
    return isinstance(value, str) and Path(value).suffix.lower() in (".toml", ".json", ".yaml", ".yml")


# Keys that only one mode uses (any other would silently ignore them): (mode key, mode) -> keys.
_ONLY_WHEN: dict[tuple[str, Any], tuple[str, ...]] = {
    ("routing.kind", "explicit"): ("routing.values",),
    ("routing.kind", "optimal"): ("routing.objective", "routing.p_min", "routing.concurrency_range",
                                  "routing.constants", "routing.epsilon", "routing.step_size"),
    ("system.profile", "custom"): ("system.rates",),
    ("system.profile", "two-groups"): ("system.slow_factor",),
    ("system.profile", "five-types"): ("system.spread",),
    ("data.partition", "dirichlet"): ("data.alpha",),
    ("data.partition", "k_classes"): ("data.classes_per_client",),
    ("data.partition", "quantity_skew"): ("data.quantity_alpha",),
}


def _get(cfg: TrainConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _is_default(cfg: TrainConfig, dotted: str, defaults: Mapping[str, Any]) -> bool:
    node: Any = defaults
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    try:
        return bool(_get(cfg, dotted) == node)
    except AttributeError:
        return False


def check_explicit(cfg: TrainConfig, explicit: set[str]) -> None:
    """Refuse a user-given value that the configuration's mode would silently ignore. A value
    equal to the default is no intent of the user's (a run's own ``config.json`` lists every
    field): it is never refused."""
    defaults = _raw_defaults()
    explicit = {k for k in explicit if not _is_default(cfg, k, defaults)}
    for (mode_key, mode), keys in _ONLY_WHEN.items():
        key = next((k for k in keys if k in explicit), None)
        if key is not None and _get(cfg, mode_key) != mode:
            raise ValidationError(key, f"is used only with {mode_key} = {mode!r} (it is {_get(cfg, mode_key)!r}); "
                                       f"set {mode_key} = {json.dumps(mode)} or drop {key}")
    if "system.file" in explicit and cfg.system.file:
        clash = sorted(k for k in explicit if k.startswith("system.") and k not in ("system.file", "system.concurrency"))
        require(not clash, clash[0] if clash else "system", "cannot be combined with system.file (the file "
                                                            "describes the clients); edit the file instead")
    if "system.fast_rate" in explicit:
        require(cfg.system.profile in ("two-groups", "homogeneous"), "system.fast_rate",
                f"is used only with the two-groups or homogeneous profile (it is {cfg.system.profile!r})")


# --------------------------------------------------------------------------- loading
def _raw_defaults() -> dict[str, Any]:
    """The defaults before budget resolution (so that a given time budget is not joined by the
    default update budget)."""
    top = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}  # type: ignore[misc]
    sections = {f.name: asdict(f.default_factory()) for f in fields(TrainConfig) if callable(f.default_factory)}  # type: ignore[misc]
    return {**top, **sections}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                mapping: Mapping[str, Any] | None = None) -> TrainConfig:
    """The embedded default, updated by a TOML/YAML/JSON file, then by ``mapping`` (nested like
    the file: ``{"local": {"lr": 0.1}}``), then by ``key=value`` overrides.

    The file is read by :func:`aflqueue.io.read_mapping` (bounded size and nesting, no huge
    integers, finite numbers, safe YAML; an empty file is refused); an error about a value the
    file gave names the file. Values given in the file, the mapping or the overrides that their
    mode would ignore are refused (:func:`check_explicit`)."""
    base = _raw_defaults()
    explicit: set[str] = set()
    from_file: set[str] = set()
    src = None
    if path is not None:
        src = source_name(path)
        data = read_mapping(path)
        with file_errors(src):
            _deep_update(base, data, "", from_file)
        explicit |= from_file
    later = {item.split("=", 1)[0].strip() for item in overrides or [] if isinstance(item, str) and "=" in item}
    try:
        if mapping is not None:
            require(isinstance(mapping, Mapping), "config", f"must be a table (got {type(mapping).__name__})")
            _deep_update(base, mapping, "", later)
        _apply(base, overrides or [], later)
        explicit |= later
        cfg = TrainConfig.from_dict(base)
        check_explicit(cfg, explicit)
    except ValidationError as e:
        if src is not None and _given_by(e.field, from_file - later):
            raise naming_file(e, src) from None
        raise
    return cfg


def system_file_overrides(path: str | Path) -> list[str] | None:
    """When ``path`` is a system file (top-level ``rates`` or ``clients``) rather than a run
    configuration: the overrides that make the embedded configuration use it (``system.file`` and
    ``data.clients``, its number of clients); else None. The file is read and loaded
    (:func:`aflqueue.system.load_system`), so a bad system file fails here, naming it."""

    if not ({"rates", "clients"} & set(read_mapping(path))):
        return None
    n = load_system(path).n
    return [f"system.file={json.dumps(str(path))}", f"data.clients={n}"]


def _given_by(field_name: str, keys: set[str]) -> bool:
    """Whether the error about ``field_name`` (``local.lr``, ``system.rates[0]``, ``data``) is about
    one of the dotted ``keys`` a file gave."""
    f = field_name.split("[", 1)[0]
    return any(f == k or f.startswith(k + ".") or k.startswith(f + ".") for k in keys)


def _deep_update(dst: dict, src: Mapping, prefix: str, explicit: set[str]) -> None:
    for k, v in src.items():
        key = f"{prefix}{k}"
        require(isinstance(k, str) and k in dst, key, f"unknown key; allowed here: {sorted(dst)}")
        if isinstance(dst[k], dict) and k not in ("options", "params", "constants"):
            require(isinstance(v, Mapping), key, f"must be a table (got {v!r})")
            _deep_update(dst[k], v, f"{key}.", explicit)
        else:
            dst[k] = v
            explicit.add(key)


def _parse_value(text: str, key: str = "set") -> Any:
    """A ``--set`` value: JSON if it parses (checked as a file's values are: bounded nesting and
    integers, finite numbers), else the text itself."""

    t = text.strip()
    if t.lower() in ("none", "null"):
        return None
    if json_depth(t) > MAX_DEPTH:
        raise ValidationError(key, f"nested deeper than {MAX_DEPTH} levels of tables and lists")
    try:
        value = json.loads(t)
    except (json.JSONDecodeError, RecursionError):
        return t
    except ValueError:  # an integer of more digits than Python converts
        raise ValidationError(key, f"must be a value of the configuration (got {t[:40]!r}...)") from None
    try:
        check_values(value, "--set", prefix=key)
    except ValidationError as e:
        raise ValidationError(key, e.detail.removeprefix("--set: ")) from None
    return value


def _apply(d: dict, overrides: list[str], explicit: set[str]) -> None:
    for item in overrides:
        require(isinstance(item, str) and "=" in item, "set", f"{item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            require(isinstance(node, dict) and p in node, "set", f"unknown section {p!r} in {key!r}")
            node = node[p]
        leaf = parts[-1]
        free = parts[-2:-1] in (["options"], ["params"], ["constants"])
        require(isinstance(node, dict) and (leaf in node or free), "set", f"unknown key {key!r}")
        if isinstance(node.get(leaf), dict) and leaf not in ("options", "params", "constants") and not free:
            raise ValidationError("set", f"{key!r} is a section; set one of its keys ({', '.join(sorted(node[leaf]))})")
        node[leaf] = _parse_value(value, key.strip())
        explicit.add(key.strip() if not free else ".".join(parts[:-1]))


def apply_overrides(cfg: TrainConfig, overrides: list[str] | None = None,
                    mapping: Mapping[str, Any] | None = None) -> TrainConfig:
    """``cfg`` updated by a nested ``mapping`` and then by ``section.key=value`` strings (values
    parsed as JSON when possible), with the same checks as :func:`load_config`."""
    d = cfg.to_dict()
    explicit: set[str] = set()
    if mapping is not None:
        require(isinstance(mapping, Mapping), "config", f"must be a table (got {type(mapping).__name__})")
        _deep_update(d, mapping, "", explicit)
    _apply(d, overrides or [], explicit)
    if "run.time_budget" in explicit and "run.updates" not in explicit and cfg.run.updates == DEFAULT_UPDATES:
        # the default update budget must not cut short the time budget the user now gives
        d["run"]["updates"] = None
    out = TrainConfig.from_dict(d)
    check_explicit(out, explicit)
    return out


def system_rates(cfg: SystemConfig, n: int) -> np.ndarray:
    """Compute rates of the ``n`` clients for the configured speed profile (tasks per time unit)."""

    return speed_profile(cfg.profile, n, fast_rate=cfg.fast_rate, slow_factor=cfg.slow_factor, spread=cfg.spread,
                         rates=cfg.rates)


def with_updates(cfg: TrainConfig, **sections: Mapping[str, Any]) -> TrainConfig:
    """A copy with some section fields replaced, e.g. ``with_updates(cfg, routing={"kind": "optimal"})``."""
    kw = {}
    for name, upd in sections.items():
        kw[name] = replace(getattr(cfg, name), **upd) if isinstance(upd, Mapping) else upd
    return replace(cfg, **kw)
