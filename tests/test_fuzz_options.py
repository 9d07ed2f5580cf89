"""Properties over the options a user types: typed values (`parsing.parse_value`, behind every `--set`,
`--budget` and config file), `KEY=VALUE` pairs, every eraser's and attack's config, eraser config files
(`erase --config`), gate limits (`--max-asr`, `--max-increase`, the spec's [gate] table), baseline files
and the executor options (`--workers`, `--gpus-per-worker`, `--address` …). Each value either parses,
and then prints and parses back to the same value, or is refused with one line naming the option; nothing
else escapes. The CLI properties run `gate`, `erase` and `attack` in-process with fuzzed options."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import tomli_w
from fuzzing import (
    assert_house_rule,
    assert_one_line_error,
    edge_text,
    examples,
    mutate,
    numbers_as_text,
    printable_text,
    run_cli,
    unchanged_on_refusal,
)
from hypothesis import example, given
from hypothesis import strategies as st

from trce_audit import registry
from trce_audit.errors import ConfigError, TrceAuditError
from trce_audit.erasers.config import read_config_file
from trce_audit.execution.options import ExecutorOptions
from trce_audit.gating.check import load_baseline_file
from trce_audit.gating.limits import format_points, parse_asr_limit, parse_fraction, parse_points
from trce_audit.parsing import ValueProblem, parse_value

pytestmark = pytest.mark.fuzz

SCRATCH = Path(tempfile.mkdtemp(prefix="trce-fuzz-options-"))
HINTS = [bool, int, float, str, int | None, float | None, str | None, Literal["all", "corpus"], Literal[1, 2],
         tuple[int, ...], tuple[str, ...], tuple[float, ...], tuple[str, ...] | None]
TYPED = st.one_of(st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), edge_text(12),
                  st.lists(st.one_of(st.integers(), st.floats(), printable_text(0, 5)), max_size=3), st.none(),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
WORDS = st.sampled_from(["true", "False", "yes", "off", "none", "NULL", "", " ", "1,2", "a;b", ",", "all", "corpus", "1", "2.0", "0"])


def _render(value: Any) -> str:
    """A parsed value as a user would write it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return ",".join(_render(item) for item in value)
    return str(value)


def _renders_back(value: Any, hint: Any) -> bool:
    """Whether the lenient syntax can say ``value`` at all: an item with a separator, a blank item or a
    string that reads as a word for none cannot be written back."""
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value:
        return False  # "" reads as none for an optional tuple, as an empty tuple otherwise
    for item in items:
        if isinstance(item, str) and (any(sep in item for sep in ",;") or not item.strip() or item.strip().lower() in ("none", "null")
                                      or item != item.strip() and isinstance(value, tuple)):
            return False
    return True


@examples(1000)
@given(st.sampled_from(HINTS), st.one_of(numbers_as_text(), WORDS, edge_text(16), TYPED), st.booleans(), st.sampled_from([None, 0, 1]))
@example(float, "nan", False, 0)
@example(int, "9" * 5000, False, None)  # past int()'s digit limit
@example(tuple[int, ...], "1,²", False, None)
def test_typed_values_parse_and_print_back_or_are_refused(hint, value, strict, minimum):
    try:
        parsed = parse_value(value, hint, strict=strict, minimum=minimum)
    except ValueProblem as problem:
        assert problem.expected and "\n" not in problem.expected
        return
    if strict or not _renders_back(parsed, hint):
        return
    # printed as a --set value and parsed again: the same value (NaN is not equal to itself)
    again = parse_value(_render(parsed), hint, minimum=minimum)
    assert repr(again) == repr(parsed), (value, parsed, again)


def _assignments() -> st.SearchStrategy[list[str]]:
    pair = st.tuples(st.one_of(st.sampled_from(["lr", "iterations", "steps", "seed", "stages", "vocabulary", "generations", "population",
                                                "every-k", "every_k", "lora_targets", "initializer", "scale_lr", "budget"]),
                               printable_text(1, 8), edge_text(6)),
                     st.sampled_from(["=", "=", "=", "", "==", " = "]),
                     st.one_of(numbers_as_text(), WORDS, edge_text(10))).map("".join)
    return st.lists(pair, max_size=4)


ERASERS = registry.names("eraser")
ATTACKS = registry.names("attack")
# Loaded once: registry.load reads the installed entry points on every call (10 ms), which would be most
# of an example's time.
ERASER_CLASSES = {name: registry.load("eraser", name) for name in ERASERS}
ATTACK_CLASSES = {name: registry.load("attack", name) for name in ATTACKS}


