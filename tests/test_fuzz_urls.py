"""Properties over the addresses the tool takes: database URLs (`--db`, TRCE_AUDIT_DB), data download URLs
(`data fetch --url/--base-url`, TRCE_AUDIT_DATA_URL) and every store URL shape a read-only command may
be pointed at. No password or token passed in appears in any output, error, log line or stored row; a
read-only command creates and changes nothing whatever the URL names; a refusal is one line, exit 2."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from fuzzing import (
    assert_house_rule,
    assert_no_secret,
    assert_one_line_error,
    edge_text,
    examples,
    printable_text,
    rows_digest,
    run_cli,
    tree_digest,
)
from hypothesis import example, given
from hypothesis import strategies as st
from pg_databases import drop_database

from trce_audit.errors import StoreError, mask_url_secrets
from trce_audit.records import PromptRow
from trce_audit.store import Store
from trce_audit.store.engine import make_engine, mask_url

pytestmark = pytest.mark.fuzz

SCRATCH = Path(tempfile.mkdtemp(prefix="trce-fuzz-urls-"))
# A secret is marked at both ends so that no other part of a generated URL can spell it by chance.
SECRET = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/% "),
                 min_size=1, max_size=12).map(lambda s: f"Zq{s}Q9")
DIALECTS = st.sampled_from(["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql", "sqlite", "oracle+cx", "nosuch", "http", "ray"])
HOSTS = st.one_of(st.sampled_from(["127.0.0.1", "localhost", "db.example", "[::1]", "h", ""]), printable_text(1, 8))


def _secret_forms(secret: str) -> list[str]:
    """The secret as typed and as percent-encoded (what a URL renderer might write back)."""
    return [secret, quote(secret, safe=""), quote(secret)]


@st.composite
def secret_url(draw) -> tuple[str, str]:
    """(a URL holding ``secret``, the secret): in the user part (raw or percent-encoded, an '@' inside
    included) or in a query parameter named like a credential."""
    secret = draw(SECRET)
    dialect, host = draw(DIALECTS), draw(HOSTS)
    port = draw(st.sampled_from(["", ":5432", ":1", ":99999", ":x"]))
    database = draw(st.sampled_from(["/trce", "/", "", "/a/b.db", "/trce?connect_timeout=3"]))
    user = draw(st.sampled_from(["trce", "", "u%40x", "admin"]))
    where = draw(st.sampled_from(["user part", "user part encoded", "query", "query second"]))
    if where == "user part":
        url = f"{dialect}://{user}:{secret}@{host}{port}{database}"
    elif where == "user part encoded":
        url = f"{dialect}://{user}:{quote(secret, safe='')}@{host}{port}{database}"
    else:
        name = draw(st.sampled_from(["password", "sslpassword", "token", "access_token", "api_key", "X-Amz-Signature", "auth"]))
        joiner = "&" if "?" in database else "?"
        first = "connect_timeout=3&" if where == "query second" else ""
        url = f"{dialect}://{host}{port}{database}{joiner}{first}{name}={quote(secret, safe='')}"
    return url, secret


@examples(1000)
@given(secret_url())
@example(("postgresql://trce:Zqp@ssQ9@db/trce", "Zqp@ssQ9"))  # an unencoded '@' (its tail was shown as the host)
@example(("postgresql://db/trce?password=ZqsecretQ9", "ZqsecretQ9"))  # libpq's password parameter (was shown)
@example(("postgresql://u:Zqs%40cQ9@db/trce?sslpassword=ZqsecretQ9", "ZqsecretQ9"))
def test_masked_urls_show_no_password_or_token(case):
    url, secret = case
    for shown in (mask_url(url), mask_url_secrets(url)):
        assert "\n" not in shown
        assert_no_secret(_secret_forms(secret), shown)


@examples(1000)
@given(secret_url())
@example(("postgresql://trce:Zqp@ssQ9@db/trce", "Zqp@ssQ9"))
def test_refused_database_urls_show_no_password(case):
    url, secret = case
    if url.startswith("sqlite"):
        return  # a SQLite URL names a file (a path, not a password); make_engine would create its folder
    try:
        engine = make_engine(url, read_only=True)
    except StoreError as exc:
        assert_one_line_error(exc)
        assert_no_secret(_secret_forms(secret), str(exc))
        return
    assert_no_secret(_secret_forms(secret), mask_url(engine.url))
    engine.dispose()


# ------------------------------------------------------------------------------------------ store URL shapes
READERS = [["runs", "list"], ["runs", "show", "1"], ["models"], ["gate", "--max-asr", "*=50%"], ["report", "--out", "{out}/report.html"],
           ["report", "--out", "{out}/report.md"], ["data", "list"], ["concepts"], ["concepts", "--model", "artefact:1"], ["doctor"]]
PG = os.environ.get("TRCE_AUDIT_TEST_PG")


def _sqlite_store(path: Path) -> None:
    store = Store(f"sqlite:///{path}")
    store.add_prompt_set("seeds", [PromptRow("a red cross", 1, 7.5)])
    store.close()


def url_shape(shape: str, folder: Path, secret: str, noise: bytes) -> str:
    """A store URL of the named shape, built under ``folder`` (files it names are made there first)."""
    if shape == "sqlite store":
        _sqlite_store(folder / "store.sqlite")
        return f"sqlite:///{folder / 'store.sqlite'}"
    if shape == "sqlite missing folder":
        return f"sqlite:///{folder / 'no' / 'such' / 'store.sqlite'}"
    if shape == "sqlite random bytes":
        (folder / "junk.sqlite").write_bytes(noise)
        return f"sqlite:///{folder / 'junk.sqlite'}"
    if shape == "sqlite truncated store":
        _sqlite_store(folder / "cut.sqlite")
        data = (folder / "cut.sqlite").read_bytes()
        (folder / "cut.sqlite").write_bytes(data[: max(1, len(data) // 3)])
        return f"sqlite:///{folder / 'cut.sqlite'}"
    if shape == "sqlite empty file":
        (folder / "empty.sqlite").write_bytes(b"")
        return f"sqlite:///{folder / 'empty.sqlite'}"
    if shape == "sqlite folder":
        (folder / "adir").mkdir(exist_ok=True)
        return f"sqlite:///{folder / 'adir'}"
    if shape == "sqlite memory":
        return "sqlite://"
    if shape == "sqlite query":
        return f"sqlite:///{folder / 'q.sqlite'}?mode=rwc&cache=shared"
    if shape == "postgres refused":
        return f"postgresql+psycopg://trce:{quote(secret, safe='')}@127.0.0.1:1/trce?connect_timeout=2"
    if shape == "postgres password in query":
        return f"postgresql+psycopg://127.0.0.1:1/trce?password={quote(secret, safe='')}&connect_timeout=2"
    if shape == "postgres unencoded at":
        return f"postgresql+psycopg://trce:{secret}@x@127.0.0.1:1/trce"
    if shape == "unsupported dialect":
        return f"mysql://u:{quote(secret, safe='')}@127.0.0.1:1/x"
    if shape == "garbage":
        return f"::{secret}@@//{noise[:8].hex()}"
    if shape == "postgres wrong password" and PG:
        from sqlalchemy.engine import make_url

        return make_url(PG).set(password=secret).render_as_string(hide_password=False)
    if shape == "postgres no such database" and PG:
        from sqlalchemy.engine import make_url

        return make_url(PG).set(database="trce_no_such_db_fuzz").render_as_string(hide_password=False)
    return f"sqlite:///{folder / 'no' / 'such' / 'store.sqlite'}"


SHAPES = ["sqlite store", "sqlite missing folder", "sqlite random bytes", "sqlite truncated store", "sqlite empty file", "sqlite folder",
          "sqlite memory", "sqlite query", "postgres refused", "postgres password in query", "postgres unencoded at", "unsupported dialect",
          "garbage", "postgres wrong password", "postgres no such database", "postgres store"]


@examples(30)
@given(st.sampled_from(READERS), st.sampled_from(SHAPES), SECRET, st.binary(max_size=64), st.booleans(), st.booleans())
@example(["runs", "list"], "postgres unencoded at", "Zqp@ssQ9", b"", False, False)
@example(["doctor"], "postgres password in query", "ZqsecretQ9", b"", True, False)
@example(["concepts", "--model", "artefact:1"], "sqlite missing folder", "Zq1Q9", b"", False, False)  # created the store
@example(["runs", "list"], "sqlite truncated store", "Zq1Q9", b"", False, False)  # was exit 3: DatabaseError
@example(["models"], "sqlite random bytes", "Zq1Q9", b"SQLite format 3\x00" + bytes(80), False, False)
@example(["data", "list"], "sqlite store", "Zq1Q9", b"", False, True)  # made the workspace's data/ folder
def test_read_only_commands_create_and_change_nothing_on_any_store_url(args, shape, secret, noise, by_env, workspace_exists):
    folder = Path(tempfile.mkdtemp(dir=SCRATCH))
    url = url_shape(shape, folder, secret, noise)
    workspace = folder / "ws"
    if workspace_exists:
        workspace.mkdir()
    if shape == "postgres store":
        url = pg_store_url()
    before = tree_digest(folder), rows_digest(url) if shape == "postgres store" else None
    words = [word.format(out=folder / "out") for word in args]
    db = {"env": {"TRCE_AUDIT_DB": url}} if by_env else {}
    result = run_cli("--workspace", str(workspace), *([] if by_env else ["--db", url]), *words, **db)
    assert_house_rule(result)  # gate on a store without an audit refuses (exit 2): none of them holds one
    assert_no_secret(_secret_forms(secret), result.out, result.err)
    after = {key: value for key, value in tree_digest(folder).items() if not key.startswith("out")}
    assert after == before[0], f"{' '.join(args)} on {shape}: {sorted(set(after) ^ set(before[0])) or 'file bytes changed'}"
    if before[1] is not None:
        assert rows_digest(url) == before[1]


_PG_STORE: list[str] = []


def pg_store_url() -> str:
    """One Postgres database holding a store, made on first use (the "postgres store" shape needs a
    server: TRCE_AUDIT_TEST_PG); without one the shape falls back to a missing SQLite folder."""
    if not PG:
        return f"sqlite:///{SCRATCH / 'no' / 'such' / 'store.sqlite'}"
    if not _PG_STORE:
        import uuid

        import sqlalchemy as sa

        server = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
        name = f"trce_test_fuzz_{uuid.uuid4().hex[:12]}"
        with server.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        server.dispose()
        _PG_STORE.append(server.url.set(database=name).render_as_string(hide_password=False))
        store = Store(_PG_STORE[0])
        store.add_prompt_set("seeds", [PromptRow("a red cross", 1, 7.5)])
        store.close()
    return _PG_STORE[0]


@pytest.fixture(scope="module", autouse=True)
def _drop_pg_store():
    yield
    if _PG_STORE:
        import sqlalchemy as sa

        server = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            drop_database(connection, sa.engine.make_url(_PG_STORE[0]).database)
        server.dispose()


WRITER_SHAPES = ["sqlite store", "sqlite random bytes", "sqlite truncated store", "sqlite empty file", "sqlite folder", "sqlite missing folder",
                 "postgres refused", "postgres unencoded at", "unsupported dialect", "garbage", "postgres wrong password"]


@examples(15)
@given(st.sampled_from(WRITER_SHAPES), SECRET, st.binary(max_size=64))
@example("sqlite truncated store", "Zq1Q9", b"")  # resuming on a damaged store (was exit 3: DatabaseError)
@example("sqlite random bytes", "Zq1Q9", b"not a database at all")
def test_a_writer_resuming_on_a_damaged_store_refuses_in_one_line(shape, secret, noise):
    """`data add` (a command that writes) pointed at a store it cannot use: one line, no secret, and the
    file it was pointed at is left as it was."""
    folder = Path(tempfile.mkdtemp(dir=SCRATCH))
    url = url_shape(shape, folder, secret, noise)
    before = {key: value for key, value in tree_digest(folder).items() if key != "no"}
    result = run_cli("--workspace", str(folder / "ws"), "--db", url, "data", "add", "pocket-explicit")
    assert_house_rule(result)
    assert_no_secret(_secret_forms(secret), result.out, result.err)
    if result.code == 2 and shape != "sqlite missing folder":  # a writer may make a missing store's folders
        assert tree_digest(folder) == before


# ------------------------------------------------------------------------------------------ download URLs
DATA_URLS = st.tuples(st.sampled_from(["https", "http", "ftp", "file", "nosuch"]), SECRET,
                      st.sampled_from(["user part", "query"])).map(
    lambda t: (f"{t[0]}://me:{quote(t[1], safe='')}@127.0.0.1:1/data.csv" if t[2] == "user part"
               else f"{t[0]}://127.0.0.1:1/data.csv?token={quote(t[1], safe='')}", t[1]))


@examples(15)
@given(DATA_URLS, st.sampled_from(["--url", "--base-url", "TRCE_AUDIT_DATA_URL", "list"]))
@example(("https://me:ZqtokQ9@127.0.0.1:1/data.csv", "ZqtokQ9"), "--url")  # the token was printed in the error
@example(("https://127.0.0.1:1/x?token=ZqtokQ9", "ZqtokQ9"), "list")  # `data list` printed it as the source
def test_download_urls_never_show_their_token(case, where):
    url, secret = case
    workspace = Path(tempfile.mkdtemp(dir=SCRATCH)) / "ws"
    if where == "list":
        result = run_cli("--workspace", str(workspace), "data", "list", "--json", env={"TRCE_AUDIT_DATA_URL": url})
    elif where == "TRCE_AUDIT_DATA_URL":
        result = run_cli("--workspace", str(workspace), "data", "fetch", "p4d", env={"TRCE_AUDIT_DATA_URL": url})
    else:
        result = run_cli("--workspace", str(workspace), "data", "fetch", "p4d", where, url)
    assert_house_rule(result)
    assert_no_secret(_secret_forms(secret), result.out, result.err)
    for path in workspace.rglob("*"):  # nothing it left behind holds the token either
        if path.is_file():
            assert_no_secret(_secret_forms(secret), path.read_bytes().decode("utf-8", "replace"))


@examples(10)
@given(SECRET, st.sampled_from(["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRCE_AUDIT_DB"]), st.sampled_from(READERS + [["data", "add", "pocket-explicit"]]))
def test_secrets_in_the_environment_never_reach_the_output(secret, variable, args):
    """A token in the environment, and a database password given through TRCE_AUDIT_DB, stay out of every
    output and every row a writer stores."""
    folder = Path(tempfile.mkdtemp(dir=SCRATCH))
    env = {variable: secret}
    if variable == "TRCE_AUDIT_DB":
        env[variable] = f"postgresql+psycopg://trce:{quote(secret, safe='')}@127.0.0.1:1/trce?connect_timeout=2"
    words = [word.format(out=folder / "out") for word in args]
    result = run_cli("--workspace", str(folder / "ws"), *words, env=env)
    assert_house_rule(result, ok=(0, 1))
    assert_no_secret(_secret_forms(secret), result.out, result.err)
    for path in folder.rglob("*"):
        if path.is_file():
            assert_no_secret(_secret_forms(secret), path.read_bytes().decode("utf-8", "replace"))
