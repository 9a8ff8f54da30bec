"""The pipeline's entry points: ``data.item_features`` / ``data.user_features`` of a
`DataConfig` -> files (a path, or ``auto``: the catalogue's metadata file, else a known file
next to the interactions) -> one `Features` table aligned to the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqrec.data.catalog import CATALOG, _search_roots, resolve
from seqrec.data.features.alignment import align
from seqrec.data.features.fields import Features
from seqrec.data.features.readers import parse_file
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

ITEM_FILES = (
    "movies.dat",
    "u.item",
    "movies.csv",
    "*_item2attributes.json",
    "*item2attributes.json",
)
USER_FILES = ("users.dat", "u.user")


def _sibling_candidates(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for pat in patterns:
        for suffix in ("", ".gz"):
            found.extend(sorted(folder.glob(pat + suffix)))
    return found


def _find(spec_value: str, cfg: DataConfig, which: str) -> list[Path]:
    """Paths behind a config value: "auto" (catalogue metadata, else a known file next to the
    interactions), or a path (absolute, relative to the working dir, or under $SEQREC_DATA_DIR)."""
    roots = _search_roots(None)
    if spec_value != "auto":
        out = []
        for part in spec_value.split(","):
            p = Path(part.strip()).expanduser()
            cands = [p] + [r / p for r in roots if not p.is_absolute()]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                raise SeqrecError(
                    f"data.{which} file {part.strip()} does not exist (looked in the working "
                    "directory and $SEQREC_DATA_DIR); fix the path or set it to null"
                )
            out.append(hit)
        return out
    spec = CATALOG.get(cfg.dataset)
    rels = getattr(spec, "item_metadata" if which == "item_features" else "user_metadata", ())
    for rel in rels or ():
        for root in roots:
            if (root / rel).is_file():
                return [root / rel]
    path, _, _ = resolve(cfg.dataset, cache_dir=cfg.cache_dir)
    found = _sibling_candidates(path.parent, ITEM_FILES if which == "item_features" else USER_FILES)
    if not found:
        raise SeqrecError(
            f"data.{which}=auto found no metadata file for '{cfg.dataset}' (looked for "
            f"{', '.join(ITEM_FILES if which == 'item_features' else USER_FILES)} next to "
            f"{path}); give the file's path instead"
        )
    return found[:1]


def _load(
    spec_value: str, cfg: DataConfig, target: np.ndarray, pad_row: bool, which: str
) -> Features:
    """Every file behind ``spec_value`` aligned to ``target`` and merged; a file that matches
    no id is refused, since it almost always belongs to another dataset."""
    feats = None
    for path in _find(spec_value, cfg, which):
        part = align(parse_file(path), target, pad_row, str(path))
        if part.coverage == 0.0:
            raise SeqrecError(
                f"{path} matches none of the dataset's {'item' if pad_row else 'user'} ids "
                f"(e.g. {target[1 if pad_row else 0]!r}); it belongs to another dataset"
            )
        feats = part if feats is None else feats.merge(part)
    assert feats is not None
    return feats


def load_item_features(cfg: DataConfig, store) -> Features | None:
    """``cfg.item_features`` aligned to ``store.item_ids`` ([n_items + 1] rows, 0 = PAD), with
    ``cfg.item_feature_fields`` selected (None = all); None when no features are configured."""
    if not cfg.item_features:
        return None
    feats = _load(
        cfg.item_features, cfg, np.asarray(store.item_ids).astype(str), True, "item_features"
    )
    return feats.select(cfg.item_feature_fields)


def load_user_features(cfg: DataConfig, store) -> Features | None:
    """``cfg.user_features`` aligned to store rows ``store.user_ids`` ([n_users] rows)."""
    if not cfg.user_features:
        return None
    feats = _load(
        cfg.user_features, cfg, np.asarray(store.user_ids).astype(str), False, "user_features"
    )
    return feats.select(cfg.user_feature_fields)
