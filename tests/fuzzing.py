"""What the property suite (tests/test_fuzz_*.py, marker ``fuzz``) shares: its Hypothesis profiles, the
strategies that mix valid input with near-valid mutations and random bytes, and the checks of the house
rule every property makes (one ``error:`` line naming the input and exit 2, never exit 3 or a traceback,
nothing stored or written on exit 2, no secret in any output).

Profiles (registered by conftest.py, before Hypothesis reads ``--hypothesis-profile``):

- ``repeatable`` (the default): ``derandomize=True`` and no example database, so every run of the suite
  tries the same examples in the same order and CI is repeatable; a failure found once is pinned with
  ``@example`` in the test, not in a local database.
- ``deep`` (``pytest -m fuzz --hypothesis-profile=deep``): 20x every property's examples, random
  (not derandomized) so that each deep run explores new input; still no database.

A property names its example count for the default profile through ``examples(n)``; under ``deep`` it
runs ``20 * n``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

BASE_EXAMPLES = 100
DEEP_FACTOR = 20
_COMMON = dict(
    deadline=None,  # a shared 2-core machine: timing is not what these properties test
    database=None,
    print_blob=True,
    # examples are built from files and a store kept across examples, never from function-scoped state
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much],
)


def register_profiles() -> None:
    settings.register_profile("repeatable", max_examples=BASE_EXAMPLES, derandomize=True, **_COMMON)
    settings.register_profile("deep", max_examples=BASE_EXAMPLES * DEEP_FACTOR, derandomize=False, **_COMMON)
    settings.load_profile("repeatable")


def examples(n: int) -> settings:
    """Settings for a property that runs ``n`` examples under the default profile (``20 * n`` under deep)."""
    factor = settings.default.max_examples / BASE_EXAMPLES
    return settings(max_examples=max(1, round(n * factor)))


# ------------------------------------------------------------------------------------------ strategies
# Text that has broken parsers elsewhere: control characters (NUL, ESC, DEL, C1), line and paragraph
# separators, bidi overrides, a BOM, zero-width and combining characters, non-BMP code points, quotes,
# and markup of every language the tool writes (CSV, TOML, JSON, HTML, Markdown, Rich).
EDGE_CHARACTERS = (
    "\x00", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f", "\xa0",
    "\u2028", "\u2029", "\u200b", "\u200d", "\u202e", "\u2066", "\ufeff", "\ufffd", "\u0301", "\U0001f600",
    "\U0010ffff", "²", "٣", "\uff11", '"', "'", "`", ",", ";", "=", "|", "\\", "#", "[", "]", "{", "}", "<", ">",
    "&", "*", "_", "%", "@", ":", "/", "~", "$",
)
HOSTILE_SNIPPETS = (
    "<script>document.title='pwned'</script>", "</td></tr></table><h1>broken</h1>", "<img src=x onerror=alert(1)>",
    "\"><svg onload=alert(1)>", "' onmouseover='alert(1)", "javascript:alert(1)", "<!--", "]]>", "<style>body{display:none}",
    "| a | b |", "\n|---|\n", "**bold**", "[link](javascript:alert(1))", "`code`", "[bold]rich[/bold]", "{{ 7*7 }}",
    "{% raw %}", "${HOME}", "%s%n", "\u202egnp.exe", "a" * 300, "&amp;&lt;", "&#x3C;script&#x3E;",
)


_ALPHABET = st.one_of(st.sampled_from(EDGE_CHARACTERS), st.characters(exclude_categories=("Cs",)))


@functools.lru_cache(maxsize=None)
def edge_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Unicode text weighted towards the characters above, now and then with one of the snippets inside
    (one text strategy over a mixed alphabet: lists of pieces cost ten times as much to draw)."""
    half = max(1, max_size // 2)
    snippet = st.one_of(st.just(""), st.sampled_from(HOSTILE_SNIPPETS))
    return st.tuples(st.text(_ALPHABET, max_size=half), snippet, st.text(_ALPHABET, max_size=half)).map("".join)


@functools.lru_cache(maxsize=None)
def printable_text(min_size: int = 1, max_size: int = 30) -> st.SearchStrategy[str]:
    """Text a parser must accept: no control characters (C0, C1, DEL, line or paragraph separators)."""
    chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"))
    return st.text(chars, min_size=min_size, max_size=max_size)


@functools.lru_cache(maxsize=None)
def numbers_as_text() -> st.SearchStrategy[str]:
    """Numbers as a user writes them, valid or not: ints, floats, exponents, nan/inf, huge, signs, words."""
    return st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["", " ", "1e400", "-0", "+5", "0x10", "1_000", "5%", "5 %", "%", "2pp", "pp", "nan%", "inf",
                         "-inf%", "1e-400", "9" * 5000, "٣", "²", "\uff15", "5\x00", "0.05\n", "true", "none", "1,5"]),
        edge_text(12),
    )


