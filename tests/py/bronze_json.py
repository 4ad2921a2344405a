"""Turn values read from Parquet (by pyarrow or duckdb) into plain JSON for the Rust tests.

Conventions (shared by parquet_dump.py and duckdb_query.py):
binary -> lowercase hex; timestamps -> integer epoch milliseconds (naive = UTC);
dates -> "YYYY-MM-DD"; times -> ISO string; decimals -> string; NaN/inf -> "NaN"/"inf"/"-inf";
UUID -> string; lists/structs/maps -> recursively converted lists/objects.
"""

import datetime
import decimal
import math
import uuid

_EPOCH_NAIVE = datetime.datetime(1970, 1, 1)
_EPOCH_UTC = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MS = datetime.timedelta(milliseconds=1)


def epoch_ms(dt):
    epoch = _EPOCH_NAIVE if dt.tzinfo is None else _EPOCH_UTC
    return (dt - epoch) // _MS


def jsonable(v):
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, datetime.datetime):
        return epoch_ms(v)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (datetime.time, datetime.timedelta)):
        return str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        # pyarrow gives maps as lists of (key, value) tuples; keep them as 2-element lists.
        return [jsonable(x) for x in v]
    return str(v)
