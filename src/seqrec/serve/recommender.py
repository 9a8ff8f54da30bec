"""Model + id maps -> top-K recommendations for histories given in original item ids.

Uses the evaluator's `score_chunks`, so what is served is scored exactly as it was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from seqrec.config import RunConfig
from seqrec.errors import SeqrecError
from seqrec.eval.ranking import score_chunks
from seqrec.models import build_model
from seqrec.train.checkpoint import load_weights


@dataclass
class Recommender:
    model: nn.Module
    item_ids: np.ndarray  # internal id -> original id (str); index 0 = PAD
    max_len: int
    device: torch.device

    @classmethod
    def from_run(cls, run_dir: Path, device: str = "cpu") -> Recommender:
        from seqrec.train.run import load_run_config

        run_dir = Path(run_dir)
        cfg: RunConfig = load_run_config(run_dir)
        ids_path = run_dir / "item_ids.npy"
        if not ids_path.is_file():
            raise SeqrecError(f"{run_dir} has no item_ids.npy; it is not a finished seqrec run")
        item_ids = np.load(ids_path, allow_pickle=False)
        model = build_model(cfg.model, len(item_ids) - 1, cfg.data.max_len)
        load_weights(run_dir / "best.safetensors", model)
        return cls(model.to(device).eval(), item_ids, cfg.data.max_len, torch.device(device))

    def encode(self, histories: list[list[str]], skip_unknown: bool = False) -> list[np.ndarray]:
        """Original item ids -> internal ids (vectorised over all histories at once)."""
        lookup = pl.DataFrame(
            {
                "orig": self.item_ids[1:].astype(str),
                "idx": np.arange(1, len(self.item_ids), dtype=np.int64),
            }
        )
        lens = np.array([len(h) for h in histories], dtype=np.int64)
        flat = pl.DataFrame({"orig": [str(x) for h in histories for x in h]})
        idx = flat.join(lookup, on="orig", how="left", maintain_order="left")["idx"].to_numpy()
        unknown = np.isnan(idx) if idx.dtype.kind == "f" else np.zeros(len(idx), bool)
        if unknown.any() and not skip_unknown:
            bad = sorted(set(flat["orig"].to_numpy()[unknown].tolist()))[:5]
            raise SeqrecError(
                f"{int(unknown.sum())} history items are not in the model's catalogue "
                f"(e.g. {', '.join(bad)}); remove them or pass --skip-unknown"
            )
        idx = np.where(unknown, 0, np.nan_to_num(idx)).astype(np.int64)
        return [a[a != 0] for a in np.split(idx, np.cumsum(lens)[:-1])]

    @torch.inference_mode()
    def recommend(
        self, histories: list[np.ndarray], k: int = 10, exclude_seen: bool = True, chunk: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (internal item ids [n, k], scores [n, k]) for each history of internal ids.

        A history that leaves fewer than k candidates (unseen items) gets item 0 (PAD) with
        score -inf in the slots it cannot fill.
        """
        if k < 1 or k > len(self.item_ids) - 1:
            raise SeqrecError(
                f"k={k} must be between 1 and the catalogue size {len(self.item_ids) - 1}"
            )
        lens = np.array([len(h) for h in histories], dtype=np.int64)
        if (lens == 0).any():
            raise SeqrecError(
                f"{int((lens == 0).sum())} histories are empty after id mapping; "
                "every history needs at least one known item"
            )
        flat = np.concatenate(histories).astype(np.int64)
        ends = np.cumsum(lens)
        starts = ends - lens
        top_items = np.zeros((len(histories), k), dtype=np.int64)
        top_scores = np.zeros((len(histories), k), dtype=np.float32)
        for pos, scores, allowed in score_chunks(
            self.model, flat, starts, ends, self.max_len, chunk, self.device, exclude_seen
        ):
            scores = scores.masked_fill(~allowed, float("-inf"))
            val, idx = scores.topk(k, dim=1)
            idx = idx.masked_fill(val == float("-inf"), 0)  # never serve a masked (seen) item
            top_items[pos] = idx.cpu().numpy()
            top_scores[pos] = val.cpu().numpy()
        return top_items, top_scores

    def decode(self, internal: np.ndarray) -> np.ndarray:
        return self.item_ids[internal]
