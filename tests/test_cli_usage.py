"""Every command's usage errors: a missing or malformed option is one `error:` line and exit 2."""

from __future__ import annotations

import pytest

# (command words, arguments that leave out a required option or its value, text the error names)
MISSING = [
    (("erase",), ["erase", "trce"], "Missing option '--concept'"),
    (("erasers",), ["erasers", "--json=yes"], "does not take a value"),
    (("attack",), ["attack"], "Missing argument 'NAME'"),
    (("attacks",), ["attacks", "--json=yes"], "does not take a value"),
    (("eval",), ["eval", "--metric", "pocket"], "Missing option '--prompts'"),
    (("generate",), ["generate", "--prompts", "pocket-explicit"], "Missing option '--model'"),
    (("audit",), ["audit", "--device"], "'--device' requires an argument"),
    (("gate",), ["gate", "--max-asr"], "'--max-asr' requires an argument"),
    (("report",), ["report", "--out"], "'--out' requires an argument"),
    (("runs", "list"), ["runs", "list", "--kind"], "'--kind' requires an argument"),
    (("runs", "show"), ["runs", "show"], "Missing argument 'RUN_ID'"),
    (("models",), ["models", "--json=yes"], "does not take a value"),
    (("concepts",), ["concepts", "--model"], "'--model' requires an argument"),
    (("data", "list"), ["data", "list", "--data-dir"], "'--data-dir' requires an argument"),
    (("data", "fetch"), ["data", "fetch"], "name a prompt set or concept list to fetch"),
    (("data", "show"), ["data", "show"], "Missing argument 'NAME'"),
    (("data", "add"), ["data", "add"], "Missing argument 'NAME'"),
    (("doctor",), ["doctor", "--json=yes"], "does not take a value"),
]
MALFORMED = [
    (["erase", "trce", "-c", "cross", "-m", "pocket", "--batch-size", "none"], "'--batch-size'"),
    (["erase", "trce", "-c", "cross", "-m", "pocket", "--set", "oops"], "--set expects key=value"),
    (["attack", "ring-a-bell", "-m", "pocket", "--limit", "few"], "'--limit'"),
    (["attack", "ring-a-bell", "-m", "pocket", "--set", "=1"], "--set expects key=value"),
    (["eval", "-m", "pocket", "-p", "pocket-explicit", "--metric", "pocket", "--steps", "0"], "'--steps'"),
    (["eval", "-m", "pocket", "-p", "pocket-explicit", "--metric", "pocket", "--device", "gpu"], "unknown device 'gpu'"),
    (["generate", "-m", "pocket", "-p", "pocket-explicit", "--height", "7"], "'--height'"),
    (["audit", "no-such-spec.toml"], "does not exist"),
    (["gate", "--audit", "latest"], "'--audit'"),
    (["report", "--max-images", "many"], "'--max-images'"),
    (["runs", "list", "--limit", "0"], "'--limit'"),
    (["runs", "show", "first"], "'RUN_ID'"),
    (["data", "show", "pocket-explicit", "--limit", "0"], "'--limit'"),
    (["data", "add", "pocket-explicit", "--limit", "-1"], "'--limit'"),
    (["trce-audit-no-such-command"], "No such command"),
    # executor options (one set on generate, eval, attack, erase and audit)
    (["generate", "-m", "pocket", "-p", "pocket-explicit", "--executor", "dask"], "unknown executor 'dask'"),
    (["eval", "-m", "pocket", "-p", "pocket-explicit", "--metric", "pocket", "--workers", "2"], "--workers apply to --executor ray"),
    (["eval", "-m", "pocket", "-p", "pocket-explicit", "--metric", "pocket", "--executor", "ray", "--workers", "0"], "--workers must be at least 1"),
    (["attack", "ring-a-bell", "-m", "pocket", "--executor", "ray", "--max-retries", "11"], "--max-retries must be between 0 and 10"),
    (["attack", "ring-a-bell", "-m", "pocket", "--address", "auto"], "--address apply to --executor ray"),
    (["audit", "--executor", "ray", "--cpus-per-worker", "0"], "--cpus-per-worker must be at least 1"),
    (["audit", "--executor", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be 0 or more"),
    (["audit", "--executor", "ray", "--workers", "few"], "'--workers'"),
    (["erase", "trce", "-c", "cross", "-m", "pocket", "--executor", "ray", "--workers", "0"], "--workers must be at least 1"),
    (["erase", "trce", "-c", "cross", "-m", "pocket", "--max-retries", "1"], "--max-retries apply to --executor ray"),
]


def _leaf_commands(command, prefix=()):
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [prefix]
    return [leaf for name, sub in subcommands.items() for leaf in _leaf_commands(sub, (*prefix, name))]


def test_every_command_has_a_usage_error_case():
    from trce_audit.cli import click_command

    assert sorted(_leaf_commands(click_command())) == sorted(words for words, _, _ in MISSING)


def _assert_usage_error(code, out, err, expected):
    assert code == 2, (code, err)
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err


@pytest.mark.parametrize("words, args, expected", MISSING, ids=[" ".join(w) for w, _, _ in MISSING])
def test_missing_option_or_value_is_a_one_line_usage_error(words, args, expected, cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_usage_error(*cli(*args), expected)


@pytest.mark.parametrize("args, expected", MALFORMED, ids=[" ".join(a[:2]) for a, _ in MALFORMED])
def test_malformed_value_is_a_one_line_usage_error(args, expected, cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_usage_error(*cli(*args), expected)


def test_executor_comes_from_the_environment(cli, monkeypatch):
    monkeypatch.setenv("TRCE_AUDIT_EXECUTOR", "dask")
    _assert_usage_error(*cli("generate", "-m", "pocket", "-p", "pocket-explicit"), "unknown executor 'dask'")


def test_an_unexpected_failure_exits_3_not_1(cli, store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    import trce_audit.api as api

    monkeypatch.setattr(api, "list_runs", broken)
    code, _, err = cli("runs", "list")
    assert code == 3 and err == "error: RuntimeError: boom\n"


def test_help_names_values_not_python_types(cli):
    from trce_audit.cli import click_command

    for words in _leaf_commands(click_command()):
        code, out, _ = cli(*words, "--help")
        assert code == 0 and "Usage:" in out
        for python_type in ("<str>", "<int", "<path>", "list[", "<float>", "<bool>"):
            assert python_type not in out, (words, python_type)


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "trce_audit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    script = subprocess.run([sys.executable, "-c", "from trce_audit.cli import entry; entry()", "--version"], capture_output=True, text=True)
    assert done.stdout == script.stdout  # the same program as the trce-audit script
