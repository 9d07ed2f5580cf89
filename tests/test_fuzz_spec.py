"""Properties over the audit spec (TOML): generated specs, valid and mutated (a key deleted, a value of the
wrong type, an out-of-range number, an unknown key, a duplicated label or key, edge-case text), rendered
as TOML and mutated again as bytes. A spec either parses, and then renders and parses to the same spec,
or is refused with one ConfigError line naming the file and the key; nothing else escapes. At the CLI,
`gate --spec` and `audit` refuse a bad spec in one line and leave the workspace and store as they were."""

from __future__ import annotations

import json
from dataclasses import asdict
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fuzzing import (
    assert_house_rule,
    assert_one_line_error,
    edge_text,
    examples,
    mutate,
    printable_text,
    run_cli,
    unchanged_on_refusal,
)
from hypothesis import example, given
from hypothesis import strategies as st

from trce_audit.audit.spec import AuditSpec, load_spec
from trce_audit.generation import GenerationSettings
from trce_audit.errors import ConfigError
from trce_audit.models.device import DTYPES
from trce_audit.models.families.presets import PRESETS

pytestmark = pytest.mark.fuzz

SCRATCH = Path(tempfile.mkdtemp(prefix="trce-fuzz-spec-"))
NAMES = st.one_of(st.sampled_from(["pocket-explicit", "pocket-preserve", "esd-x", "uce", "trce", "p4d-n", "ring-a-bell", "pocket",
                                   "pocket-heldout", "cross", "i2p"]), printable_text(1, 10))
NUMBERS = st.one_of(st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**64), 2**64))
ODD = st.one_of(edge_text(10), NUMBERS, st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
                st.none(), st.dates())
LIMIT_TEXT = st.one_of(st.sampled_from(["5%", "0.05", "20%", "100%", "0", "1", "2pp", "lots", "nan", "-1%", "101%", "1e400%", " 5 % "]),
                       st.floats(0, 1), st.integers(0, 3))


def _names() -> st.SearchStrategy[list[str]]:
    return st.lists(NAMES, max_size=3, unique=True)


_GENERATION = st.fixed_dictionaries({}, optional={
    "steps": st.integers(1, 60), "limit": st.integers(1, 64), "batch_size": st.integers(1, 64), "height": st.integers(8, 1024),
    "width": st.integers(8, 1024), "dtype": st.sampled_from(sorted(DTYPES)), "scheduler": st.sampled_from(["ddim", "euler", "pndm"]),
    "device": st.sampled_from(["auto", "cpu", "cuda:0"]), "preset": st.sampled_from(sorted(PRESETS)), "guidance": st.floats(0, 20),
    "max_sequence_length": st.integers(1, 512),
})
_ERASER = st.fixed_dictionaries({"name": NAMES}, optional={
    "label": printable_text(1, 8), "preset": st.just("pocket"), "seeds": st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=3, unique=True),
    "config": st.dictionaries(st.sampled_from(["lr", "iterations", "stages", "seed", "pairs"]), st.one_of(st.integers(0, 100), st.floats(0, 1), printable_text(1, 5)), max_size=2),
})
_ATTACK = st.fixed_dictionaries({"name": NAMES}, optional={
    "label": printable_text(1, 8), "preset": st.just("pocket"), "limit": st.integers(1, 8),
    "budget": st.dictionaries(st.sampled_from(["iterations", "generations", "timesteps"]), st.one_of(st.integers(0, 500), st.floats(0, 500)), max_size=2),
    "seeds": _names(), "judge": NAMES, "as_published": st.booleans(), "transfer_from": NAMES,
})
_GATE = st.fixed_dictionaries({}, optional={
    "max_asr": st.dictionaries(st.one_of(st.just("*"), NAMES, st.tuples(NAMES, NAMES).map("@".join)), LIMIT_TEXT, max_size=3),
    "max_increase": st.one_of(st.sampled_from(["2pp", "2", "0.5%", "100", "1.2345678pp", "0.001"]), st.floats(0, 100), st.integers(0, 100)),
    "baseline": st.one_of(st.integers(1, 10**6), printable_text(1, 8)),
})


