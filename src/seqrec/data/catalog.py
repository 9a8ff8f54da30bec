"""Public datasets by name: where to find them locally, where to fetch them, how to check them.

A name resolves to a local file first (``data_dir``, then ``$SEQREC_DATA_DIR``, then the download
cache) so that offline machines and licence-restricted copies work without any network. Only when
nothing is found locally do we download, and a download is trusted only after its sha256 matches.
Each spec also carries the preprocessing that the literature uses for that dataset, so
``dataset=ml-1m`` reproduces the SASRec/BERT4Rec numbers without extra flags.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqrec.data.download import download
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)

_S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data"
_SASREC = (
    "https://raw.githubusercontent.com/kang205/SASRec/e3738967fddab206d6eeb4fda433e7a7034dd8b1/data"
)
_ABXI = "https://raw.githubusercontent.com/DiMarzioBian/ABXI/72e52c9f85c740cb5dbdab11f7e5a70eb28ae00d/data"


@dataclass(frozen=True)
class DatasetSpec:
    """One public dataset. ``sha256=None`` means no published hash is known: verification is skipped.

    ``member`` is the file inside a zip archive, or the downloaded file's own name when the URL
    points at a plain file. ``local_candidates`` are (path relative to a data dir, format) pairs,
    tried in order, so a fuller source can be preferred over a derived one.
    ``expected_interactions`` catches truncated copies before they silently skew a benchmark.
    """

    name: str
    url: str
    sha256: str | None
    member: str
    format: str
    local_candidates: tuple[tuple[str, str], ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    expected_interactions: int | None = None
    note: str = ""
    item_metadata: tuple[str, ...] = ()
    """Item metadata files (relative to a data dir) for ``data.item_features=auto``."""
    user_metadata: tuple[str, ...] = ()
    caveats: tuple[tuple[str, str], ...] = ()
    """(local candidate, warning) pairs: a copy that parses fine but differs from the official
    data in a way that moves results is used with that warning logged once."""
    offline_hint: str = ""
    """Appended to the not-found error: another way to get the file without a download."""
    domain_map: DatasetSpec | None = None
    """Multi-domain data: the item -> domain map file (``data.domain_map=auto``), found and
    fetched like the interactions (docs/CROSS_DOMAIN.md)."""
    domain_names: tuple[str, ...] = ()
    """Names of the map's domain values, in sorted order of the values."""

    @property
    def download_path(self) -> str:
        return f"{self.name}/{Path(self.member).name}"


def _abxi(
    name: str, short: str, sha256: str, map_sha256: str, events: int, domains: tuple[str, str]
) -> DatasetSpec:
    """One of the ABXI / MERIT cross-domain files (``seq-ts``) with its item -> domain map."""
    folder, seq, item_map = (
        f"amazon/abxi/{short}",
        f"{short}_50_preprocessed.txt",
        "map_item_50.txt",
    )
    map_spec = DatasetSpec(
        name,
        f"{_ABXI}/{short}/{item_map}",
        map_sha256,
        item_map,
        "json",
        ((f"{folder}/{item_map}.gz", "json"), (f"{folder}/{item_map}", "json")),
    )
    return DatasetSpec(
        name,
        f"{_ABXI}/{short}/{seq}",
        sha256,
        seq,
        "seq-ts",
        ((f"{folder}/{seq}.gz", "seq-ts"), (f"{folder}/{seq}", "seq-ts")),
        {"domain_map": "auto", "same_day_order": "shuffle"},
        events,
        f"Amazon {domains[0]} + {domains[1]} (2014 ratings), ABXI / MERIT preprocessing: only "
        "users active in both domains, their last 50 events, day timestamps",
        domain_map=map_spec,
        domain_names=domains,
    )


