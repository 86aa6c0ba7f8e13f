"""Validated, immutable description of an asynchronous FL system as a closed queueing network.

Notation (docs/theory.md section 1): ``n`` clients, routing ``p`` (probability that a new task goes to
client ``i``), concurrency ``m`` (tasks in flight). Each client has a compute stage and optional
downlink/uplink stages; an optional central-server (CS) stage processes every returned task.
Rates are in tasks per time unit; the time unit is whatever the user's rates use.

Construct in Python (:meth:`System.from_rates` or the dataclasses) or load a TOML/YAML/JSON file
(:func:`load_system`). Every invalid value raises :class:`aflqueue.errors.ValidationError` naming
the field and the allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from ._results import summarize_array
from .errors import ValidationError, check_integer, check_positive, check_rate, require
from .io import file_errors, source_name
from .io import read_mapping as read
from .laws import Exponential, ServiceLaw, law_from_spec

__all__ = ["Stage", "Client", "Availability", "System", "load_system", "read_mapping", "example_system",
           "speed_profile", "DISCIPLINES", "SPEED_PROFILES", "FIVE_TYPES", "MAX_FILE_CLIENTS", "MAX_CONCURRENCY"]

DISCIPLINES = ("fifo", "delay")
Discipline = Literal["fifo", "delay"]

#: Tolerance on ``sum(p) = 1`` before normalisation (absorbs decimal input such as 0.3,0.3,0.4).
ROUTING_TOLERANCE = 1e-6
#: Most clients a system description (file or mapping) may list: building one takes about 800
#: bytes and 0.2 ms per client (measured), so this bound keeps a file under ~80 MB and ~20 s.
MAX_FILE_CLIENTS = 100_000
#: Largest concurrency a system description may ask for: the exact analysis costs O(stations x m)
#: (about 20 s at n = 100, m = 10^6 on one core).
MAX_CONCURRENCY = 1_000_000


@dataclass(frozen=True, eq=False)
class Stage:
    """One service station: a service-time law and a discipline.

    ``discipline="fifo"``: one server, first-come first-served (product form exact for exponential
    service). ``"delay"``: infinite servers, every task served at once (product form exact for any
    law, by BCMP insensitivity).
    """

    law: ServiceLaw = field(default_factory=Exponential)
    discipline: Discipline = "fifo"

    def __post_init__(self):
        require(isinstance(self.law, ServiceLaw), "law", "must be a ServiceLaw (see aflqueue.laws)")
        require(self.discipline in DISCIPLINES, "discipline",
                f"must be one of {', '.join(DISCIPLINES)} (got {self.discipline!r})")

    @classmethod
    def exponential(cls, rate: float, discipline: Discipline = "fifo") -> "Stage":
        """Exponential service at ``rate`` tasks per time unit."""
        return cls(Exponential(1.0 / check_rate(rate, "rate")), discipline)

    @property
    def rate(self) -> float:
        """Service rate (tasks per time unit) = 1 / mean service time."""
        return self.law.rate

    @property
    def mean(self) -> float:
        """Mean service time (time units)."""
        return self.law.mean

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rate": self.rate, "discipline": self.discipline}
        if not self.law.is_exponential:
            d["service"] = self.law.to_dict()
        return d


@dataclass(frozen=True, eq=False)
class Availability:
    """On/off availability of a client (used by the simulator; the exact analysis ignores it).

    The client alternates between *on* periods (it serves tasks) and *off* periods (service is
    paused, preemptive-resume); period lengths are drawn from the given laws. ``start_on`` says
    whether the client starts available. The long-run fraction of time on is
    ``on.mean / (on.mean + off.mean)``.
    """

    on: ServiceLaw
    off: ServiceLaw
    start_on: bool = True

    def __post_init__(self):
        require(isinstance(self.on, ServiceLaw), "availability.on", "must be a duration law")
        require(isinstance(self.off, ServiceLaw), "availability.off", "must be a duration law")

    def to_dict(self) -> dict[str, Any]:
        return {"on": self.on.to_dict(), "off": self.off.to_dict(), "start_on": self.start_on}


@dataclass(frozen=True, eq=False)
class Client:
    """A client: compute stage, optional downlink and uplink stages, optional availability."""

    compute: Stage
    downlink: Stage | None = None
    uplink: Stage | None = None
    name: str = ""
    availability: Availability | None = None

    def __post_init__(self):
        require(isinstance(self.compute, Stage), "compute", "must be a Stage")
        for nm in ("downlink", "uplink"):
            v = getattr(self, nm)
            require(v is None or isinstance(v, Stage), nm, "must be a Stage or None")

    @property
    def rate(self) -> float:
        """Compute rate ``mu_i`` (tasks per time unit)."""
        return self.compute.rate

    def stages(self) -> list[tuple[str, Stage]]:
        """The client's stages in the order a task visits them."""
        out = []
        if self.downlink is not None:
            out.append(("downlink", self.downlink))
        out.append(("compute", self.compute))
        if self.uplink is not None:
            out.append(("uplink", self.uplink))
        return out