def _finite_numbers(value: Any) -> bool:
    items = value if isinstance(value, (tuple, list)) else (value,)
    return all(math.isfinite(item) for item in items if isinstance(item, float))


@examples(1000)
@given(st.sampled_from(ERASERS), st.sampled_from(["sd", "pocket"]), _assignments())
@example("esd-x", "sd", ["lr=nan"])  # a NaN learning rate passed "lr <= 0" (accepted, trained NaN weights)
@example("esd-x", "pocket", ["iterations=inf"])
@example("uce", "sd", ["erase_scale=1e400"])
def test_eraser_set_values_build_a_config_or_are_refused(eraser, world, items):
    from trce_audit.cli.common import parse_assignments

    cls = ERASER_CLASSES[eraser]
    overrides: dict[str, str] = {}
    try:
        overrides = parse_assignments(items)
        config = cls.make_config(world=world, overrides=overrides)
    except ConfigError as exc:
        assert_one_line_error(exc, names=["--set", "config key", *overrides])
        return
    for name, value in config.as_dict().items():
        assert _finite_numbers(value), (name, value)
    # the config as a run stores it (as_dict), applied again: the same config
    again = cls.make_config(world=world, overrides=config.as_dict())
    assert json.dumps(again.as_dict(), sort_keys=True) == json.dumps(config.as_dict(), sort_keys=True)


@examples(1000)
@given(st.sampled_from(ATTACKS), st.sampled_from(["sd", "pocket"]), _assignments())
@example("p4d-n", "sd", ["iterations=-5"])  # a negative budget (the spec refuses it; --set took it)
@example("unlearndiff", "sd", ["lr=nan"])
def test_attack_set_and_budget_values_build_a_config_or_are_refused(attack, world, items):
    from trce_audit.cli.common import parse_assignments

    cls = ATTACK_CLASSES[attack]
    overrides: dict[str, str] = {}
    try:
        overrides = parse_assignments(items, "--set")
        config = cls.Config.for_world(world).with_overrides(overrides)
    except ConfigError as exc:
        assert_one_line_error(exc, names=["--set", "unknown budget/config key", *overrides])
        return
    budget = dataclasses.asdict(config.budget)
    assert all(isinstance(v, int) and v >= 0 for v in budget.values()), budget
    for name, value in config.as_dict().items():
        assert _finite_numbers(value), (name, value)
    again = cls.Config.for_world(world).with_overrides({**{k: v for k, v in config.as_dict().items() if k != "budget"}, **budget})
    assert again == config


@st.composite
def eraser_config_bytes(draw) -> tuple[str, bytes]:
    eraser = draw(st.sampled_from(ERASERS))
    table = draw(st.dictionaries(st.sampled_from(["lr", "iterations", "seed", "stages", "other"]), TYPED, max_size=3))
    text = tomli_w.dumps({eraser: table} if draw(st.booleans()) else table) if None not in table.values() else "x = 1\n"
    return eraser, mutate(draw, text.encode("utf-8"))


@examples(1000)
@given(eraser_config_bytes())
@example(("esd-x", b"lr = nan\n"))
@example(("esd-x", b"a = " + b"[" * 5000))  # nested past the TOML parser's recursion limit
@example(("esd-x", b"\xef\xbb\xbfiterations = 5\n"))  # a BOM (Windows editors)
def test_eraser_config_files_build_a_config_or_are_refused(case):
    eraser, raw = case
    cls = ERASER_CLASSES[eraser]
    path = SCRATCH / "eraser.toml"
    path.write_bytes(raw)
    try:
        read_config_file(path)
        config = cls.make_config(world="pocket", config_file=path)
    except ConfigError as exc:
        assert_one_line_error(exc, names=[str(path), "config key", "unknown"])
        return
    for name, value in config.as_dict().items():
        assert _finite_numbers(value), (name, value)


@examples(1000)
@given(st.one_of(numbers_as_text(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 500)))
@example("nan")
@example("5%")
@example(0.1 + 0.2)
def test_gate_fractions_and_points_parse_and_print_back_or_are_refused(value):
    try:
        fraction = parse_fraction(value, "--max-asr x")
    except ConfigError as exc:
        assert_one_line_error(exc, names=["--max-asr"])
    else:
        assert 0.0 <= fraction <= 1.0
        assert parse_fraction(repr(fraction), "--max-asr x") == fraction  # as the audit run stores it
    try:
        points = parse_points(value)
    except ConfigError as exc:
        assert_one_line_error(exc, names=["--max-increase"])
    else:
        assert 0.0 <= points <= 1.0
        assert parse_points(format_points(points)) == points  # as the spec renders it (GateSpec.as_dict)