CATALOG: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "ml-1m",
            "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            "ml-1m/ratings.dat",
            "ml-dat",
            (
                ("movielens/ml-1m/ratings.dat", "ml-dat"),
                ("movielens/ml-1m/ratings.dat.gz", "ml-dat"),
                ("ml-1m/ratings.dat", "ml-dat"),
                ("movielens/ml-1m/ml-1m.seq.txt.gz", "seq"),
            ),
            {"min_user_count": 5, "min_item_count": 5, "kcore": "once"},
            1_000_209,
            "MovieLens 1M; SASRec/BERT4Rec filtering -> 6,040 users, 3,416 items",
            ("movielens/ml-1m/movies.dat", "ml-1m/movies.dat"),
            ("movielens/ml-1m/users.dat", "ml-1m/users.dat"),
            (
                (
                    "movielens/ml-1m/ml-1m.seq.txt.gz",
                    "it is DiffuRec's sequence copy, which puts ratings given in the same second "
                    "in random order; ratings.dat's order of them is learnable (SASRec scores "
                    "higher on it, benchmarks/RESULTS.md), so to compare with published numbers "
                    "use the official ratings.dat or dataset=ml-1m-sasrec",
                ),
            ),
        ),
        DatasetSpec(
            "ml-1m-sasrec",
            f"{_SASREC}/ml-1m.txt",
            "b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2",
            "ml-1m.txt",
            "pairs",
            (
                ("movielens/ml-1m-sasrec/ml-1m.txt", "pairs"),
                ("movielens/ml-1m-sasrec/ml-1m.txt.gz", "pairs"),
                ("ml-1m-sasrec/ml-1m.txt", "pairs"),
            ),
            {},
            999_611,
            "MovieLens 1M exactly as SASRec, BERT4Rec, Klenitskiy & Vasilev and gSASRec train on "
            "it ('user item' per line, ids renumbered): 6,040 users, 3,416 items",
            offline_hint=(
                "; or rebuild it byte for byte from DiffuRec's ml-1m.seq.txt.gz and gSASRec's "
                "split with benchmarks/ml1m_sasrec_file.py write (seqrec repository)"
            ),
        ),
        DatasetSpec(
            "ml-20m",
            "https://files.grouplens.org/datasets/movielens/ml-20m.zip",
            None,
            "ml-20m/ratings.csv",
            "csv",
            (
                ("movielens/ml-20m/ratings.csv", "csv"),
                ("movielens/ml-20m/ratings.csv.gz", "csv"),
                ("ml-20m/ratings.csv", "csv"),
            ),
            {"min_user_count": 5, "kcore": "once"},
            20_000_263,
            "MovieLens 20M; BERT4Rec filtering (users >= 5)",
            ("movielens/ml-20m/movies.csv", "movielens/ml-20m/movies.csv.gz"),
        ),
        DatasetSpec(
            "ml-100k",
            "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
            None,
            "ml-100k/u.data",
            "pairs",
            (
                ("movielens/ml-100k/u.data.gz", "pairs"),
                ("movielens/ml-100k/u.data", "pairs"),
                ("ml-100k/u.data", "pairs"),
            ),
            {},
            100_000,
            "MovieLens 100K raw ratings (tab separated)",
            ("movielens/ml-100k/u.item", "ml-100k/u.item"),
            ("movielens/ml-100k/u.user", "ml-100k/u.user"),
        ),
        DatasetSpec(
            "amazon-beauty",
            f"{_S3REC}/Beauty.txt",
            "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            "Beauty.txt",
            "seq",
            (("amazon/s3rec/Beauty.txt.gz", "seq"), ("amazon/s3rec/Beauty.txt", "seq")),
            {},
            198_502,
            "Amazon Beauty, S3-Rec 5-core sequences (already filtered)",
            (
                "amazon/s3rec/Beauty_item2attributes.json.gz",
                "amazon/s3rec/Beauty_item2attributes.json",
            ),
        ),
        DatasetSpec(
            "amazon-video",
            f"{_SASREC}/Video.txt",
            "b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651",
            "Video.txt",
            "pairs",
            (("amazon/sasrec/Video.txt.gz", "pairs"), ("amazon/sasrec/Video.txt", "pairs")),
            {},
            287_107,
            "Amazon Video Games, SASRec preprocessing ('user item' per line)",
        ),
        DatasetSpec(
            "lastfm",
            f"{_S3REC}/LastFM.txt",
            "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
            "LastFM.txt",
            "seq",
            (("lastfm/s3rec/LastFM.txt.gz", "seq"), ("lastfm/s3rec/LastFM.txt", "seq")),
            {},
            52_551,
            "Last.fm (HetRec 2011), S3-Rec 5-core sequences",
        ),
        _abxi(
            "amazon-food-kitchen",
            "afk",
            "5f9856f574879920a70c93461add1ebc1c997b1ce6d626ba8d475315f53a4a15",
            "64a939f71c0c48ba181d6d24e384af1160812bdf244f20c58ef101f5fc54b3c3",
            173_548,
            ("food", "kitchen"),
        ),
        _abxi(
            "amazon-beauty-electronics",
            "abe",
            "e13235003725700fdc709eb78a8865bd7e4ab75dc28ae569f7a4cebcdab1e33b",
            "4e144f3fea1a5e8037cd56167a084ce4d73c6ccc123187055470b3da9818de74",
            114_129,
            ("beauty", "electronics"),
        ),
    )
}


