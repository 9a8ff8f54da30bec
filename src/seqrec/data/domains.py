"""Multi-domain data: the domain of every event, read once at ingest.

Why a domain belongs to the item: in the cross-domain datasets (C2DSR, ABXI, MERIT: the same
users acting in two Amazon categories) every item lives in one catalogue, and the per-domain
protocols ("rank the target among its own domain's items") are defined only if it does. So a
domain comes from an item -> domain map (``data.domain_map``; ABXI's ``map_item_50.txt``) or
from a column whose values never put one item in two domains (``data.domain_col``); the events
then carry their item's domain as a code 1..K (0 is PAD in batches), in sorted order of the
domain values, named by the catalogue (``food``, ``kitchen``) or by the values themselves.

ABXI's map is ``{ASIN: [item index, domain]}``: the sequence file holds the indices, so the
ASINs become the item ids (recommendations come back as ASINs; preprocessing renumbers items
from the sorted ASINs, as it does for any id). A plain ``{item: domain}`` map keeps the file's
ids. Reading needs polars; finding the source (for the store's cache key) does not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqrec.data.catalog import _search_roots, locate
from seqrec.data.source import check_readable, read_bytes
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

if TYPE_CHECKING:
    import polars as pl

    from seqrec.data.ingest import Interactions

_SIBLING_MAPS = ("map_item*.txt", "map_item*.json", "*domains.json")


@dataclass(frozen=True)
class DomainSource:
    """Where the events' domains come from; ``key`` is what the store's cache key hashes."""

    kind: str  # "map" or "column"
    path: Path | None = None
    names: tuple[str, ...] = ()
    key: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"map {self.path}" if self.kind == "map" else f"column {self.key['domain_col']}"


def _sibling_map(data_path: Path) -> Path | None:
    for pattern in _SIBLING_MAPS:
        for suffix in ("", ".gz"):
            found = sorted(data_path.parent.glob(pattern + suffix))
            if found:
                return found[0]
    return None


def _map_path(cfg: DataConfig, data_path: Path, spec: Any) -> Path:
    """``data.domain_map``'s file: the catalogue's (``auto``), else a map next to the data
    (``auto``), else the path given (absolute, the working directory, $SEQREC_DATA_DIR)."""
    value = str(cfg.domain_map)
    if value == "auto":
        if spec is not None and spec.domain_map is not None:
            return locate(spec.domain_map, cache_dir=cfg.cache_dir)[0]
        found = _sibling_map(data_path)
        if found is None:
            raise SeqrecError(
                f"data.domain_map=auto: the catalogue has no domain map for '{cfg.dataset}' and "
                f"none ({', '.join(_SIBLING_MAPS)}) lies next to {data_path}; give the map's "
                "path, or set data.domain_map=null"
            )
        return found
    given = Path(value).expanduser()
    cands = [given] + [r / given for r in _search_roots(None) if not given.is_absolute()]
    hit = next((c for c in cands if c.is_file()), None)
    if hit is None:
        raise SeqrecError(
            f"data.domain_map file {value} does not exist (looked in the working directory and "
            "$SEQREC_DATA_DIR); fix the path, or set data.domain_map=null"
        )
    return hit


def domain_source(cfg: DataConfig, data_path: Path, spec: Any) -> DomainSource | None:
    """The configured source of domains (None: single-domain data), resolved and hashed.

    ``spec`` is the catalogue entry of the data file (by name or by its sha256): its domain
    names apply when the map is its own map, byte for byte."""
    if cfg.domain_col is not None:
        return DomainSource("column", key={"domain_col": cfg.domain_col})
    if cfg.domain_map is None:
        return None
    path = _map_path(cfg, data_path, spec)
    check_readable(path)
    digest = hashlib.sha256(read_bytes(path)).hexdigest()  # the content's, gzipped or not
    own = spec is not None and spec.domain_map is not None and spec.domain_map.sha256 == digest
    names = tuple(spec.domain_names) if own else ()
    return DomainSource("map", path, names, {"domain_map": digest})


def _value_order(values: list[str]) -> list[str]:
    """Sorted domain values: numerically when every one is an integer."""
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def read_domain_map(path: Path) -> tuple[dict[str, str], dict[str, str] | None]:
    """({file item id: domain value}, {file item id: original id} for ABXI's form, else None)."""
    try:
        table = json.loads(read_bytes(path))
    except ValueError as err:
        raise SeqrecError(
            f"domain map {path.name} is not valid JSON ({err}); point data.domain_map at the "
            "item -> domain map"
        ) from None
    if not isinstance(table, dict) or not table:
        raise SeqrecError(
            f"domain map {path.name} is not a JSON object of items ({{item: domain}} or "
            "{ASIN: [item index, domain]}); point data.domain_map at the item -> domain map"
        )
    values = list(table.values())
    if all(_scalar(v) for v in values):
        return {str(k): str(v) for k, v in table.items()}, None
    if all(isinstance(v, list) and len(v) == 2 and all(map(_scalar, v)) for v in values):
        index = {str(v[0]): str(k) for k, v in table.items()}
        if len(index) != len(table):
            raise SeqrecError(
                f"domain map {path.name} gives two items the same index; it is not a valid "
                "{ASIN: [item index, domain]} map: replace it"
            )
        return {str(v[0]): str(v[1]) for v in values}, index
    raise SeqrecError(
        f"domain map {path.name} mixes value shapes; every value must be a domain, or every "
        "one an [item index, domain] pair (ABXI): fix the map"
    )


def _codes(values: pl.Series, order: list[str]) -> pl.Series:
    import polars as pl

    lookup = {v: i + 1 for i, v in enumerate(order)}
    return values.replace_strict(lookup, return_dtype=pl.Int16)


def _names(source: DomainSource, order: list[str]) -> list[str]:
    if not source.names:
        return order
    if len(source.names) != len(order):
        raise SeqrecError(
            f"the catalogue names {len(source.names)} domains but the map {source.path} has "
            f"{len(order)} ({', '.join(order)}); use the catalogue's own map"
        )
    return list(source.names)


def _from_map(inter: Interactions, source: DomainSource) -> Interactions:
    import polars as pl

    from seqrec.data.values import normalise_ids

    assert source.path is not None
    domain_of, original = read_domain_map(source.path)
    frame = inter.frame.with_columns(key=pl.col("item").cast(pl.Utf8))
    known = frame["key"].is_in(list(domain_of))
    if not known.all():
        missing = frame.filter(~known)["key"].unique().sort()
        raise SeqrecError(
            f"{len(missing):,} item(s) of the interactions are not in the domain map "
            f"{source.path.name}, e.g. {missing.head(5).to_list()}; use the map written with "
            "this file"
        )
    order = _value_order(sorted(set(domain_of.values())))
    frame = frame.with_columns(domain=_codes(frame["key"].replace_strict(domain_of), order))
    if original is not None:  # ABXI: the file's indices -> the ASINs they stand for
        frame = frame.with_columns(
            item=normalise_ids(frame["key"].replace_strict(original), "item")
        )
    return inter._replace(frame=frame.drop("key"), domain_values=_names(source, order))


def _from_column(inter: Interactions, source: DomainSource) -> Interactions:
    import polars as pl

    col = source.key["domain_col"]
    frame = inter.frame.with_columns(pl.col("domain").str.strip_chars())
    empty = frame["domain"].is_null() | (frame["domain"] == "")
    if empty.any():
        raise SeqrecError(
            f"{int(empty.sum()):,} event(s) have no domain in column '{col}' (data.domain_col), "
            f"e.g. item {frame.filter(empty)['item'][0]!r}; fill them or drop those rows"
        )
    per_item = frame.group_by("item").agg(pl.col("domain").unique().sort())
    split = per_item.filter(pl.col("domain").list.len() > 1)
    if split.height:
        item, doms = split["item"][0], split["domain"][0].to_list()
        raise SeqrecError(
            f"item {item!r} is in domains {doms} (column '{col}', {split.height:,} items like "
            "it); per-domain ranking needs each item in one domain: give such items distinct "
            "ids per domain"
        )
    order = _value_order(frame["domain"].unique().to_list())
    frame = frame.with_columns(domain=_codes(frame["domain"], order))
    return inter._replace(frame=frame, domain_values=order)


def attach_domains(inter: Interactions, source: DomainSource) -> Interactions:
    """``inter`` with a ``domain`` column of codes 1..K and ``domain_values`` naming them."""
    if source.kind == "column":
        return _from_column(inter, source)
    return _from_map(inter, source)