@examples(1000)
@given(st.tuples(st.one_of(st.just("*"), printable_text(0, 8), edge_text(8)), st.sampled_from(["", "@", "@", " @ "]),
                 st.one_of(st.just(""), printable_text(0, 6)), st.sampled_from(["=", "=", "", "=="]),
                 st.one_of(numbers_as_text(), st.sampled_from(["5%", "0.05", "100%"]))).map("".join))
@example("a@=5%")
@example("@b=5%")
def test_max_asr_options_parse_and_print_back_or_are_refused(item):
    try:
        limit = parse_asr_limit(item)
    except ConfigError as exc:
        assert_one_line_error(exc, names=["--max-asr"])
        return
    assert limit.prompt_set and limit.prompt_set == limit.prompt_set.strip() and 0.0 <= limit.max_asr <= 1.0
    again = parse_asr_limit(f"{limit.target}={limit.max_asr!r}")
    assert again == limit


BASELINE_ROW = st.fixed_dictionaries({}, optional={
    "model": st.one_of(printable_text(1, 6), st.integers(), st.lists(st.integers(), max_size=2), st.none()),
    "prompt_set": st.one_of(printable_text(1, 6), st.none(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)),
    "attack": st.one_of(st.none(), printable_text(1, 6)),
    "gated_asr": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none(), printable_text(0, 5), st.lists(st.integers(), max_size=1),
                           st.booleans(), st.integers(-3, 3)),
})


@st.composite
def baseline_bytes(draw) -> bytes:
    rows = draw(st.lists(st.one_of(BASELINE_ROW, BASELINE_ROW, st.integers(), st.text(max_size=3)), max_size=4))
    document = draw(st.sampled_from(["rows", "audit", "list", "other"]))
    value: Any = {"rows": rows} if document == "rows" else {"audit": {"rows": rows}} if document == "audit" else rows if document == "list" else draw(TYPED)
    return mutate(draw, json.dumps(value, allow_nan=True).encode())


@examples(1000)
@given(baseline_bytes())
@example(b'{"rows": [{"model": "m", "prompt_set": "s", "attack": null, "gated_asr": "high"}]}')
@example(b'{"rows": [{"model": ["m"], "prompt_set": "s", "attack": null, "gated_asr": 0.1}]}')
@example(b'{"rows": [{"model": "m", "prompt_set": "s", "attack": null, "gated_asr": NaN}]}')
@example(b"[" * 5000)
def test_baseline_files_load_or_are_refused_in_one_line(data):
    path = SCRATCH / "baseline.json"
    path.write_bytes(data)
    try:
        rows = load_baseline_file(path)
    except TrceAuditError as exc:
        assert_one_line_error(exc, names=[str(path)])
        return
    for row in rows:
        if row.get("gated_asr") is not None:
            assert isinstance(row["gated_asr"], float) and 0.0 <= row["gated_asr"] <= 1.0, row
        for key in ("model", "prompt_set", "attack"):
            assert row.get(key) is None or isinstance(row[key], str), row


ADDRESSES = st.one_of(
    st.sampled_from(["auto", "ray://localhost:10001", "127.0.0.1:1", "localhost:0", ":6379", "host:", "host:99999",
                     "host:²", "ray://user:s3cret@head:10001", "[::1]:6379", "a" * 300 + ":6379", "x\x00y:1", "..:1"]),
    st.tuples(edge_text(10), st.sampled_from([":", "://", ""]), numbers_as_text()).map("".join),
)


@examples(1000)
@given(st.sampled_from(["local", "ray", "dask", "", "Ray"]), st.one_of(st.none(), ADDRESSES), st.one_of(st.none(), st.integers(-3, 2**64)),
       st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), st.integers(-3, 2**64), st.integers(-3, 20))
@example("ray", None, None, float("nan"), 1, 2)  # NaN GPUs per worker (was accepted, then int(NaN) failed: exit 3)
@example("ray", "127.0.0.1:99999", None, None, 1, 2)  # a port past 65535 (was accepted and tried)
@example("ray", "host:²", None, None, 1, 2)  # a superscript digit passes str.isdigit() (was exit 3: ValueError from int())
@example("ray", "a" * 300 + ":6379", None, None, 1, 2)  # a host label over 63 characters (was exit 3: UnicodeError)
def test_executor_options_are_checked_before_anything_runs(kind, address, workers, gpus, cpus, retries):
    from trce_audit.execution.ray_pool import check_address

    try:
        options = ExecutorOptions(kind, address, workers, gpus, cpus, retries).validate()
        if options.address:
            check_address(options.address, connect=False)
    except ConfigError as exc:
        assert_one_line_error(exc, names=["--executor", "--address", "--workers", "--gpus-per-worker", "--cpus-per-worker", "--max-retries"])
        assert "s3cret" not in str(exc)
        return
    assert options.kind in ("local", "ray")
    assert options.gpus_per_worker is None or math.isfinite(options.gpus_per_worker)


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    from test_report_store import build_audit

    from trce_audit.store import Store

    root = tmp_path_factory.mktemp("fuzz-gate") / "ws"
    (root / "images").mkdir(parents=True)
    store = Store(f"sqlite:///{root / 'trce-audit.sqlite'}")
    build_audit(store, root / "images")
    store.close()
    return root


