"""Golden error messages: each edit of the example repo gives exactly these errors (file:line:col, message, help)."""

import pytest

from featureline.compiler import compile_project
from featureline.errors import SpecError

CASES = [
    (
        "features/user_features.yaml",
        "column: amount              #",
        "column: amout              #",
        [
            "features/user_features.yaml:9:17: error[unknown-column]: column `amout` is not in the source's contract\n   = help: did you mean `amount`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [sum, mean, maxx]",
        [
            "features/user_features.yaml:10:32: error[invalid-value]: `functions`: Input should be 'count', 'sum', 'mean', 'min', 'max', 'last', 'first', 'variance', 'stddev', 'count_distinct', 'last_k', 'first_k', 'top_k', 'approx_count_distinct' or 'approx_percentile'\n   = help: did you mean `max`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [last_k]",
        ["features/user_features.yaml:9:9: error[invalid-value]: `aggregations`: `last_k` needs `k`"],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [sum, mean, max]\n        k: 3",
        ["features/user_features.yaml:9:9: error[invalid-value]: `aggregations`: `k` applies to `last_k`, `first_k` and `top_k`, not to `sum`, `mean`, `max`"],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [first_k, max]\n        k: 101",
        ["features/user_features.yaml:11:12: error[invalid-value]: `k`: Input should be less than or equal to 100"],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [approx_percentile]",
        ["features/user_features.yaml:9:9: error[invalid-value]: `aggregations`: `approx_percentile` needs `percentiles`"],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [approx_percentile, max]\n        percentiles: [0.5, 1.5]",
        ["features/user_features.yaml:11:28: error[invalid-value]: `percentiles`: Input should be less than or equal to 1"],
    ),
    (
        "features/user_features.yaml",
        "functions: [sum, mean, max]",
        "functions: [approx_percentile]\n        percentiles: [0.5, 0.5]",
        ["features/user_features.yaml:9:9: error[invalid-value]: `aggregations`: `percentiles` lists a percentile twice"],
    ),
    (
        "features/user_features.yaml",
        "windows: [10m, 1h, 24h, 7d]\n      - column",
        "windows: [10m, 1 hour, 24h, 7d]\n      - column",
        [
            "features/user_features.yaml:8:24: error[invalid-duration]: window: cannot parse duration '1 hour': use a number and a unit (us, ms, s, m, h, d, w), e.g. '10m', '1h30m', '7d'",
        ],
    ),
    (
        "features/user_features.yaml",
        "ttl: 30d",
        "ttl: 30",
        [
            "features/user_features.yaml:26:10: error[invalid-duration]: ttl: expected a duration with a unit like '10m', '1h', '7d', got 30 (a bare number has no unit)",
        ],
    ),
    (
        "features/user_features.yaml",
        "    entity: user\n    source: users",
        "    entity: usr\n    source: users",
        [
            "features/user_features.yaml:34:13: error[unknown-entity]: feature view `user_profile` uses entity `usr`, which is not defined\n   = help: did you mean `user`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "source: users",
        "source: user",
        [
            "features/user_features.yaml:35:13: error[unknown-source]: feature view `user_profile` reads source `user`, which is not defined\n   = help: did you mean `users`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "where: \"status = 'declined'\"",
        "where: \"statuz = 'declined'\"",
        [
            "features/user_features.yaml:16:12: error[invalid-expression]: in `where`: unknown column `statuz`\n   = help: did you mean `status`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "where: \"status = 'declined'\"",
        'where: "amount + 1"',
        [
            "features/user_features.yaml:16:12: error[invalid-type]: `where` must be a condition (boolean), this is number",
        ],
    ),
    (
        "features/user_features.yaml",
        "features: [country, signup_time, risk_segment]",
        "features: [country, signup_time, risk_segmnt]",
        [
            "features/user_features.yaml:37:38: error[unknown-column]: column `risk_segmnt` is not in the source's contract\n   = help: did you mean `risk_segment`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "  - name: user_declines",
        "  - name: user_transactions",
        [
            "features/merchant_features.yaml:28:9: error[unknown-view]: feature service `fraud_detection` names view `user_declines`, which is not defined",
            "features/user_features.yaml:13:11: error[duplicate-name]: feature view `user_transactions` is already defined at features/user_features.yaml:2:11",
        ],
    ),
    (
        "features/user_features.yaml",
        "    description: How much",
        "    descripton: How much",
        [
            "features/user_features.yaml:3:5: error[unknown-key]: unknown key `descripton`\n   = help: did you mean `description`?",
        ],
    ),
    (
        "features/user_features.yaml",
        "      - function: count             #",
        "      - column: currency\n        function: sum             #",
        [
            "features/user_features.yaml:8:19: error[invalid-aggregation]: `sum` needs a numeric (integer, number or boolean) input, but column `currency` is string\n   = help: count, count_distinct, approx_count_distinct, last, first, last_k, first_k and top_k work on any type",
        ],
    ),
    (
        "features/merchant_features.yaml",
        "      - user_profile:country",
        "      - user_profile:countri",
        [
            "features/merchant_features.yaml:30:9: error[unknown-feature]: view `user_profile` has no feature `countri`\n   = help: did you mean `country`?",
        ],
    ),
    (
        "features/merchant_features.yaml",
        "      - user_profile:country",
        "      - user_profil:country",
        [
            "features/merchant_features.yaml:30:9: error[unknown-view]: feature service `fraud_detection` names view `user_profil`, which is not defined\n   = help: did you mean `user_profile`?",
        ],
    ),
    (
        "features/merchant_features.yaml",
        "      - user_profile:country",
        "      - user_profile",
        [
            "features/merchant_features.yaml:30:9: error[invalid-reference]: `user_profile` is not a feature reference\n   = help: write `view:feature` or `view:*`",
        ],
    ),
    (
        "features/entities.yaml",
        "    contract: users",
        "    contract: user",
        [
            "features/entities.yaml:17:15: error[unknown-contract]: source `users` follows contract `user`, which is not defined\n   = help: did you mean `users`?",
        ],
    ),
    (
        "features/entities.yaml",
        "    join_keys: [merchant_id]",
        "    join_keys: [merchant]",
        [
            "features/merchant_features.yaml:3:13: error[missing-key-column]: entity `merchant` joins on `merchant`, but source `transactions`'s contract `transactions` has no such property\n   = help: did you mean `merchant_id`?",
            "features/merchant_features.yaml:15:13: error[missing-key-column]: entity `merchant` joins on `merchant`, but source `merchants`'s contract `merchants` has no such property\n   = help: did you mean `merchant_id`?",
        ],
    ),
    (
        "features/entities.yaml",
        "      path: data/history/users.parquet",
        "      path: data/history/users.parquet\n    event_time: signup_tme",
        [
            "features/entities.yaml:20:17: error[unknown-column]: event-time column `signup_tme` is not in contract `users` (contracts/users.yaml)\n   = help: did you mean `signup_time`?",
        ],
    ),
    (
        "contracts/users.yaml",
        "    value: updated_at",
        "    value: updatedAt",
        [
            "contracts/users.yaml:48:12: error[unknown-column]: eventTimeField `updatedAt` is not a property of contract `users`\n   = help: did you mean `updated_at`?",
        ],
    ),
    (
        "contracts/users.yaml",
        "        logicalType: timestamp\n        physicalType: timestamp\n        required: true\ncustom",
        "        logicalType: string\n        physicalType: timestamp\n        required: true\ncustom",
        [
            "contracts/users.yaml:48:12: error[invalid-type]: eventTimeField `updated_at` must have logicalType timestamp, not string",
        ],
    ),
    (
        "contracts/transactions.yaml",
        "          maximum: 50000",
        "          maxLength: 50000",
        [
            "contracts/transactions.yaml:54:11: error[unknown-option]: logicalTypeOptions `maxLength` does not apply to logicalType number\n   = help: options for number: exclusiveMaximum, exclusiveMinimum, format, maximum, minimum, multipleOf",
        ],
    ),
    (
        "contracts/transactions.yaml",
        "value: backward",
        "value: backwards",
        [
            "contracts/transactions.yaml:103:12: error[invalid-value]: compatibility must be one of backward, backward_transitive, forward, forward_transitive, full, full_transitive, none\n   = help: did you mean `backward`?",
        ],
    ),
    (
        "featureline.yaml",
        "  key_prefix: fl",
        "  key_prefix: fl\n  password: hunter2",
        [
            "featureline.yaml:9:13: error[literal-secret]: `password`: secrets must be environment references like ${VAR}, never literal values\n"
            "   = help: write `password: ${REDIS_PASSWORD}` and set REDIS_PASSWORD where featureline connects",
        ],
    ),
    (
        "featureline.yaml",
        "  key_prefix: fl",
        "  key_prefix: fl\n  password: ${REDIS_PASSWORD:-hunter2}",
        [
            "featureline.yaml:9:13: error[literal-secret]: `password`: a secret cannot have a default (the default would be a literal secret): write ${REDIS_PASSWORD}\n"
            "   = help: write `password: ${REDIS_PASSWORD}` and set REDIS_PASSWORD where featureline connects",
        ],
    ),
    (
        "featureline.yaml",
        "  url: redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0",
        "  url: redis://:hunter2@127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0",
        [
            "featureline.yaml:7:8: error[literal-secret]: `url`: the password in the URL's userinfo: secrets must be environment references like ${VAR}, never literal values\n"
            "   = help: write the password as a reference: redis://:${REDIS_PASSWORD}@host:6379/0, or `password: ${REDIS_PASSWORD}`",
        ],
    ),
    (
        "featureline.yaml",
        "  consumer_group: featureline-payments",
        "  consumer_group: featureline-payments\n  client:\n    sasl_plain_password: hunter2\n    request_timout_ms: 1000",
        [
            "featureline.yaml:15:26: error[literal-secret]: `sasl_plain_password`: secrets must be environment references like ${VAR}, never literal values\n"
            "   = help: write `sasl_plain_password: ${KAFKA_SASL_PLAIN_PASSWORD}` and set KAFKA_SASL_PLAIN_PASSWORD where featureline connects",
            "featureline.yaml:16:5: error[unknown-setting]: `request_timout_ms` is not a kafka-python client setting\n   = help: did you mean `request_timeout_ms`?",
        ],
    ),
    (
        "featureline.yaml",
        "  consumer_group: featureline-payments",
        "  consumer_group: featureline-payments\n  sasl_username: ${FL_NO_SUCH_VAR}",
        [
            "featureline.yaml:14:18: error[missing-env]: environment variable `FL_NO_SUCH_VAR` is not set and has no default\n   = help: set FL_NO_SUCH_VAR, or write ${FL_NO_SUCH_VAR:-default}",
        ],
    ),
    (
        "features/user_features.yaml",
        "        windows: [1h, 24h]\n        name: declines",
        "        windows: [1h, 24h]\n        hop: 2h\n        name: declines",
        [
            "features/user_features.yaml:20:14: error[invalid-hop]: hop 2h is longer than window 1h",
        ],
    ),
    (
        "contracts/transactions.yaml",
        "value: 1d",
        "value: 1 day",
        [
            "contracts/transactions.yaml:115:12: error[invalid-duration]: cannot parse duration '1 day': use a number and a unit (us, ms, s, m, h, d, w), e.g. '10m', '1h30m', '7d'",
        ],
    ),
    (
        "contracts/users.yaml",
        "  - property: keyFields\n    value: [user_id]",
        "  - property: keyFields\n    value: [user_id]\n  - property: uniqueWithin\n    value: 1h",
        [
            "contracts/users.yaml:52:12: error[invalid-value]: uniqueWithin is set but no property of the contract is unique\n   = help: remove it, or set `unique: true` on a property",
        ],
    ),
    (
        "contracts/transactions.yaml",
        "  - property: eventTimeField\n    value: event_time\n",
        "",
        [
            "contracts/transactions.yaml:113:12: error[invalid-value]: uniqueWithin needs the contract's eventTimeField: duplicates are looked for within buckets of event time",
            "features/entities.yaml:10:11: error[no-event-time]: source `transactions` has no event-time column: set `event_time:` here or `eventTimeField` in contract `transactions`",
        ],
    ),
]


# hostile input: limits, each an error at file:line:col (a RecursionError, TokenError or silent acceptance before)
WHERE = "where: \"status = 'declined'\""
CASES += [
    (
        "features/user_features.yaml",
        WHERE,
        'where: "' + " AND ".join(["amount > 1"] * 3000) + '"',
        ["features/user_features.yaml:16:12: error[invalid-expression]: in `where`: the expression is 44,995 characters long (the limit is 10,000)"],
    ),
    (
        "features/user_features.yaml",
        WHERE,
        'where: "' + " AND ".join(["amount > 1"] * 100_000) + '"',
        ["features/user_features.yaml:1:1: error[yaml-too-large]: the file is larger than 1,024 KiB, the limit for a YAML file"],
    ),
    (
        "features/user_features.yaml",
        WHERE,
        'where: "' + " AND ".join(["amount > 1"] * 150) + '"',
        [
            "features/user_features.yaml:16:12: error[invalid-expression]: in `where`: the expression is nested more than 100 levels deep"
            " (each AND, OR, NOT, operator and parenthesis is a level; for many alternatives use IN (...))"
        ],
    ),
    (
        "features/user_features.yaml",
        WHERE,
        'where: "' + "(" * 3000 + "amount > 1" + ")" * 3000 + '"',
        ["features/user_features.yaml:16:12: error[invalid-expression]: in `where`: the expression nests parentheses or NOT too deeply to parse (a few dozen levels at most)"],
    ),
    (
        "features/user_features.yaml",
        WHERE,
        'where: "amount > ' + "9" * 65 + '"',
        ["features/user_features.yaml:16:12: error[invalid-expression]: in `where`: a number of more than 64 digits"],
    ),
    (
        "features/user_features.yaml",
        "    aggregations:\n      - function: count",
        "    aggregations: !!python/object/apply:os.system\n      - function: count",
        ["features/user_features.yaml:6:19: error[yaml-tag]: unsupported YAML tag `!!python/object/apply:os.system` on a sequence"],
    ),
    (
        "features/entities.yaml",
        "    stream:\n      format: json",
        "    stream:\n      format: avro",
        [
            "features/entities.yaml:15:15: error[unsupported]: source `transactions`: stream format `avro` is not read yet; the stream decodes JSON records\n   = help: produce JSON records (`format: json`, the default); decoding Avro is not built yet",
        ],
    ),
    (
        "featureline.yaml",
        "project: payments_fraud",
        "project: &n [payments_fraud, *n]",
        ["featureline.yaml:3:30: error[yaml-alias]: alias `*n` is inside its own anchor (line 3): a recursive structure"],
    ),
]


@pytest.mark.parametrize("file,old,new,expected", CASES, ids=[c[2].strip()[:40] for c in CASES])
def test_golden_errors(example_project, file, old, new, expected):
    path = example_project / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError) as e:
        compile_project(".")
    assert [p.render(snippet=False) for p in e.value.problems] == expected


def test_unterminated_quote_in_where_is_a_compile_error(example_project):
    path = example_project / "features/user_features.yaml"
    path.write_text(path.read_text().replace(WHERE, "where: \"status = 'declined\"", 1))  # a TokenError before
    with pytest.raises(SpecError) as e:
        compile_project(".")
    [p] = e.value.problems
    assert p.code == "invalid-expression" and str(p.location) == "features/user_features.yaml:16:12"
    assert p.message.startswith("in `where`: cannot parse expression:")


def test_the_deepest_where_accepted_runs_in_duckdb(example_project):
    import duckdb

    path = example_project / "features/user_features.yaml"
    where = " AND ".join(["amount > 1"] * 98)  # 100 levels with the comparisons below the ANDs
    path.write_text(path.read_text().replace(WHERE, f'where: "{where}"', 1))
    sql = compile_project(".").views["user_declines"].where
    assert duckdb.sql(f"SELECT count(*) FROM (SELECT 2.0 AS amount) WHERE {sql}").fetchall() == [(1,)]
