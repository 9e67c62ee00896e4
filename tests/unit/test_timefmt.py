"""iso_from_micros formats every span time of the query API: same text as datetime.isoformat."""

import random
from datetime import datetime, timezone

from query_api.timefmt import iso_from_micros


def _reference(us: int) -> str:
    dt = datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)
    return dt.isoformat().replace("+00:00", "Z")


def test_matches_isoformat_with_and_without_a_fraction():
    rng = random.Random(17)
    values = [0, 1, 999_999, 1_000_000, 7_258_118_399_999_999]
    values += [rng.randrange(0, 7 * 10**15) for _ in range(20_000)]
    values += [rng.randrange(0, 7 * 10**9) * 1_000_000 for _ in range(2_000)]  # whole seconds: no fraction
    for us in values:
        assert iso_from_micros(us) == _reference(us), us
    assert iso_from_micros(None) is None
    assert iso_from_micros(1_700_000_000_000_001) == "2023-11-14T22:13:20.000001Z"