_HOW = st.sampled_from(["as is", "as is", "truncate", "delete", "insert", "replace", "utf16", "latin1", "bom", "random"])
_BYTES = st.one_of(st.binary(min_size=1, max_size=3), st.sampled_from([b"\x00", b"\xff", b"\n", b'"', b",", b"\r", b"[", b"="]))
_RANDOM = st.binary(max_size=200)


def mutate(draw: Any, data: bytes) -> bytes:
    """``data`` as is, or mutated: truncated, a byte deleted, inserted or replaced, re-encoded as UTF-16 or
    Latin-1, a BOM prepended; or random bytes instead (for use inside an ``st.composite``)."""
    how = draw(_HOW)
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how in ("delete", "insert", "replace") and data:
        at = draw(st.integers(0, len(data) - 1))
        if how == "delete":
            return data[:at] + data[at + 1:]
        return data[:at] + draw(_BYTES) + data[at + (how == "replace"):]
    if how == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if how == "latin1":
        return data.decode("utf-8", "replace").encode("latin-1", "replace")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "random":
        return draw(_RANDOM)
    return data


def mutated(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Bytes from ``valid``, passed through ``mutate``."""
    return st.composite(lambda draw: mutate(draw, draw(valid)))()


# ------------------------------------------------------------------------------------------ the CLI
@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@contextlib.contextmanager
def offline() -> Iterable[None]:
    """No name but this machine's resolves: a fuzzed URL or hub id fails at once instead of waiting on a
    resolver (the suite never reaches the network)."""
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if host not in _LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (the property suite is offline)")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = local_only
    try:
        yield
    finally:
        socket.getaddrinfo = real


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``trce-audit ARGS`` in this process, through ``main()`` as the console script calls it, offline (a
    hub id or URL in a fuzzed input must fail at once, not wait on the network)."""
    from trce_audit.cli import main

    env = {"HF_HUB_OFFLINE": "1", **(env or {})}
    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), offline():
            code = main(list(args))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Result(code, out.getvalue(), err.getvalue())


def assert_house_rule(result: Result, *, names: Sequence[str] = (), ok: Iterable[int] = (0,)) -> None:
    """Success (an exit code in ``ok``) or exit 2 with exactly one ``error:`` line on stderr that names
    one of ``names`` (the file or option); never exit 3, never a traceback."""
    assert "Traceback" not in result.text, result.text[-3000:]
    assert result.code in (*ok, 2), f"exit {result.code}: {result.err[-2000:]}"
    if result.code == 2:
        lines = result.err.splitlines()
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and result.err.endswith("\n"), result.err
        assert len(lines) == 1 or all(line.startswith("warning: ") for line in lines if line is not errors[0]), result.err
        if names:
            assert any(name in errors[0] for name in names), f"{errors[0]!r} names none of {names!r}"


def assert_one_line_error(exc: BaseException, *, names: Sequence[str] = ()) -> None:
    """A function-level refusal: a one-line message (what the CLI prints) naming one of ``names``."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message, repr(message)
    if names:
        assert any(name in message for name in names), f"{message!r} names none of {names!r}"


# ------------------------------------------------------------------------------------------ digests
def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path, and every folder (``None``): what "the
    workspace is unchanged" means. An absent folder digests to {}."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    found: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return found


def rows_digest(url: str) -> str | None:
    """sha256 of every row of every table in a fixed order; None when there is no store there. SQLite is
    read through an immutable read-only handle, so the digest itself writes nothing."""
    import sqlalchemy as sa

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            return None
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            digest = hashlib.sha256()
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            for table in tables:
                for row in connection.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                    digest.update(repr((table, row)).encode())
            return digest.hexdigest()
        finally:
            connection.close()
    engine = sa.create_engine(url)
    try:
        digest = hashlib.sha256()
        with engine.connect() as connection:
            for table in sorted(sa.inspect(connection).get_table_names()):
                for row in connection.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY 1')).all():
                    digest.update(repr((table, tuple(row))).encode())
        return digest.hexdigest()
    finally:
        engine.dispose()


@contextlib.contextmanager
def unchanged_on_refusal(workspace: Path, url: str | None = None) -> Iterable[Callable[[Result], None]]:
    """Digest the workspace tree and the store's rows; ``check(result)`` afterwards asserts that an exit 2
    left both as they were."""
    before = (tree_digest(workspace), rows_digest(url) if url else None)

    def check(result: Result) -> None:
        if result.code == 2:
            after = (tree_digest(workspace), rows_digest(url) if url else None)
            assert after[0] == before[0], f"exit 2 changed the workspace: {sorted(set(after[0]) ^ set(before[0])) or 'file bytes'}"
            assert after[1] == before[1], "exit 2 changed the store's rows"

    yield check


def assert_no_secret(secrets: Iterable[str], *texts: str) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"secret {secret!r} appears in {text[:400]!r}"