def spec_by_sha256(digest: str) -> DatasetSpec | None:
    """The catalogue entry whose published file has this sha256 (a copy passed by path)."""
    return next((s for s in CATALOG.values() if s.sha256 == digest), None)


def list_datasets() -> list[DatasetSpec]:
    return [CATALOG[k] for k in sorted(CATALOG)]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` > ``$SEQREC_CACHE_DIR`` > ``~/.cache/seqrec`` (stores/ and downloads/ inside)."""
    root = cache_dir or os.environ.get("SEQREC_CACHE_DIR") or Path.home() / ".cache" / "seqrec"
    return Path(root).expanduser()


def with_catalog_defaults(cfg: DataConfig) -> DataConfig:
    """Fill in the dataset's literature preprocessing for fields still at the DataConfig default.

    Values are compared, not ``model_fields_set``, so a config that went through a JSON round
    trip (checkpoints, run records) prepares exactly the same data as the original.
    """
    spec = CATALOG.get(cfg.dataset)
    if spec is None or not spec.defaults or not cfg.catalog_defaults:
        return cfg
    fields = DataConfig.model_fields
    update = {k: v for k, v in spec.defaults.items() if getattr(cfg, k) == fields[k].default}
    return cfg.model_copy(update=update) if update else cfg


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(CATALOG), n=1, cutoff=0.4)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Known datasets: {', '.join(sorted(CATALOG))}; or pass a path to a file"


def _pick_in_dir(folder: Path) -> Path:
    names = ("ratings.dat", "ratings.csv", "u.data", "interactions.parquet")
    for name in names:
        for cand in (folder / name, folder / f"{name}.gz"):
            if cand.is_file():
                return cand
    found = sorted(p.name for p in folder.iterdir())[:10]
    raise SeqrecError(
        f"folder {folder} has no {', '.join(names)} (found: {found}); pass the data file itself"
    )


def _search_roots(data_dir: str | os.PathLike | None) -> list[Path]:
    roots = [data_dir, os.environ.get("SEQREC_DATA_DIR")]
    return [Path(r).expanduser() for r in roots if r]


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(
    name_or_path: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, str, DatasetSpec | None]:
    """Name or path -> (local file, format, spec). Downloads only when no local copy exists.

    The returned format is "auto" for plain paths (the reader detects it) and the candidate's
    format for catalogue names.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return (_pick_in_dir(path) if path.is_dir() else path), "auto", None
    spec = CATALOG.get(name_or_path)
    if spec is None:
        if path.suffix or os.sep in name_or_path:
            # a relative path not under the working directory: try $SEQREC_DATA_DIR, so a
            # config can name e.g. movielens/ml-1m/ratings.dat on any machine
            for root in [] if path.is_absolute() else _search_roots(data_dir):
                if (root / path).exists():
                    found = root / path
                    return (_pick_in_dir(found) if found.is_dir() else found), "auto", None
            raise SeqrecError(
                f"data file {path} does not exist (nor under $SEQREC_DATA_DIR); check data.dataset"
            )
        raise SeqrecError(f"unknown dataset '{name_or_path}'.{_suggest(name_or_path)}")
    path, fmt = locate(spec, data_dir, cache_dir)
    return path, fmt, spec


def locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, str]:
    """A catalogue file's local copy and format: the data dirs, the download cache, else a
    verified download (the interactions, and companion files such as a domain map)."""
    roots = _search_roots(data_dir)
    downloads = cache_root(cache_dir) / "downloads"
    for rel, fmt in spec.local_candidates:
        for root in [*roots, downloads]:
            if (root / rel).is_file():
                _warn_caveat(spec, rel, root / rel)
                return root / rel, fmt
    target = downloads / spec.download_path
    if not target.is_file():
        download(spec, target, roots)
    return target, spec.format


_WARNED: set[Path] = set()


def _warn_caveat(spec: DatasetSpec, rel: str, path: Path) -> None:
    note = dict(spec.caveats).get(rel)
    if note and path not in _WARNED:
        _WARNED.add(path)
        log.warning("%s: using %s; %s", spec.name, path, note)
