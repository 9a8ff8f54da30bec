"""Model packages: everything serving needs from a finished run, in one verifiable folder.

`seqrec export RUN_DIR OUT_DIR` writes

  OUT_DIR/
    manifest.json          format + seqrec version, model, n_items, dataset, metrics and
                           protocol from the run, and the sha256 of every other file
    config.yaml            the run's resolved config (catalogue defaults filled in)
    weights.safetensors    best-on-validation weights (never a pickle)
    items.parquet          internal id (1..N) -> original item id, and training popularity
    item_metadata.parquet  optional: item_id + metadata columns (e.g. title, genres)

`load` (also `seqrec.load`) checks the manifest and every hash before reading anything, so a
corrupted, edited or non-safetensors package is refused with one `SeqrecError` line. The folder
is written into a temporary sibling and renamed into place: readers never see half a package.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from seqrec import __version__
from seqrec.errors import SeqrecError
from seqrec.fsutil import swap_dir

FORMAT = "seqrec-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ITEMS = "items.parquet"
METADATA = "item_metadata.parquet"
CONFIG = "config.yaml"
_UNSAFE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".npy", ".npz")


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


def read_item_metadata(path: Path, id_col: str | None = None) -> pl.DataFrame:
    """MovieLens `id::title::genres` (.dat), CSV/TSV with a header, or parquet -> frame keyed by
    ``item_id`` (str, same normalisation as the interaction readers)."""
    from seqrec.data.ingest import normalise_ids

    path = Path(path)
    if not path.is_file():
        raise SeqrecError(f"item metadata file {path} does not exist; check --item-metadata")
    raw = path.read_bytes()
    if not raw.strip():
        raise SeqrecError(f"item metadata file {path} is empty")
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
            f"cannot read item metadata {path} ({type(err).__name__}: {err})"
        ) from None
    if id_col is None:
        guesses = ("item_id", "movieId", "movie_id", "item", "id", "asin", "itemId")
        id_col = next((c for c in guesses if c in frame.columns), None)
    if id_col is None or id_col not in frame.columns:
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


def _train_popularity(cfg, item_ids: np.ndarray, run_dir: Path) -> tuple[np.ndarray, str]:
    """Training-split interaction counts per internal id ([n_items + 1], PAD = 0)."""
    from seqrec.data import prepare
    from seqrec.data.batches import flat_slices

    try:
        store, split = prepare(cfg.data)
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


def export_package(
    run_dir: Path,
    out_dir: Path,
    item_metadata: Path | None = None,
    metadata_id_col: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a package for the finished run in ``run_dir``; returns its manifest."""
    from seqrec.data.catalog import with_catalog_defaults
    from seqrec.serve.recommender import Recommender
    from seqrec.train.checkpoint import save_weights
    from seqrec.train.run import load_run_config

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_target(out_dir, overwrite)
    cfg = load_run_config(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise SeqrecError(
            f"the run in {run_dir} has not finished (no results.json); export it once "
            "`seqrec train` has evaluated the best weights"
        )
    results = json.loads(results_path.read_text())
    rec = Recommender.from_run(run_dir)  # checks the weights fit the config
    metadata = None
    if item_metadata is not None:
        metadata = read_item_metadata(item_metadata, metadata_id_col)
    popularity, dataset_name = _train_popularity(cfg, rec.item_ids, run_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        resolved = cfg.model_copy(update={"data": with_catalog_defaults(cfg.data)})
        (tmp / CONFIG).write_text(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))
        save_weights(tmp / WEIGHTS, rec.model, {"format": FORMAT, "model": cfg.model.name})
        pl.DataFrame(
            {
                "internal_id": np.arange(1, rec.n_items + 1, dtype=np.int64),
                "item_id": rec.item_ids[1:].astype(str),
                "popularity": popularity[1:],
            }
        ).write_parquet(tmp / ITEMS)
        meta_info = None
        if metadata is not None:
            known = set(rec.item_ids[1:].astype(str).tolist())
            kept = metadata.filter(pl.col("item_id").is_in(list(known)))
            kept.write_parquet(tmp / METADATA)
            meta_info = {
                "source": Path(item_metadata).name,
                "columns": kept.columns[1:],
                "items_with_metadata": kept.height,
                "items_without_metadata": rec.n_items - kept.height,
            }
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "seqrec_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": cfg.model.name,
            "n_items": rec.n_items,
            "max_len": cfg.data.max_len,
            "weights": WEIGHTS,
            "dataset": {**results.get("dataset", {}), "name": dataset_name},
            "metrics": {s: results[s]["metrics"] for s in ("valid", "test") if s in results},
            "protocol": results.get("test", {}).get("protocol"),
            "params": results.get("params"),
            "best_epoch": results.get("best_epoch"),
            "item_metadata": meta_info,
            "popularity": "training-split interaction counts",
            "files": {name: sha256_file(tmp / name) for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=float) + "\n")
        for p in tmp.iterdir():
            p.chmod(0o644)
        swap_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SeqrecError(f"{out_dir} is a file; choose a folder path for the package")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise SeqrecError(
                f"{out_dir} already exists; pass --overwrite to replace it or choose another folder"
            )
        if not (out_dir / MANIFEST).is_file():
            raise SeqrecError(
                f"{out_dir} is not empty and not a seqrec package; refusing to replace it even "
                "with --overwrite (choose another folder)"
            )


