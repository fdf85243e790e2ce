"""Secrets: what counts as one, the rules they follow, and the one place they are resolved.

A secret is the Redis password (`online_store.password`, or the password in the URL's
userinfo), `kafka.sasl_password`, and any `kafka.client` setting whose name says it is one
(`is_secret_key`). In featureline.yaml each must be a bare `${VAR}`: a literal value, a
`${VAR:-default}` (a default secret is a literal one) or a reference inside other text is a
compile error (compiler.py, with `refusal`). The compiled plan keeps the reference, never the
value; the value is read from the environment of the process that connects (`redis_params`,
`kafka_config`, `resolve_kafka`), so a Beam runner's workers read their own. Each value read is
remembered, and `redact` takes it out of text about to be printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from .errors import FeaturelineError

# ${VAR} or ${VAR:-default}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

SECRET_WORDS = ("password", "passwd", "secret", "token", "credential")
SASL_PASSWORD = "sasl_plain_password"  # kafka-python's name of kafka.sasl_password
LITERAL = "secrets must be environment references like ${VAR}, never literal values"

_resolved: set[str] = set()  # values read in this process, for redact()


class SecretError(FeaturelineError, ValueError):
    """A secret's variable is not set in the environment of the process that connects."""

    exit_code = 2


def is_secret_key(name: str) -> bool:
    """A setting whose value is a secret, by its name (ssl_password, sasl_plain_password, ...)."""
    n = name.lower()
    return any(w in n for w in SECRET_WORDS)


def ref_var(value) -> str | None:
    """VAR of a bare `${VAR}` (no default, nothing around it), else None."""
    m = ENV_REF.fullmatch(value.strip()) if isinstance(value, str) else None
    return m.group(1) if m and m.group(2) is None else None


def refusal(value) -> str | None:
    """Why `value` may not be written as a secret, or None when it is a bare `${VAR}`."""
    if ref_var(value):
        return None
    m = ENV_REF.fullmatch(value.strip()) if isinstance(value, str) else None
    if m:
        return f"a secret cannot have a default (the default would be a literal secret): write ${{{m.group(1)}}}"
    return LITERAL


def split_url(url: str) -> tuple[str, str | None, list[str]]:
    """(`url` without the password of its userinfo, that password as written or None, the names of
    secret-like query parameters). `${...}` references are kept whole (a default may hold `:@/`);
    the URL is cut as redis-py's urlparse cuts it: the netloc ends at the first `/`, `?` or `#`."""
    refs: list[str] = []

    def hide(m: re.Match) -> str:
        refs.append(m.group(0))
        return f"\ue000{len(refs) - 1}\ue001"

    def show(s: str) -> str:
        return re.sub("\ue000(\\d+)\ue001", lambda m: refs[int(m.group(1))], s)

    masked = ENV_REF.sub(hide, url)
    scheme, sep, rest = masked.partition("://")
    if not sep:
        return url, None, []
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    netloc, tail = rest[:end], rest[end:]
    query = tail.partition("?")[2].partition("#")[0]
    secret_params = [show(k) for k, _ in parse_qsl(query, keep_blank_values=True) if is_secret_key(show(k))]
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url, None, secret_params
    user, _, password = userinfo.partition(":")
    return show(f"{scheme}://{user + '@' if user else ''}{host}{tail}"), show(password) or None, secret_params


def resolve(var: str, what: str) -> str:
    """The value of secret `var` (`what` it is, for the error) from this process's environment."""
    value = os.environ.get(var)
    if value is None:
        raise SecretError(
            f"{what} is read from environment variable `{var}`, which is not set here: "
            "set it where the connection is made (for a job on a runner: on its workers)"
        )
    if value:
        _resolved.add(value)
    return value


def redis_params(project) -> tuple[str, str | None]:
    """(url, password) for `redis.Redis.from_url(url, password=password, ...)` (or redis.asyncio's).
    The plan's URL never holds the password: it is passed on its own, read now."""
    env = project.redis_password_env
    return project.redis_url, (resolve(env, f"the Redis password ({project.redis_password_from} in featureline.yaml)") if env else None)


def kafka_settings(project) -> dict:
    """kafka-python client settings with secrets as `${VAR}` references: safe to pickle and print."""
    cfg: dict = {"bootstrap_servers": project.kafka_bootstrap, "security_protocol": project.kafka_security_protocol}
    if project.kafka_sasl_mechanism:
        cfg["sasl_mechanism"] = project.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = project.kafka_sasl_username
        if project.kafka_sasl_password_env:
            cfg[SASL_PASSWORD] = f"${{{project.kafka_sasl_password_env}}}"
    cfg.update(dict(project.kafka_client))
    return cfg


def resolve_kafka(cfg: Mapping) -> dict:
    """`cfg` with each secret setting's `${VAR}` replaced by its value, read now."""
    out = dict(cfg)
    for k, v in cfg.items():
        var = ref_var(v) if is_secret_key(k) else None
        if var:
            out[k] = resolve(var, f"{'kafka.sasl_password' if k == SASL_PASSWORD else 'kafka.client.' + k} in featureline.yaml")
    return out


def kafka_config(project) -> dict:
    """kafka-python client settings with the secrets' values: for a client made now, never to keep."""
    return resolve_kafka(kafka_settings(project))


_USERINFO = re.compile(r"(://[^\s/@:]*:)([^\s/@]+)@")
_KEY_VALUE = re.compile(
    r"""([\w.-]*(?:password|passwd|secret|token|credential)[\w.-]*["']?\s*[:=]\s*["']?)(\$\{[^}]*\}|[^\s,}'"]+)""", re.I
)


def mask_line(line: str) -> str:
    """A line of a YAML file shown in an error, with what looks like a literal secret (a value
    after a secret-like key, a URL's password) as `***`; bare `${VAR}` references stay."""

    def mask(m: re.Match) -> str:
        return m.group(0) if ref_var(m.group(2)) else m.group(1) + "***" + m.group(0)[m.end(2) - m.start() :]

    return _KEY_VALUE.sub(mask, _USERINFO.sub(mask, line))


def redact(text: str) -> str:
    """`text` with every secret value read in this process replaced by `***`."""
    for v in sorted(_resolved, key=len, reverse=True):
        text = text.replace(v, "***")
    return text
