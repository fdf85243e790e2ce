"""The (field, rule) reasons each of the generator's bad-record kinds must get (generator.BAD_KINDS);
shared by the contract runtime tests and the stream's dead-letter tests."""

EXPECTED_BAD = {
    "malformed_json": {(None, "json")},
    "not_an_object": {(None, "object")},
    "missing_required": {("user_id", "required")},
    "null_required": {("amount", "required")},
    "wrong_type": {("amount", "type"), ("user_id", "type")},  # alternates between the two
    "below_minimum": {("amount", "minimum")},
    "above_maximum": {("amount", "maximum")},
    "enum": {("currency", "enum")},
    "pattern": {("card_country", "pattern")},
    "format_email": {("customer_email", "format")},
    "format_uuid": {("txn_id", "format")},
    "unknown_field": {("coupon_code", "unknown_field")},
    "future_event_time": {("event_time", "event_time_future")},
    "bad_timestamp": {("event_time", "type")},
    "duplicate_key": {("txn_id", "unique")},
}