# ------------------------------------------------------------------------------------ load


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and verify a package's manifest and every file's sha256; returns the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise SeqrecError(f"model package {path} does not exist or is not a folder")
    mpath = path / MANIFEST
    if not mpath.is_file():
        if (path / "config.yaml").is_file() and (path / "best.safetensors").exists():
            raise SeqrecError(
                f"{path} is a training run, not a model package; "
                f"make one with `seqrec export {path} PACKAGE_DIR`"
            )
        raise SeqrecError(f"{path} is not a seqrec model package (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise SeqrecError(
            f"model package {path} is corrupted: unreadable {MANIFEST} ({type(err).__name__}); "
            "export it again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SeqrecError(f"{path} is not a seqrec model package ({MANIFEST} has another format)")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SeqrecError(
            f"model package {path} has format version {version!r}; this seqrec "
            f"({__version__}) reads version {FORMAT_VERSION}: export it again with this version"
        )
    files = manifest.get("files")
    weights = manifest.get("weights")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise SeqrecError(f"model package {path} is corrupted: {MANIFEST} lists no file hashes")
    unsafe = [n for n in files if str(n).lower().endswith(_UNSAFE_SUFFIXES)]
    if weights != WEIGHTS or unsafe or WEIGHTS not in files:
        raise SeqrecError(
            f"model package {path} does not hold safetensors weights "
            f"(weights={weights!r}{', files ' + str(unsafe) if unsafe else ''}); "
            "seqrec never unpickles weights: export the run again"
        )
    for name in (CONFIG, ITEMS):
        if name not in files:
            raise SeqrecError(f"model package {path} is corrupted: {name} is not in the manifest")
    for name, digest in files.items():
        if Path(name).name != name or name in {"", ".", ".."}:
            raise SeqrecError(f"model package {path} is corrupted: bad file name {name!r}")
        fpath = path / name
        if not fpath.is_file():
            raise SeqrecError(f"model package {path} is corrupted: {name} is missing")
        if sha256_file(fpath) != digest:
            raise SeqrecError(
                f"model package {path} is corrupted: {name} does not match its sha256 in "
                f"{MANIFEST}; export it again"
            )
    return manifest


def load(path: str | os.PathLike, device: str = "cpu"):
    """Verify and load a model package -> `seqrec.serve.recommender.Recommender`."""
    import torch
    from safetensors import SafetensorError, safe_open

    from seqrec.models import build_model
    from seqrec.recipe import build_config
    from seqrec.serve.recommender import Recommender

    path = Path(path)
    manifest = read_manifest(path)
    try:  # the header check alone tells safetensors from anything else before reading tensors
        with safe_open(str(path / WEIGHTS), framework="pt") as fh:
            names = set(fh.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqrecError(
            f"model package {path}: {WEIGHTS} is not a valid safetensors file ({err}); "
            "export the run again"
        ) from None
    try:
        cfg = build_config(yaml.safe_load((path / CONFIG).read_text()))
    except yaml.YAMLError:
        raise SeqrecError(f"model package {path} is corrupted: {CONFIG} is not YAML") from None
    try:
        items = pl.read_parquet(path / ITEMS)
        metadata = pl.read_parquet(path / METADATA) if METADATA in manifest["files"] else None
    except Exception as err:  # arrow raises several error types on damaged parquet
        raise SeqrecError(
            f"model package {path} is corrupted: cannot read its parquet files ({err})"
        ) from None
    n_items = int(manifest.get("n_items", -1))
    if items.height != n_items or items["internal_id"].to_list() != list(range(1, n_items + 1)):
        raise SeqrecError(
            f"model package {path} is corrupted: {ITEMS} does not hold {n_items} items"
        )
    item_ids = np.concatenate([["<pad>"], items["item_id"].cast(pl.Utf8).to_numpy()]).astype(str)
    popularity = np.concatenate([[0], items["popularity"].to_numpy()]).astype(np.int64)
    model = build_model(cfg.model, n_items, cfg.data.max_len)
    if "item_emb.weight" not in names:
        raise SeqrecError(f"model package {path}: {WEIGHTS} holds no {cfg.model.name} weights")
    from seqrec.models.inputs import attach_for_catalogue
    from seqrec.train.checkpoint import load_weights

    attach_for_catalogue(model, cfg, item_ids)  # features are data: re-read from data.item_features
    load_weights(path / WEIGHTS, model)
    return Recommender(
        model.to(device).eval(),
        item_ids,
        cfg.data.max_len,
        torch.device(device),
        popularity=popularity,
        metadata=metadata,
        info=manifest,
    )


def is_package(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()