@dataclass(frozen=True, eq=False)
class System:
    """A closed network of ``n`` clients, routing ``p``, concurrency ``m`` and an optional CS stage.

    Attributes:
        clients: the ``n`` clients.
        routing: shape ``(n,)``, ``p_i >= 0``, ``sum p = 1``. A client with ``p_i = 0`` never gets a
            task; it is excluded from the network and its delay is undefined (NaN).
        concurrency: ``m >= 1`` tasks in flight.
        server: the central server's processing stage (every returned task visits it once before
            its update is applied), or ``None`` for an infinitely fast server.
    """

    clients: tuple[Client, ...]
    routing: np.ndarray
    concurrency: int
    server: Stage | None = None

    def __post_init__(self):
        clients = tuple(self.clients)
        require(len(clients) >= 1, "clients", "need at least one client")
        for i, c in enumerate(clients):
            require(isinstance(c, Client), f"clients[{i}]", "must be a Client")
        n = len(clients)
        object.__setattr__(self, "clients", clients)
        object.__setattr__(self, "routing", validate_routing(self.routing, n))
        object.__setattr__(self, "concurrency", validate_concurrency(self.concurrency))
        require(self.server is None or isinstance(self.server, Stage), "server", "must be a Stage or None")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_rates(
        cls,
        rates: Sequence[float],
        routing: Sequence[float] | None = None,
        concurrency: int | None = None,
        *,
        service: str | Mapping[str, Any] | ServiceLaw | None = None,
        downlink_rates: float | Sequence[float] | None = None,
        uplink_rates: float | Sequence[float] | None = None,
        downlink_discipline: Discipline = "fifo",
        uplink_discipline: Discipline = "fifo",
        server_rate: float | None = None,
        server_discipline: Discipline = "fifo",
        names: Sequence[str] | None = None,
        base_dir: str | Path | None = None,
    ) -> "System":
        """Build a system from per-client compute rates (tasks per time unit).

        ``routing`` defaults to uniform and ``concurrency`` to ``n`` (plain AsyncSGD).
        ``service`` is a law spec applied to every compute stage with mean ``1/rate``
        (e.g. ``"lognormal:cv=1.5"``); default exponential. ``downlink_rates``/``uplink_rates``
        add communication stages (one rate for all clients or one per client).
        """
        rates_arr = _rate_list(rates, "rates")
        n = rates_arr.size
        dl = None if downlink_rates is None else _broadcast_rates(downlink_rates, n, "downlink_rates")
        ul = None if uplink_rates is None else _broadcast_rates(uplink_rates, n, "uplink_rates")
        if names is not None:
            require(len(names) == n, "names", f"needs one name per client ({n}), got {len(names)}")
        clients = []
        for i, mu in enumerate(rates_arr):
            law = law_from_spec(service if service is not None else "exponential", mean=1.0 / mu, base_dir=base_dir)
            clients.append(Client(
                compute=Stage(law, "fifo"),
                downlink=None if dl is None else Stage.exponential(dl[i], downlink_discipline),
                uplink=None if ul is None else Stage.exponential(ul[i], uplink_discipline),
                name=names[i] if names is not None else f"client{i}",
            ))
        server = None if server_rate is None else Stage.exponential(
            check_rate(server_rate, "server_rate"), server_discipline)
        p = np.full(n, 1.0 / n) if routing is None else routing
        m = n if concurrency is None else concurrency
        return cls(tuple(clients), p, m, server)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: str | Path | None = None) -> "System":
        """Build from a mapping (the parsed TOML/YAML/JSON file; see :func:`load_system`).

        ``base_dir``: folder against which relative file names inside (empirical laws) resolve."""
        return _system_from_mapping(d, base_dir)

    # ----------------------------------------------------------------- derived
    @property
    def n(self) -> int:
        """Number of clients."""
        return len(self.clients)

    @property
    def rates(self) -> np.ndarray:
        """Compute rates ``mu_i``, shape ``(n,)``."""
        return np.array([c.rate for c in self.clients])

    @property
    def is_multistage(self) -> bool:
        return self.server is not None or any(c.downlink is not None or c.uplink is not None for c in self.clients)

    @cached_property
    def stage_table(self) -> dict[str, np.ndarray]:
        """Every client stage, independent of routing (cached; the system is immutable).

        Keys: ``owner`` (client index), ``stage`` (0 downlink, 1 compute, 2 uplink), ``rate``,
        ``is_delay``; arrays of shape ``(number of client stages,)`` in visiting order.
        """
        owner, stage, rate, delay = [], [], [], []
        code = {"downlink": 0, "compute": 1, "uplink": 2}
        for i, c in enumerate(self.clients):
            for name, st in c.stages():
                owner.append(i)
                stage.append(code[name])
                rate.append(st.rate)
                delay.append(st.discipline == "delay")
        table = {"owner": np.asarray(owner, dtype=np.int64), "stage": np.asarray(stage, dtype=np.int8),
                 "rate": np.asarray(rate, dtype=float), "is_delay": np.asarray(delay, dtype=bool)}
        for v in table.values():
            v.setflags(write=False)
        return table

    @property
    def product_form_violations(self) -> list[str]:
        """Why the product form is not exact for this system (empty when it is).

        The closed forms of docs/theory.md sections 2-4 are exact for FIFO stations with
        exponential service, delay stations with any law (BCMP insensitivity), and clients that
        are always available; anything else makes them an approximation."""
        out = []
        for i, c in enumerate(self.clients):
            label = c.name or f"client {i}"
            for stage_name, st in c.stages():
                if st.discipline == "fifo" and not st.law.is_exponential:
                    out.append(f"{label} {stage_name}: {st.law.name} service at a FIFO station")
            if c.availability is not None:
                out.append(f"{label}: on/off availability")
        if self.server is not None and self.server.discipline == "fifo" and not self.server.law.is_exponential:
            out.append(f"central server: {self.server.law.name} service at a FIFO station")
        return out

    @property
    def is_product_form(self) -> bool:
        """True when the exact analysis is exact (see :attr:`product_form_violations`)."""
        return not self.product_form_violations

    def describe_product_form(self, limit: int = 3) -> str:
        """``"exact (product form)"`` or ``"product-form approximation: <first reasons>"``."""
        v = self.product_form_violations
        if not v:
            return "exact (product form)"
        more = f" and {len(v) - limit} more" if len(v) > limit else ""
        return f"product-form approximation ({'; '.join(v[:limit])}{more})"

    @property
    def active(self) -> np.ndarray:
        """Boolean mask of clients with ``p_i > 0``, shape ``(n,)``."""
        return self.routing > 0

    def with_routing(self, routing: Sequence[float]) -> "System":
        return replace(self, routing=np.asarray(routing, dtype=float))

    def with_concurrency(self, concurrency: int) -> "System":
        return replace(self, concurrency=concurrency)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form accepted by :meth:`from_dict` (structured ``clients`` layout)."""
        clients = []
        for c in self.clients:
            cd: dict[str, Any] = {"name": c.name, "rate": c.rate}
            if not c.compute.law.is_exponential:
                cd["service"] = c.compute.law.to_dict()
            if c.downlink is not None:
                cd["downlink"] = c.downlink.to_dict()
            if c.uplink is not None:
                cd["uplink"] = c.uplink.to_dict()
            if c.availability is not None:
                cd["availability"] = c.availability.to_dict()
            clients.append(cd)
        d: dict[str, Any] = {"clients": clients, "routing": self.routing.tolist(), "concurrency": self.concurrency}
        if self.server is not None:
            d["server"] = self.server.to_dict()
        return d

    def __repr__(self) -> str:
        p = self.routing
        routing = "uniform" if bool(np.all(p == p[0])) else summarize_array(p)
        parts = [f"n={self.n}", f"rates={summarize_array(self.rates)}", f"routing={routing}",
                 f"concurrency={self.concurrency}"]
        laws = sorted({c.compute.law.name for c in self.clients} - {"exponential"})
        if laws:
            parts.append(f"service={'/'.join(laws)}")
        links = [nm for nm in ("downlink", "uplink") if any(getattr(c, nm) is not None for c in self.clients)]
        if links:
            parts.append(f"links={'+'.join(links)}")
        if self.server is not None:
            parts.append(f"server_rate={self.server.rate:.6g}")
        k = sum(c.availability is not None for c in self.clients)
        if k:
            parts.append(f"availability={k} of {self.n} clients")
        return f"System({', '.join(parts)})"


# --------------------------------------------------------------------------- validation helpers
def validate_routing(routing: Any, n: int, field_name: str = "routing") -> np.ndarray:
    """Check ``routing`` is a probability vector of length ``n`` (numbers, not strings or booleans;
    flat); return a read-only float64 copy divided by its sum.

    The division is not idempotent: a routing written and read back may move by an ulp (its sum
    is 1 only up to rounding). Keeping an already-normalised vector would make it so, but would
    change the bits of every uniform routing, hence of the committed studies' budgets."""
    if isinstance(routing, (list, tuple)):
        for i, x in enumerate(routing):
            require(isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_)),
                    f"{field_name}[{i}]", f"must be a probability in [0, 1] (got {x!r})")
    try:
        p = np.array(routing, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(field_name, "must be a list of numbers") from None
    require(p.ndim == 1, field_name, f"must be a flat list of probabilities, one per client (got shape {p.shape})")
    require(p.size == n, field_name, f"needs one probability per client ({n}), got {p.size}")
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0))
    require(bad.size == 0, field_name,
            f"probabilities must be in [0, 1]; entry {bad[0] if bad.size else 0} is {p[bad[0]] if bad.size else 0}")
    total = float(p.sum())
    require(abs(total - 1.0) <= ROUTING_TOLERANCE, field_name, f"must sum to 1 (got {total:.10g})")
    p = p / total
    p.setflags(write=False)
    return p


