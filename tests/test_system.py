"""System description: construction, validation errors naming the field, file formats."""

import json

import numpy as np
import pytest

from aflqueue import Stage, System, ValidationError, load_system
from aflqueue.laws import Exponential, LogNormal, law_from_spec


def test_from_rates_defaults():
    s = System.from_rates([1.0, 2.0, 0.5])
    assert s.n == 3 and s.concurrency == 3
    np.testing.assert_allclose(s.routing, [1 / 3] * 3)
    np.testing.assert_allclose(s.rates, [1, 2, 0.5])
    assert not s.is_multistage
    with pytest.raises(ValueError):
        s.routing[0] = 0.5  # immutable


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(rates=[1, -1]), "rates[1]"),
        (dict(rates=[1, 0]), "rates[1]"),
        (dict(rates=[1, float("nan")]), "rates[1]"),
        (dict(rates=[]), "rates"),
        (dict(rates=[1, 1], routing=[0.5, 0.6]), "routing"),
        (dict(rates=[1, 1], routing=[1.5, -0.5]), "routing"),
        (dict(rates=[1, 1], routing=[1.0]), "routing"),
        (dict(rates=[1, 1], concurrency=0), "concurrency"),
        (dict(rates=[1, 1], concurrency=2.5), "concurrency"),
        (dict(rates=[1, 1], downlink_rates=[1, 2, 3]), "downlink_rates"),
        (dict(rates=[1, 1], server_rate=-3), "server_rate"),
        (dict(rates=[1, 1], service="lognormal:cv=-1"), "cv"),
        (dict(rates=[1, 1], service="triangular"), "service"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValidationError) as e:
        System.from_rates(**kwargs)
    assert field in e.value.field or field in str(e.value)


def test_routing_tolerance_and_normalisation():
    s = System.from_rates([1, 1, 1], routing=[0.3, 0.3, 0.4])
    assert abs(s.routing.sum() - 1.0) < 1e-15


def test_zero_routing_allowed_but_not_all_zero():
    s = System.from_rates([1, 1], routing=[1.0, 0.0])
    assert list(s.active) == [True, False]
    with pytest.raises(ValidationError):
        System.from_rates([1, 1], routing=[0.0, 0.0])


def test_service_law_gets_client_mean():
    s = System.from_rates([2.0, 0.5], service="lognormal:cv=1.5")
    law = s.clients[1].compute.law
    assert isinstance(law, LogNormal) and law.cv == 1.5 and law.mean == pytest.approx(2.0)


FLAT_TOML = """
rates = [1.0, 1.0, 0.1]
routing = [0.3, 0.3, 0.4]
concurrency = 5
"""

STRUCT_TOML = """
concurrency = 4
routing = [0.5, 0.5]
server = { rate = 20.0 }

[[clients]]
name = "phone"
rate = 1.0
downlink = { rate = 5.0, discipline = "delay" }
uplink = 2.0

[[clients]]
rate = 0.5
service = "gamma:shape=2"
"""


def test_load_all_formats(tmp_path):
    (tmp_path / "s.toml").write_text(FLAT_TOML)
    (tmp_path / "s.json").write_text(json.dumps({"rates": [1, 1, 0.1], "routing": [0.3, 0.3, 0.4], "concurrency": 5}))
    (tmp_path / "s.yaml").write_text("rates: [1, 1, 0.1]\nrouting: [0.3, 0.3, 0.4]\nconcurrency: 5\n")
    systems = [load_system(tmp_path / f"s.{ext}") for ext in ("toml", "json", "yaml")]
    for s in systems:
        np.testing.assert_allclose(s.rates, [1, 1, 0.1])
        np.testing.assert_allclose(s.routing, [0.3, 0.3, 0.4])
        assert s.concurrency == 5


def test_structured_layout_roundtrip(tmp_path):
    (tmp_path / "m.toml").write_text(STRUCT_TOML)
    s = load_system(tmp_path / "m.toml")
    assert s.is_multistage and s.server.rate == 20.0
    assert s.clients[0].downlink.discipline == "delay" and s.clients[0].uplink.rate == 2.0
    assert s.clients[1].compute.law.name == "gamma" and s.clients[1].rate == pytest.approx(0.5)
    again = System.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_allclose(again.rates, s.rates)
    assert again.clients[1].compute.law.to_dict() == s.clients[1].compute.law.to_dict()
    assert again.server.rate == s.server.rate and again.concurrency == 4


@pytest.mark.parametrize(
    "text, field",
    [
        ("rates = [1, 1]\nbogus = 3\n", "system"),
        ("concurrency = 3\n", "rates"),
        ("rates = [1, 'a']\n", "rates[1]"),
        ("[[clients]]\nrate = 1\ncolour = 'red'\n", "clients[0]"),
        ("[[clients]]\nrate = 1\ndownlink = { rate = 1, discipline = 'lifo' }\n", "clients[0].downlink.discipline"),
        ("rates = [1, 1\n", "file"),
    ],
)
def test_bad_files(tmp_path, text, field):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValidationError) as e:
        load_system(f)
    assert e.value.field.startswith(field)


def test_unknown_extension(tmp_path):
    f = tmp_path / "s.ini"
    f.write_text("x")
    with pytest.raises(ValidationError, match="extension"):
        load_system(f)


def test_stage_constructor_and_laws():
    st = Stage.exponential(4.0, "delay")
    assert st.rate == 4.0 and st.discipline == "delay" and isinstance(st.law, Exponential)
    with pytest.raises(ValidationError):
        Stage(Exponential(1.0), "lifo")
    with pytest.raises(ValidationError, match="shape"):
        law_from_spec("pareto:shape=0.5")
    with pytest.raises(ValidationError, match="unknown parameter"):
        law_from_spec("weibull:k=2")


def test_empirical_file_resolves_relative_to_the_system_file(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "t.csv").write_text("seconds\n1.0\n2.0\n3.0\n")
    (sub / "sys.toml").write_text('[[clients]]\nrate = 1.0\n[[clients]]\n'
                                  'service = { law = "empirical", file = "t.csv", column = "seconds" }\n')
    monkeypatch.chdir(tmp_path)  # the CSV is not in the working directory
    s = load_system("sub/sys.toml")
    assert s.clients[1].compute.mean == pytest.approx(2.0)


def test_bad_empirical_column_does_not_print_the_file(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:topsecret\n1\n")
    f = tmp_path / "sys.yaml"
    f.write_text(f'clients:\n  - service: {{law: empirical, file: "{secret}", column: seconds}}\n')
    with pytest.raises(ValidationError) as e:
        load_system(f)
    assert "topsecret" not in str(e.value) and "seconds" in str(e.value)
    f.write_text('clients:\n  - service: {law: empirical, samples: ["a", 1]}\n')
    with pytest.raises(ValidationError, match=r"samples\[0\]"):
        load_system(f)


@pytest.mark.parametrize("text, field", [
    ("rates = [1, 1]\nuplink_discipline = 'delay'\n", "uplink_discipline"),   # no uplink stage to apply to
    ("rates = [1, 1]\nserver_discipline = 'delay'\n", "server_discipline"),
    ("rates = [1, 1e-320]\n", r"rates\[1\]"),                                   # 1/rate overflows
    ("rates = [1, 1]\nservice = 'exponential:mean=5'\n", "mean"),              # the rate sets the mean
])
def test_system_files_refuse_what_would_be_ignored_or_overflow(tmp_path, text, field):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(ValidationError, match=field):
        load_system(f)