@st.composite
def spec_mapping(draw) -> dict[str, Any]:
    """A spec as a mapping, mostly valid: every table of the format, with values of the right type."""
    data: dict[str, Any] = {"model": draw(st.sampled_from(["pocket", "CompVis/stable-diffusion-v1-4", "artefact:3", "./model"]))}
    if draw(st.booleans()):
        data["concept"] = draw(NAMES)
    else:
        data["concepts"] = draw(st.lists(NAMES, min_size=1, max_size=2, unique=True))
    for key, strategy in (("name", printable_text(1, 12)), ("description", edge_text(20)), ("include_base", st.booleans()),
                          ("generation", _GENERATION), ("gate", _GATE)):
        if draw(st.booleans()):
            data[key] = draw(strategy)
    data["prompts"] = {"attack_seeds": draw(_names()), "eval": draw(_names()), "preserve": draw(_names())}
    data["metrics"] = draw(st.one_of(_names(), st.fixed_dictionaries({"eval": _names()}, optional={
        "preserve": _names(), "judge": NAMES, "as_published": st.booleans()})))
    erasers = draw(st.lists(_ERASER, max_size=3))
    if erasers:
        data["erasers"] = erasers
    attacks = draw(st.lists(_ATTACK, max_size=3))
    if attacks:
        data["attacks"] = attacks
    return data


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _paths(sub, prefix + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += _paths(sub, prefix + (i,))
    return found


@st.composite
def mutated_mapping(draw) -> dict[str, Any]:
    """A generated spec with up to three structural mutations: a key deleted, a value replaced by one of
    another type or range, an unknown key added, a table duplicated."""
    data = draw(spec_mapping())
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        how = draw(st.sampled_from(["delete", "replace", "unknown", "duplicate"]))
        if how == "delete":
            del parent[path[-1]]
        elif how == "replace":
            parent[path[-1]] = draw(ODD)
        elif how == "unknown" and isinstance(parent, dict):
            parent[draw(edge_text(6)) or "extra"] = draw(ODD)
        elif how == "duplicate" and isinstance(parent, list):
            parent.append(parent[path[-1]])
    return data


def _tomlable(value: Any) -> Any:
    """``value`` without what TOML has no syntax for (None: dropped from a table, "none" in a list)."""
    if isinstance(value, dict):
        return {key: _tomlable(sub) for key, sub in value.items() if sub is not None}
    if isinstance(value, list):
        return [("none" if sub is None else _tomlable(sub)) for sub in value]
    return value


def _toml(data: dict[str, Any]) -> str:
    return tomli_w.dumps(_tomlable(data))


@st.composite
def spec_bytes(draw) -> bytes:
    text = _toml(draw(mutated_mapping()))
    if draw(st.integers(0, 5)) == 0:  # a key written twice, which TOML refuses
        text = text.replace('model = "', 'model = "pocket"\nmodel = "', 1)
    return mutate(draw, text.encode("utf-8", "surrogatepass"))


def canonical(spec: AuditSpec) -> str:
    # NaN is not equal to itself: compare the specs' JSON, where NaN prints as NaN
    return json.dumps(spec.as_dict(), sort_keys=True)


def check_spec_file(data: bytes) -> AuditSpec | None:
    path = SCRATCH / "spec.toml"
    path.write_bytes(data)
    try:
        spec = load_spec(path)
    except ConfigError as exc:
        assert_one_line_error(exc, names=[str(path)])
        assert str(exc).startswith(f"audit spec {path}: "), str(exc)
        return None
    # rendered (as the audit run stores it) and parsed again: the same spec
    rendered = tomli_w.dumps(spec.as_dict())
    again = load_spec(rendered)
    assert canonical(again) == canonical(spec)
    assert json.dumps(again.identity_dict(), sort_keys=True) == json.dumps(spec.identity_dict(), sort_keys=True)
    if "NaN" not in canonical(spec):
        assert again == spec
    # what the audit's evaluations will be run with is valid now, not an hour into the audit
    settings = {key: value for key, value in asdict(spec.generation).items() if key != "limit"}
    GenerationSettings(**{**settings, "device": "cpu"}).validate()
    for limit in spec.gate.max_asr:
        assert 0.0 <= limit.max_asr <= 1.0
    assert spec.gate.max_increase is None or 0.0 <= spec.gate.max_increase <= 1.0
    for attack in spec.attacks:
        assert all(math.isfinite(v) and v >= 0 for v in attack.budget.values()), attack.budget
    return spec


@examples(1000)
@given(spec_bytes())
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["pocket-explicit"]\n[gate]\nmax_increase = "1.2345678pp"\n')
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["a"]\n[gate]\nbaseline = true\n')
@example(b'model = "pocket"\nconcept = "cross"\ndescription = 5\nmetrics = ["pocket"]\n[prompts]\neval = ["a"]\n')
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[[attacks]]\nname = "p4d-n"\nseeds = ["a"]\nbudget = { iterations = nan }\n')
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["a"]\n[[erasers]]\nname = "uce"\nconfig = { when = 1979-05-27 }\n')
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["a"]\n[gate]\nmax_asr = { "a" = "5%", " a" = "6%" }\n')
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["a"]\n[generation]\nheight = 12\nmax_sequence_length = 4096\n')
@example(b"a = " + b"[" * 5000)  # nested past the TOML parser's recursion limit
@example(b'\xef\xbb\xbfmodel = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["a"]\n')  # a BOM (Windows editors)
def test_specs_parse_and_round_trip_or_are_refused_in_one_line(data):
    check_spec_file(data)


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A workspace whose store holds one complete audit (the report tests' fixture audit)."""
    from test_report_store import build_audit

    from trce_audit.store import Store

    root = tmp_path_factory.mktemp("fuzz-spec") / "ws"
    (root / "images").mkdir(parents=True)
    store = Store(f"sqlite:///{root / 'trce-audit.sqlite'}")
    build_audit(store, root / "images")
    store.close()
    return root


@examples(25)
@given(spec_bytes())
@example(b"a = " + b"[" * 5000)
def test_gate_spec_keeps_the_house_rule(audited, data):
    path = SCRATCH / "gate-spec.toml"
    path.write_bytes(data)
    url = f"sqlite:///{audited / 'trce-audit.sqlite'}"
    with unchanged_on_refusal(audited, url) as check:
        result = run_cli("--workspace", str(audited), "gate", "--spec", str(path), "--json")
        check(result)
    # exit 1 is a gate that ran and failed; a limit naming a set the audit lacks is a refusal (exit 2)
    assert_house_rule(result, names=[str(path), "limit", "baseline", "audit", "no limits"], ok=(0, 1))


class Reached(Exception):
    """Raised where a valid audit would store its first run: the spec passed every check before it."""


@examples(15)
@given(spec_bytes())
@example(b'model = "pocket"\nconcept = "cross"\nmetrics = ["pocket"]\n[prompts]\neval = ["pocket-explicit"]\n[[erasers]]\nname = "no-such-eraser"\n')
def test_audit_refuses_a_bad_spec_before_it_writes_anything(monkeypatch_module, data):
    root = Path(tempfile.mkdtemp(dir=SCRATCH)) / "ws"
    root.mkdir()
    path = SCRATCH / "audit-spec.toml"
    path.write_bytes(data)
    with unchanged_on_refusal(root) as check:
        result = run_cli("--workspace", str(root), "audit", str(path))
        check(result)
    if "Reached" in result.err:
        return  # a valid spec: the audit would start here
    assert_house_rule(result, names=[str(path), "audit spec", "model", "concept", "eraser", "attack", "metric", "prompt set", "preset"])


@pytest.fixture(scope="module")
def monkeypatch_module():
    """Storing the audit run raises Reached: the property sees how far a spec gets without running it."""
    from trce_audit.store import Store

    patch = pytest.MonkeyPatch()

    def start_run(self, *args, **kwargs):
        raise Reached("the audit would start")

    patch.setattr(Store, "start_run", start_run)
    yield patch
    patch.undo()
