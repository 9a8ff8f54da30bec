"""The model package format, both ways: what `Run.export` writes and `Run` reads back.

  OUT_DIR/
    manifest.json          format + seqrec version, model, n_items, dataset, metrics and
                           protocol from the run, and the sha256 of every other file
    config.yaml            the run's resolved config (catalogue defaults filled in)
    weights.safetensors    best-on-validation weights (never a pickle)
    items.parquet          internal id (1..N) -> original item id, and training popularity
    item_metadata.parquet  optional: item_id + metadata columns (e.g. title, genres)

This module loads no model: `seqrec.run.Run` does, for packages and run folders alike, so
whatever loads from its run loads from its package. `write_package` fills a temporary sibling
and swaps it into place: readers never see half a package, and an existing destination is
replaced only when it is a package holding nothing else. `read_package` checks the manifest
and every hash before reading anything, so a corrupted, edited or non-safetensors package is
refused with one `SeqrecError` line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from safetensors import SafetensorError, safe_open

from seqrec.data import prepare
from seqrec.data.batches import flat_slices
from seqrec.data.catalog import with_catalog_defaults
from seqrec.data.ingest import normalise_ids
from seqrec.errors import SeqrecError
from seqrec.fsutil import (
    describe,
    foreign_entries,
    is_run_folder,
    read_format,
    swap_dir,
    unwritable,
)
from seqrec.recipe import RunConfig, saved_config
from seqrec.trainer.checkpoint import save_weights
from seqrec.version import __version__

FORMAT = "seqrec-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ITEMS = "items.parquet"
METADATA = "item_metadata.parquet"
CONFIG = "config.yaml"
_UNSAFE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".npy", ".npz")
_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?")  # a header naming a column so is a data row
PACKAGE_FILES = frozenset({MANIFEST, CONFIG, WEIGHTS, ITEMS, METADATA})
"""Every file a package folder holds; a folder with anything else is never replaced."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- item metadata


def _decode(raw: bytes) -> str:
    try:  # the data readers' rule: UTF-8 when valid, latin-1 otherwise (old MovieLens files)
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _first_line(err: BaseException) -> str:
    """The first line of a reader's error: polars and arrow messages run over several."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else "no detail"


def read_item_metadata(path: Path, id_col: str | None = None) -> pl.DataFrame:
    """MovieLens `id::title::genres` (.dat), CSV/TSV with a header, or parquet -> frame keyed by
    ``item_id`` (str, same normalisation as the interaction readers)."""
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(f"item metadata file {path} does not exist; check --item-metadata")
    raw = path.read_bytes()
    if not raw.strip():
        raise SeqrecError(f"item metadata file {path} is empty; pass a file with a row per item")
    try:
        if raw[:4] == b"PAR1" or path.suffix in {".parquet", ".pq"}:
            frame = pl.read_parquet(io.BytesIO(raw))
        elif b"::" in raw.split(b"\n", 1)[0]:
            rows = [ln.split("::") for ln in _decode(raw).splitlines() if ln.strip()]
            if any(len(r) != 3 for r in rows):
                raise SeqrecError(f"{path}: MovieLens metadata lines must be `id::title::genres`")
            frame = pl.DataFrame(
                {
                    "item_id": [r[0] for r in rows],
                    "title": [r[1] for r in rows],
                    "genres": [[g for g in r[2].strip().split("|") if g] for r in rows],
                },
                schema={"item_id": pl.Utf8, "title": pl.Utf8, "genres": pl.List(pl.Utf8)},
            )
            id_col = id_col or "item_id"
        else:
            text = _decode(raw)
            header = text.split("\n", 1)[0]
            sep = max((",", "\t", ";", "|"), key=header.count)
            frame = pl.read_csv(io.StringIO(text), separator=sep, infer_schema=False)
    except SeqrecError:
        raise
    except Exception as err:  # polars / arrow raise many error types on malformed files
        raise SeqrecError(
            f"cannot read item metadata {path} ({type(err).__name__}: {_first_line(err)}); "
            "pass a CSV/TSV with a header, a movies.dat or a Parquet file"
        ) from None
    if id_col is None:
        guesses = ("item_id", "movieId", "movie_id", "item", "id", "asin", "itemId")
        id_col = next((c for c in guesses if c in frame.columns), None)
    if id_col is not None and id_col not in frame.columns:
        raise SeqrecError(f"{path}: no column {id_col!r} (columns: {frame.columns}); pass one")
    if id_col is not None and _NUMBER.fullmatch(id_col.strip()):  # a header is never a number
        raise SeqrecError(f"{path}: line 1 is data, not a header; add a header line (item_id,...)")
    if id_col is None:
        raise SeqrecError(
            f"{path}: no item id column (columns: {frame.columns}); pass --metadata-id-col"
        )
    ids = normalise_ids(frame[id_col], "metadata item").cast(pl.Utf8).alias("item_id")
    frame = frame.drop(id_col).insert_column(0, ids)
    if frame["item_id"].is_duplicated().any():
        dup = frame.filter(pl.col("item_id").is_duplicated())["item_id"].head(3).to_list()
        raise SeqrecError(
            f"{path}: item ids repeat in the metadata (e.g. {dup}); keep one row each"
        )
    return frame


# ---------------------------------------------------------------------------------- export


def train_popularity(cfg, item_ids: np.ndarray, run_dir: Path, load=None) -> tuple[np.ndarray, str]:
    """Training-split interaction counts per internal id ([n_items + 1], PAD = 0), and the
    dataset's name, from the run's own data, which must still hold the run's items (``load``
    returns it; an update's adds its events files to ``data.dataset``)."""
    try:
        store, split = load() if load is not None else prepare(cfg.data)
    except SeqrecError as err:
        raise SeqrecError(
            f"export counts item popularity on the run's training data, which failed to load: {err}"
        ) from None
    if not np.array_equal(np.asarray(store.item_ids).astype(str), item_ids):
        raise SeqrecError(
            f"the dataset's items changed since the run in {run_dir} was trained; "
            "export with the data the run used"
        )
    _, flat = flat_slices(split.train.starts, split.train.ends)
    pop = np.bincount(np.asarray(store.items)[flat], minlength=store.n_items + 1).astype(np.int64)
    pop[0] = 0
    return pop, store.name


