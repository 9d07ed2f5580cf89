"""Errors a user can act on. The CLI prints them as one line and exits non-zero; what they may show of a
URL (``mask_url_secrets``)."""

import re
from urllib.parse import unquote


class TrceAuditError(Exception):
    """Bad input or a state the user must fix; the message is shown as a single line."""

    exit_code = 2


class DataError(TrceAuditError):
    """A prompt set, concept list or other data file is missing or malformed."""


class StoreError(TrceAuditError):
    """The result store cannot be opened or does not hold what was asked for."""


class ModelError(TrceAuditError):
    """A model spec cannot be resolved or loaded."""


class PluginError(TrceAuditError):
    """An eraser, attack or metric name is unknown or its plugin fails to load."""


class ConfigError(TrceAuditError):
    """A component configuration has an unknown key or a value of the wrong type."""


def one_line(message: object) -> str:
    """Collapse a message to a single line so that it prints as one."""
    return " ".join(str(message).split())


# Query parameters whose values are credentials: libpq's password and sslpassword, access tokens, API
# keys, signed-URL signatures.
_SECRET_PARAMETER = re.compile(r"pass|secret|token|key|sig|auth|credential", re.IGNORECASE)


def mask_url_secrets(url: str) -> str:
    """``url`` as it may be printed, logged or stored: the password of its user part and the value of
    every query parameter named like a credential replaced by ``***``. Works on text that does not parse
    as a URL, and on a password with an unencoded ``@`` (everything up to the last ``@`` before the query
    is the user part)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    user_part, at, after = _split_user_part(rest)
    if at and ":" in user_part:
        rest = f"{user_part.split(':', 1)[0]}:***@{after}"
    head, question, query = rest.partition("?")
    if question:
        query = "&".join(
            f"{key}=***" if equals and _SECRET_PARAMETER.search(key) else f"{key}{equals}{value}"
            for key, equals, value in (part.partition("=") for part in query.split("&"))
        )
        rest = f"{head}?{query}"
    return f"{scheme}://{rest}"


def url_secrets(url: str) -> list[str]:
    """The secrets ``mask_url_secrets`` hides, as written and percent-decoded (longest first), so that a
    message quoting them some other way (a driver's, an OS error's) can be scrubbed too."""
    scheme, sep, rest = url.partition("://")
    found: list[str] = []
    if sep:
        user_part, at, _ = _split_user_part(rest)
        if at and ":" in user_part:
            found.append(user_part.split(":", 1)[1])
        for key, equals, value in (part.partition("=") for part in rest.partition("?")[2].split("&")):
            if equals and _SECRET_PARAMETER.search(key):
                found.append(value)
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def scrub_url_secrets(text: str, url: str) -> str:
    """``text`` (an error message that may quote ``url`` or parts of it) with the URL's secrets as ***."""
    text = text.replace(url, mask_url_secrets(url))
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def _split_user_part(rest: str) -> tuple[str, str, str]:
    """(user part, "@" or "", the rest) of what follows "scheme://": up to the last "@" before the query."""
    end = rest.find("?")
    at = rest.rfind("@", 0, end if end >= 0 else len(rest))
    return (rest[:at], "@", rest[at + 1:]) if at >= 0 else ("", "", rest)
