"""Amazon item attributes in S3-Rec's ``*_item2attributes.json`` (brand and categories)."""

from __future__ import annotations

import json

from seqrec.data.features.records import RawRecords, canon_id
from seqrec.errors import SeqrecError


def read_item2attributes(text: str) -> RawRecords:
    """S3-Rec ``{"item id": [attribute ids]}`` (Amazon brand + categories as one id space)."""
    try:
        table = json.loads(text)
    except ValueError as err:
        raise SeqrecError(f"item2attributes file is not valid JSON ({err})") from None
    if not isinstance(table, dict):
        raise SeqrecError("item2attributes must map item ids to lists of attribute ids")
    raw = RawRecords([], multi={"attributes": []})
    for key, attrs in table.items():
        raw.ids.append(canon_id(str(key)))
        raw.multi["attributes"].append([str(a) for a in attrs])
    return raw
