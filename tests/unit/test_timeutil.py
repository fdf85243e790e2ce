import pytest

from featureline.timeutil import DAY, HOUR, MINUTE, SECOND, default_hop, floor, format_duration, parse_duration, to_us


@pytest.mark.parametrize(
    "text,us",
    [("10m", 10 * MINUTE), ("1h", HOUR), ("24h", DAY), ("7d", 7 * DAY), ("1h30m", 90 * MINUTE), ("500ms", 500_000), ("2w", 14 * DAY)],
)
def test_parse_duration(text, us):
    assert parse_duration(text) == us
    assert parse_duration(format_duration(us)) == us


@pytest.mark.parametrize("bad", ["10", "10 minutes", "1.5h", "0m", "", "h", 600, True, None])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_default_hop_boundaries():
    assert default_hop(12 * HOUR - 1) == 5 * MINUTE
    assert default_hop(12 * HOUR) == HOUR
    assert default_hop(12 * DAY - 1) == HOUR
    assert default_hop(12 * DAY) == DAY


def test_floor_is_epoch_aligned_and_floors_negatives():
    assert floor(7 * MINUTE + 3, 5 * MINUTE) == 5 * MINUTE
    assert floor(-1, HOUR) == -HOUR
    assert floor(10 * MINUTE, 5 * MINUTE) == 10 * MINUTE


def test_to_us_treats_naive_as_utc():
    assert to_us("1970-01-01T00:00:01") == SECOND
    assert to_us("1970-01-01T00:00:01Z") == SECOND
    assert to_us("1970-01-01T01:00:00+01:00") == 0
    assert to_us("2024-05-01T12:00:00.000001Z") % SECOND == 1
