"""schemathesis hooks for scripts/schemathesis.sh (loaded by `hooks` in schemathesis.toml).

The feedback summary's window is `[from, to)`: `from` after `to` is refused with a 400 (the
document says so), but OpenAPI cannot state a constraint between two parameters, so schemathesis
generates reversed windows as "valid" and reports the documented 400 as a schema-valid request
rejected. Only those windows are dropped from the generated summary queries: every other window
(any RFC 3339 form, equal instants, one bound alone) is still generated and must get a 200.
"""

import re
from datetime import datetime, timedelta, timezone

import schemathesis

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def instant(value):
    """Nanoseconds since 1970 of an RFC 3339 date-time (a leap second read as the next second,
    digits past the ninth ignored), else None."""
    match = RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except ValueError:
        return None
    seconds = (moment - EPOCH) // timedelta(seconds=1) + max(second - 59, 0)
    offset = match.group(8)
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    nanoseconds = int((match.group(7) or ".0")[1:10].ljust(9, "0"))
    return seconds * 1_000_000_000 + nanoseconds


@schemathesis.hook
def filter_query(ctx, query):
    operation = ctx.operation
    if operation is None or operation.path != "/cds-services/{id}/feedback/summary" or not query:
        return True
    start = instant(query.get("from"))
    if start is None:
        return True
    # Without `to`, the window ends now (a `from` in the future is reversed too).
    end = instant(query["to"]) if "to" in query else instant(datetime.now(timezone.utc).isoformat()) - 5 * 10**9
    return end is None or start <= end