def check_package_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, a destination that must not be replaced.

    Only a seqrec package with nothing but a package's files may be replaced (``overwrite``);
    a run folder, a user's folder or a package with foreign files in it never is.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SeqrecError(f"{out_dir} is a file; choose a folder path for the package")
    why = unwritable(out_dir, "package folder")
    if why is not None:
        raise SeqrecError(why)
    if not (out_dir.exists() and any(out_dir.iterdir())):
        return
    if is_run_folder(out_dir):
        raise SeqrecError(
            f"{out_dir} is a seqrec run folder, not a package; choose an empty or new folder "
            "for the package"
        )
    foreign = foreign_entries(out_dir, PACKAGE_FILES.__contains__)
    if foreign or read_format(out_dir / MANIFEST, FORMAT) is None:  # names alone prove nothing
        raise SeqrecError(
            f"{out_dir} holds files that are not part of a seqrec model package ("
            f"{describe(foreign or sorted(p.name for p in out_dir.iterdir()))}); choose an empty "
            "or new folder for the package"
        )
    if not overwrite:
        raise SeqrecError(
            f"{out_dir} already exists; pass --overwrite to replace it or choose another folder"
        )


def write_package(
    out_dir: Path,
    cfg: RunConfig,
    model,
    item_ids: np.ndarray,
    results: dict[str, Any],
    popularity: np.ndarray,
    dataset_name: str,
    metadata: pl.DataFrame | None = None,
    metadata_source: str | None = None,
) -> dict[str, Any]:
    """Write the package folder for a loaded ``model`` and its run's parts; returns the
    manifest. The caller has checked ``out_dir`` with `check_package_target`."""
    out_dir = Path(out_dir)
    n_items = len(item_ids) - 1
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        resolved = cfg.model_copy(update={"data": with_catalog_defaults(cfg.data)})
        (tmp / CONFIG).write_text(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))
        save_weights(tmp / WEIGHTS, model, {"format": FORMAT, "model": cfg.model.name})
        pl.DataFrame(
            {
                "internal_id": np.arange(1, n_items + 1, dtype=np.int64),
                "item_id": item_ids[1:].astype(str),
                "popularity": popularity[1:],
            }
        ).write_parquet(tmp / ITEMS)
        meta_info = None
        if metadata is not None:
            known = set(item_ids[1:].astype(str).tolist())
            kept = metadata.filter(pl.col("item_id").is_in(list(known)))
            kept.write_parquet(tmp / METADATA)
            meta_info = {
                "source": metadata_source,
                "columns": kept.columns[1:],
                "items_with_metadata": kept.height,
                "items_without_metadata": n_items - kept.height,
            }
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "seqrec_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": cfg.model.name,
            "n_items": n_items,
            "max_len": cfg.data.max_len,
            "weights": WEIGHTS,
            "dataset": {**results.get("dataset", {}), "name": dataset_name},
            "metrics": {s: results[s]["metrics"] for s in ("valid", "test") if s in results},
            "protocol": results.get("test", {}).get("protocol"),
            "params": results.get("params"),
            "best_epoch": results.get("best_epoch"),
            "item_metadata": meta_info,
            "popularity": "training-split interaction counts",
            **({"continued": results["continued"]} if results.get("continued") else {}),
            "files": {name: sha256_file(tmp / name) for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=float) + "\n")
        for p in tmp.iterdir():
            p.chmod(0o644)
        if out_dir.exists():  # checked again: a file added during the export is never lost
            check_package_target(out_dir, overwrite=True)
        swap_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# ------------------------------------------------------------------------------------ load