def validate_concurrency(m: Any, field_name: str = "concurrency") -> int:
    """Check ``m`` is an integer >= 1."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer, float)):
        raise ValidationError(field_name, f"must be an integer >= 1 (got {m!r})")
    require(float(m) == int(m), field_name, f"must be an integer >= 1 (got {m!r})")
    require(int(m) >= 1, field_name, f"must be an integer >= 1 (got {m!r})")
    return int(m)


def _rate_list(values: Any, field_name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError(field_name, "must be a list of positive rates")
    vals = list(values)
    require(len(vals) >= 1, field_name, "needs at least one rate")
    return np.array([check_rate(v, f"{field_name}[{i}]") for i, v in enumerate(vals)])


def _broadcast_rates(values: Any, n: int, field_name: str) -> np.ndarray:
    if isinstance(values, (int, float, np.number)) and not isinstance(values, bool):
        return np.full(n, check_rate(values, field_name))
    arr = _rate_list(values, field_name)
    require(arr.size == n, field_name, f"needs one rate per client ({n}) or a single rate, got {arr.size}")
    return arr


# --------------------------------------------------------------------------- file formats
_FLAT_KEYS = {"rates", "routing", "concurrency", "service", "downlink_rates", "uplink_rates",
              "downlink_discipline", "uplink_discipline", "server_rate", "server_discipline", "names"}
_STRUCT_KEYS = {"clients", "routing", "concurrency", "server"}
_CLIENT_KEYS = {"name", "rate", "service", "downlink", "uplink", "availability"}
_STAGE_KEYS = {"rate", "discipline", "service"}


def _name(v: Any, field_name: str) -> str:
    require(isinstance(v, (str, int)) and not isinstance(v, bool), field_name, f"must be a string (got {v!r})")
    return str(v)


def _stage_from(d: Any, field_name: str, base_dir: str | Path | None = None) -> Stage:
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return Stage.exponential(check_rate(d, field_name))
    require(isinstance(d, Mapping), field_name, "must be a rate or a table with rate/discipline/service")
    unknown = set(d) - _STAGE_KEYS
    require(not unknown, field_name, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_STAGE_KEYS)}")
    disc = d.get("discipline", "fifo")
    require(disc in DISCIPLINES, f"{field_name}.discipline", f"must be one of {', '.join(DISCIPLINES)} (got {disc!r})")
    if "rate" in d:
        mean = 1.0 / check_rate(d["rate"], f"{field_name}.rate")
        law = law_from_spec(d.get("service", "exponential"), mean=mean, field_name=f"{field_name}.service",
                            base_dir=base_dir)
    else:
        require("service" in d, field_name, "needs a rate or a service law")
        law = law_from_spec(d["service"], field_name=f"{field_name}.service", base_dir=base_dir)
    return Stage(law, disc)


def _availability_from(d: Any, field_name: str, base_dir: str | Path | None = None) -> Availability:
    require(isinstance(d, Mapping), field_name, "must be a table with 'on' and 'off' duration laws")
    unknown = set(d) - {"on", "off", "start_on"}
    require(not unknown, field_name, f"unknown key(s) {sorted(unknown)}; allowed: on, off, start_on")
    require("on" in d and "off" in d, field_name, "needs both 'on' and 'off' duration laws")
    return Availability(law_from_spec(d["on"], field_name=f"{field_name}.on", base_dir=base_dir),
                        law_from_spec(d["off"], field_name=f"{field_name}.off", base_dir=base_dir),
                        bool(d.get("start_on", True)))


def _check_size(d: Mapping[str, Any]) -> None:
    """Client count and concurrency within what a description may ask for, before anything is built."""

    listed = d.get("clients", d.get("rates"))
    if isinstance(listed, (list, tuple)):
        require(len(listed) <= MAX_FILE_CLIENTS, "clients" if "clients" in d else "rates",
                f"at most {MAX_FILE_CLIENTS:,} clients (about 800 bytes and 0.2 ms each to build; got {len(listed):,})")
    if d.get("concurrency") is not None:
        check_integer(d["concurrency"], "concurrency", 1, MAX_CONCURRENCY)
    names = d.get("names")
    if names is not None:
        require(isinstance(names, (list, tuple)) and all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                                         for x in names), "names", "must be a list of strings")


def _system_from_mapping(d: Mapping[str, Any], base_dir: str | Path | None = None) -> System:
    require(isinstance(d, Mapping), "system", "the file must hold a table/object at top level")
    _check_size(d)
    if "clients" in d:
        unknown = set(d) - _STRUCT_KEYS
        require(not unknown, "system", f"unknown key(s) {sorted(unknown)} next to 'clients'; allowed: {sorted(_STRUCT_KEYS)}")
        raw = d["clients"]
        require(isinstance(raw, list) and len(raw) >= 1, "clients", "must be a non-empty list of client tables")
        clients = []
        for i, c in enumerate(raw):
            f = f"clients[{i}]"
            if isinstance(c, (int, float)) and not isinstance(c, bool):
                c = {"rate": c}
            require(isinstance(c, Mapping), f, "must be a table (rate, service, downlink, uplink, name, availability)")
            unknown = set(c) - _CLIENT_KEYS
            require(not unknown, f, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_CLIENT_KEYS)}")
            compute = _stage_from({k: c[k] for k in ("rate", "service") if k in c}, f, base_dir)
            clients.append(Client(
                compute=compute,
                downlink=None if c.get("downlink") is None else _stage_from(c["downlink"], f"{f}.downlink", base_dir),
                uplink=None if c.get("uplink") is None else _stage_from(c["uplink"], f"{f}.uplink", base_dir),
                name=_name(c.get("name", f"client{i}"), f"{f}.name"),
                availability=None if c.get("availability") is None else
                _availability_from(c["availability"], f"{f}.availability", base_dir),
            ))
        n = len(clients)
        server = None if d.get("server") is None else _stage_from(d["server"], "server", base_dir)
        routing = d.get("routing", np.full(n, 1.0 / n))
        return System(tuple(clients), routing, d.get("concurrency", n), server)
    unknown = set(d) - _FLAT_KEYS
    require(not unknown, "system", f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_FLAT_KEYS | {'clients', 'server'})}")
    require("rates" in d, "rates", "missing: give 'rates' (a list of positive compute rates) or a 'clients' list")
    for key, stage in (("downlink_discipline", "downlink_rates"), ("uplink_discipline", "uplink_rates"),
                       ("server_discipline", "server_rate")):
        require(key not in d or d.get(stage) is not None, key, f"given without {stage}: there is no such stage "
                                                               "for it to apply to")
    return System.from_rates(
        d["rates"], d.get("routing"), d.get("concurrency"),
        service=d.get("service"), downlink_rates=d.get("downlink_rates"), uplink_rates=d.get("uplink_rates"),
        downlink_discipline=d.get("downlink_discipline", "fifo"), uplink_discipline=d.get("uplink_discipline", "fifo"),
        server_rate=d.get("server_rate"), server_discipline=d.get("server_discipline", "fifo"), names=d.get("names"),
        base_dir=base_dir,
    )


def read_mapping(path: str | Path, field: str = "file") -> dict[str, Any]:
    """Parse a TOML, YAML or JSON file (chosen by extension) into a dict, bounded and checked by
    :func:`aflqueue.io.read_mapping` (size, nesting, integer sizes, finite numbers, safe YAML).

    Every failure is one :class:`ValidationError` naming the file: missing, a folder, unreadable,
    too large, empty, not UTF-8 text, a parse error, a value no file may hold, or a top level
    that is not a table (a list, a string...)."""

    return read(path, field)


def load_system(path: str | Path) -> System:
    """Load a :class:`System` from a TOML, YAML or JSON file (read by :func:`read_mapping`; every
    error names the file and the field).

    Flat layout (top-level keys): ``rates`` (list, required), ``routing`` (list, default
    uniform), ``concurrency`` (int, default n), ``service`` (law spec for all compute stages),
    ``downlink_rates``/``uplink_rates`` (number or list), ``downlink_discipline``/
    ``uplink_discipline`` (``fifo`` | ``delay``), ``server_rate``, ``server_discipline``, ``names``.

    Structured layout: ``clients`` = list of tables ``{rate, service, downlink, uplink, name,
    availability}`` where ``downlink``/``uplink`` are a rate or ``{rate, discipline, service}``,
    plus ``routing``, ``concurrency`` and ``server`` (a rate or a stage table).

    At most :data:`MAX_FILE_CLIENTS` clients and a concurrency of at most :data:`MAX_CONCURRENCY`
    (checked before anything is built).
    """

    with file_errors(source_name(path)):
        return System.from_dict(read_mapping(path), base_dir=Path(path).parent)


def example_system() -> System:
    """The built-in example: 5 fast clients (rate 1) and 5 slow ones (rate 0.1), uniform routing,
    concurrency 10 (AsyncSGD). Rates in tasks per time unit."""
    return System.from_rates([1.0] * 5 + [0.1] * 5, concurrency=10,
                             names=[f"fast{i}" for i in range(5)] + [f"slow{i}" for i in range(5)])


# --------------------------------------------------------------------------- speed profiles
#: Compute rates of the five device types A..E of Alahyane, Comte and Jonckheere (2026), about
#: 30x apart (tasks per time unit); clients are assigned to types round-robin.
FIVE_TYPES = (3.0, 1.5, 0.6, 0.25, 0.1)
SPEED_PROFILES = ("two-groups", "five-types", "homogeneous", "custom")


def speed_profile(profile: str, n: int, *, fast_rate: float = 1.0, slow_factor: float = 10.0,
                  spread: float = 30.0, rates: Sequence[float] | None = None) -> np.ndarray:
    """Compute rates ``mu_i`` (tasks per time unit) of ``n`` clients, shape ``(n,)``.

    Profiles: ``two-groups`` (the first ``ceil(n/2)`` clients at ``fast_rate``, the others
    ``slow_factor`` times slower), ``five-types`` (:data:`FIVE_TYPES` round-robin; ``spread``
    rescales the log-rates about the fastest type so that fastest/slowest = ``spread``; the
    default 30 gives the published rates exactly), ``homogeneous`` (all ``fast_rate``) or
    ``custom`` (``rates``, one per client).
    """
    require(profile in SPEED_PROFILES, "system.profile",
            f"must be one of {', '.join(SPEED_PROFILES)} (got {profile!r})")
    if profile == "custom":
        arr = _rate_list(rates if rates is not None else [], "system.rates")
        require(arr.size == n, "system.rates", f"needs one rate per client ({n}), got {arr.size}")
        return arr
    fast = check_rate(fast_rate, "system.fast_rate")
    if profile == "homogeneous":
        return np.full(n, fast)
    if profile == "two-groups":
        slow = check_positive(slow_factor, "system.slow_factor")
        half = n - n // 2
        return np.r_[np.full(half, fast), np.full(n - half, fast / slow)]
    sp = check_positive(spread, "system.spread")
    require(sp >= 1, "system.spread", f"must be >= 1 (fastest / slowest rate; got {spread!r})")
    types = np.asarray(FIVE_TYPES)
    if sp != 30.0:  # keep the published rates bit for bit at the default
        top = types[0]
        types = top * (types / top) ** (math.log(sp) / math.log(top / types[-1]))
    return np.asarray([types[i % types.size] for i in range(n)])
