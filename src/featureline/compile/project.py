"""featureline.yaml -> ProjectPlan: settings, environment references, secrets, Redis, Kafka, serve."""

from __future__ import annotations

import os
import re

from ..errors import did_you_mean
from ..plan import (
    ProjectPlan,
    ServePlan,
)
from ..repo import Sourced
from ..secrets import ENV_REF, is_secret_key, ref_var, refusal, split_url


def _kafka_settings() -> set[str]:
    """Every setting a kafka-python consumer, producer or admin client takes."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    return set(KafkaConsumer.DEFAULT_CONFIG) | set(KafkaProducer.DEFAULT_CONFIG) | set(KafkaAdminClient.DEFAULT_CONFIG)


class ProjectPart:
    """Compiler steps (mixed into `compiler.Compiler`, which holds `p`, the problems, and `repo`)."""

    # -- project -------------------------------------------------------------------
    def _env(self, value: str | None, s: Sourced, *path) -> str | None:
        if value is None:
            return None

        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            self.p.add(
                "missing-env",
                f"environment variable `{var}` is not set and has no default",
                s.loc(*path),
                f"set {var}, or write ${{{var}:-default}}",
            )
            return ""

        return ENV_REF.sub(sub, value)

    def _project(self) -> ProjectPlan:
        """Project settings; secrets stay `${VAR}` references (secrets.py resolves them when connecting)."""
        s = self.repo.project
        spec = s.spec
        kafka = spec.kafka
        redis_url, password_env, password_from = self._redis(s)
        tokens = [self._secret(t, s, ("serve", "auth_tokens", i), "FEATURELINE_TOKEN") for i, t in enumerate(spec.serve.auth_tokens)]
        return ProjectPlan(
            name=spec.project,
            root=str(self.root),
            redis_url=redis_url,
            redis_password_env=password_env,
            redis_key_prefix=spec.online_store.key_prefix,
            kafka_bootstrap=self._bootstrap(s),
            kafka_security_protocol=kafka.security_protocol,
            kafka_sasl_mechanism=kafka.sasl_mechanism,
            kafka_sasl_username=self._env(kafka.sasl_username, s, "kafka", "sasl_username"),
            kafka_sasl_password_env=self._secret(kafka.sasl_password, s, ("kafka", "sasl_password"), "KAFKA_PASSWORD"),
            kafka_consumer_group=kafka.consumer_group,
            kafka_client=self._kafka_client(s),
            offline_path=str((self.root / self._env(spec.offline_store.path, s, "offline_store", "path")).resolve()),
            redis_timeout_s=_seconds(spec.online_store.timeout),
            redis_password_from=password_from,
            serve=_serve_plan(spec.serve, tuple(t for t in tokens if t)),
        )

    def _secret(self, value, s: Sourced, at: tuple, example: str) -> str | None:
        """The variable of secret `value` (a bare `${VAR}`), or None; anything else is reported."""
        if value is None:
            return None
        why = refusal(value)
        if why:
            m = ENV_REF.fullmatch(value.strip()) if isinstance(value, str) else None
            var = m.group(1) if m else example  # ${VAR:-default}: keep its VAR
            self.p.add(
                "literal-secret",
                f"`{at[-1]}`: {why}",
                s.loc(*at),
                f"write `{at[-1]}: ${{{var}}}` and set {var} where featureline connects",
                secret=True,
            )
            return None
        return ref_var(value)

    def _redis(self, s: Sourced) -> tuple[str, str | None, str]:
        """The Redis URL without a password (other references expanded), the password's variable,
        and the setting that names it."""
        st = s.spec.online_store
        at = ("online_store", "url")
        hint = "write the password as a reference: redis://:${REDIS_PASSWORD}@host:6379/0, or `password: ${REDIS_PASSWORD}`"
        bare, password, params = split_url(st.url)
        for name in params:
            self.p.add(
                "literal-secret",
                f"`url`: query parameter `{name}` is a secret, and a URL may hold one only as a reference in its userinfo",
                s.loc(*at),
                hint,
                secret=True,
            )
        env, origin = None, "online_store.password"
        if password is not None:
            why = refusal(password)
            if why:
                self.p.add("literal-secret", f"`url`: the password in the URL's userinfo: {why}", s.loc(*at), hint, secret=True)
            env, origin = ref_var(password), "online_store.url"
        if st.password is not None:
            field_env = self._secret(st.password, s, ("online_store", "password"), "REDIS_PASSWORD")
            if password is not None:
                self.p.add(
                    "invalid-value",
                    "`password`: the Redis password is set twice, here and in `url`",
                    s.loc("online_store", "password"),
                    "keep one",
                    secret=True,
                )
            else:
                env = field_env
        url = self._env(bare, s, *at)
        if url != bare:  # did a variable bring a password (which the plan would then hold)?
            _, brought, brought_params = split_url(url)
            if brought is not None or set(brought_params) - set(params):
                names = ", ".join(f"${{{m.group(1)}}}" for m in ENV_REF.finditer(bare))
                self.p.add(
                    "literal-secret", f"`url`: {names} put a password in the URL, and the compiled plan would hold it", s.loc(*at), hint
                )
        return url, env, origin

    def _bootstrap(self, s: Sourced) -> str:
        raw = s.spec.kafka.bootstrap_servers
        out = self._env(raw, s, "kafka", "bootstrap_servers")
        if "@" in raw or "@" in out:
            msg = "`bootstrap_servers`: takes host:port[,host:port] without credentials"
            self.p.add(
                "invalid-value",
                msg,
                s.loc("kafka", "bootstrap_servers"),
                "credentials go in sasl_username and sasl_password: ${KAFKA_PASSWORD}",
                secret="@" in raw,
            )
        return out

    def _kafka_client(self, s: Sourced) -> dict:
        """kafka.client: known kafka-python settings only; secret-like ones kept as `${VAR}`."""
        client = s.spec.kafka.client
        known = _kafka_settings() if client else set()
        out: dict = {}
        for k, v in client.items():
            at = ("kafka", "client", k)
            if k not in known:
                self.p.add("unknown-setting", f"`{k}` is not a kafka-python client setting", s.loc(*at, key=True), did_you_mean(k, known))
            elif is_secret_key(k):
                if self._secret(v, s, at, f"KAFKA_{k.upper()}"):
                    out[k] = v.strip()
            else:
                out[k] = self._env(v, s, *at) if isinstance(v, str) else v
        return out

    # -- contracts -----------------------------------------------------------------


def _serve_plan(spec, tokens: tuple[str, ...]) -> ServePlan:
    return ServePlan(
        auth_token_envs=tokens,
        max_body=spec.max_body,
        max_entities=spec.max_entities,
        max_features=spec.max_features,
        timeout_s=_seconds(spec.timeout),
        header_timeout_s=_seconds(spec.header_timeout),
        body_timeout_s=_seconds(spec.body_timeout),
        refusal_delay_s=_seconds(spec.refusal_delay),
        keep_alive_s=_seconds(spec.keep_alive),
        max_connections=spec.max_connections,
        metrics_port=spec.metrics_port,
    )


def _seconds(text: str) -> float:
    """`500ms`, `5s`, `1m` -> seconds (the spec's pattern has checked the form)."""
    for unit, k in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * k
    raise ValueError(text)