@st.composite
def gate_arguments(draw) -> list[str]:
    args: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.one_of(st.sampled_from(["*", "pocket-explicit", "pocket-explicit@trce", "pocket-synonym@esd", "nope"]), edge_text(6)))
        args += ["--max-asr", f"{target}={draw(st.one_of(st.sampled_from(['5%', '0.5', '100%']), numbers_as_text()))}"]
    if draw(st.booleans()):
        args += ["--max-increase", draw(st.one_of(st.sampled_from(["2", "2pp", "0.5%"]), numbers_as_text()))]
    if draw(st.booleans()):
        args += ["--baseline", draw(st.one_of(st.sampled_from(["1", "999", str(SCRATCH / "gate-baseline.json")]), edge_text(6)))]
    for option, good in (("--bound", ["value", "upper"]), ("--seed-aggregate", ["worst", "mean"])):
        if draw(st.booleans()):
            args += [option, draw(st.one_of(st.sampled_from(good), edge_text(5)))]
    if draw(st.booleans()):
        args += ["--audit", draw(st.one_of(st.sampled_from(["1", "2", "0", "-1", "99999999999999999999"]), numbers_as_text()))]
    if draw(st.booleans()):
        args += ["--junit", str(SCRATCH / "junit" / "gate.xml")]
    return args


@examples(40)
@given(gate_arguments(), baseline_bytes())
@example(["--audit", "99999999999999999999", "--max-asr", "*=5%"], b"{}")  # past SQLite's 64-bit integers (was exit 3)
@example(["--baseline", str(SCRATCH / "gate-baseline.json"), "--max-increase", "2"], b'{"rows": [{"model": "pocket", "prompt_set": "pocket-explicit", "attack": null, "gated_asr": "x"}]}')
def test_gate_options_keep_the_house_rule(audited, args, baseline):
    (SCRATCH / "gate-baseline.json").write_bytes(baseline)
    url = f"sqlite:///{audited / 'trce-audit.sqlite'}"
    with unchanged_on_refusal(audited, url) as check:
        result = run_cli("--workspace", str(audited), "gate", *args)
        check(result)
    assert_house_rule(result, ok=(0, 1), names=["--", "limit", "baseline", "audit", "run ", "no limits", "bound", "seed"])


class Reached(Exception):
    """Raised where a valid command would store its first run: its options passed every check before it."""


@pytest.fixture(scope="module")
def stop_at_first_write(audited):
    from trce_audit.store import Store

    patch = pytest.MonkeyPatch()

    def start_run(self, *args, **kwargs):
        raise Reached("the run would start")

    patch.setattr(Store, "start_run", start_run)
    yield
    patch.undo()


@examples(25)
@given(st.sampled_from(["erase esd-x -c cross", "erase uce -c cross", "attack p4d-n -c cross -p pocket-explicit",
                        "attack ring-a-bell -c cross -p pocket-explicit"]),
       _assignments(), st.lists(st.sampled_from(["--set", "--budget"]), min_size=4, max_size=4))
@example("attack p4d-n -c cross -p pocket-explicit", ["iterations=-1"], ["--set"] * 4)
@example("erase esd-x -c cross", ["lr=nan"], ["--set"] * 4)
def test_set_options_keep_the_house_rule(stop_at_first_write, audited, command, items, flags):
    words = command.split()
    if words[0] == "erase":
        flags = ["--set"] * 4  # --budget is the attack's old name for --set
    extra = [part for item, flag in zip(items, flags) for part in (flag, item)]
    url = f"sqlite:///{audited / 'trce-audit.sqlite'}"
    with unchanged_on_refusal(audited, url) as check:
        result = run_cli("--workspace", str(audited), *words, "-m", "pocket", "--device", "cpu", *extra)
        check(result)
    if "Reached" in result.err:
        return
    keys = [item.partition("=")[0].strip() for item in items]
    assert_house_rule(result, names=["--set", "--budget", "config key", *(key for key in keys if key)])