_WROTE = "pass the folder `seqrec export` wrote"


def _corrupt(path: Path, what: str) -> SeqrecError:
    return SeqrecError(f"model package {path} is corrupted: {what}; export it again")


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and verify a package's manifest and every file's sha256; returns the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise SeqrecError(f"model package {path} does not exist or is not a folder; {_WROTE}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        if (path / "config.yaml").is_file() and (path / "best.safetensors").exists():
            raise SeqrecError(
                f"{path} is a training run, not a model package; "
                f"make one with `seqrec export {path} PACKAGE_DIR`"
            )
        raise SeqrecError(f"{path} is not a seqrec model package (no {MANIFEST}); {_WROTE}")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise SeqrecError(
            f"model package {path} is corrupted: unreadable {MANIFEST} ({type(err).__name__}); "
            "export it again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SeqrecError(f"{path} is not a seqrec model package (foreign {MANIFEST}); {_WROTE}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SeqrecError(
            f"model package {path} has format version {version!r}; this seqrec "
            f"({__version__}) reads version {FORMAT_VERSION}: export it again with this version"
        )
    files = manifest.get("files")
    weights = manifest.get("weights")
    if not (isinstance(files, dict) and files and all(isinstance(v, str) for v in files.values())):
        raise _corrupt(path, f"{MANIFEST} lists no file hashes")
    unsafe = [n for n in files if str(n).lower().endswith(_UNSAFE_SUFFIXES)]
    if weights != WEIGHTS or unsafe or WEIGHTS not in files:
        raise SeqrecError(
            f"model package {path} does not hold safetensors weights "
            f"(weights={weights!r}{', files ' + str(unsafe) if unsafe else ''}); "
            "seqrec never unpickles weights: export the run again"
        )
    for name in (CONFIG, ITEMS):
        if name not in files:
            raise _corrupt(path, f"{name} is not in the manifest")
    for name, digest in files.items():
        if Path(name).name != name or name in {"", ".", ".."}:
            raise _corrupt(path, f"bad file name {name!r}")
        fpath = path / name
        if not fpath.is_file():
            raise _corrupt(path, f"{name} is missing")
        if sha256_file(fpath) != digest:
            raise SeqrecError(
                f"model package {path} is corrupted: {name} does not match its sha256 in "
                f"{MANIFEST}; export it again"
            )
    return manifest


@dataclass
class PackageContents:
    """A verified package's parts, read without building a model (`seqrec.run.Run` loads it)."""

    manifest: dict[str, Any]
    config: RunConfig
    item_ids: np.ndarray  # internal id -> original id (str); index 0 = PAD
    popularity: np.ndarray  # [n_items + 1] training counts, PAD = 0
    metadata: pl.DataFrame | None
    weights: Path


def read_package(path: str | os.PathLike) -> PackageContents:
    """Verify a package (manifest, every sha256, safetensors header) and read its parts.

    The catalogue size comes from the manifest and items.parquet, never from a weight's name,
    so a model without a per-id item table (SRT) reads like any other.
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:  # the header check alone tells safetensors from anything else before reading tensors
        with safe_open(str(path / WEIGHTS), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqrecError(
            f"model package {path}: {WEIGHTS} is not a valid safetensors file ({err}); "
            "export the run again"
        ) from None
    try:
        cfg = saved_config(yaml.safe_load((path / CONFIG).read_text()))
    except yaml.YAMLError:
        raise SeqrecError(f"model package {path} is corrupted: {CONFIG} is not YAML") from None
    try:
        items = pl.read_parquet(path / ITEMS)
        metadata = pl.read_parquet(path / METADATA) if METADATA in manifest["files"] else None
    except Exception as err:  # arrow raises several error types on damaged parquet
        raise SeqrecError(
            f"model package {path} is corrupted: cannot read its parquet files ({err})"
        ) from None
    n_items = manifest.get("n_items")
    if not (
        isinstance(n_items, int)
        and {"internal_id", "item_id", "popularity"} <= set(items.columns)
        and items["internal_id"].to_list() == list(range(1, n_items + 1))
    ):
        raise SeqrecError(
            f"model package {path} is corrupted: {ITEMS} does not hold {n_items} items"
        )
    item_ids = np.concatenate([["<pad>"], items["item_id"].cast(pl.Utf8).to_numpy()]).astype(str)
    popularity = np.concatenate([[0], items["popularity"].to_numpy()]).astype(np.int64)
    return PackageContents(manifest, cfg, item_ids, popularity, metadata, path / WEIGHTS)


def is_package(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()
