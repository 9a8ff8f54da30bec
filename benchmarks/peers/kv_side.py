"""Klenitskiy & Vasilev's SASRec (antklen/sasrec-bert4rec-recsys23), run from a local checkout.

    /tmp/replay-venv/bin/python benchmarks/peers/kv_side.py --kv-repo PATH --data DIR/data.npz \
        --out DIR/run --hidden 64 --blocks 2 --heads 1 --dropout 0.1 --batch-size 128 \
        --lr 1e-3 --epochs 200 --patience 10 --seed 42 --threads 2

Imports the checkout's own modules from PATH/src, as its src/run.py wires them for SASRec with
full cross-entropy (configs/SASRec.yaml without ``num_negatives``): ``datasets.CausalLMDataset``
(each user's last max_len + 1 items, inputs and next-item labels) with
``datasets.PaddingCollateFn`` in a shuffled ``DataLoader``, ``models.SASRec`` (``add_head=True``:
logits over every item at every position) and ``modules.SeqRec`` (CE, Adam at the given lr),
trained by a ``pytorch_lightning.Trainer`` on CPU. Nothing of theirs is copied or patched.
Their run.py itself is not called: it needs hydra, ClearML and a GPU (``gpus=1``), and its
validation is its own top-10 loop, where seqrec's rule is wanted. Their ids are seqrec's
(1..n_items, 0 = PAD).

Not theirs: the validation after each epoch (``protocol.PeerRun``, seqrec's full-ranking rule;
their model's last-position hidden state times its item table, which is what their
``add_head=True`` logits are at that position), early stopping and the test of the best weights.
Their pinned stack (torch 1.13, pytorch_lightning 1.6.5) is replaced by the peer venv's (torch
2.13, pytorch_lightning 2.x); the modules used need nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Data, PeerRun, add_common_args, fit_with_clock, right_padded

NEEDED = {  # file -> names it must define (what this adapter calls)
    "src/models.py": ("class SASRec",),
    "src/modules.py": ("class SeqRec",),
    "src/datasets.py": ("class CausalLMDataset", "class PaddingCollateFn"),
}


def check_repo(path: str) -> str | None:
    """None when ``path`` holds the code this adapter runs, else the one-line reason."""
    root = Path(path)
    for rel, names in NEEDED.items():
        f = root / rel
        if not f.is_file():
            return (
                f"--kv-repo {path}: no {rel} there; pass a checkout of "
                "github.com/antklen/sasrec-bert4rec-recsys23 (its folder holding src/)"
            )
        text = f.read_text(errors="replace")
        missing = [n for n in names if n not in text]
        if missing:
            return (
                f"--kv-repo {path}: {rel} does not define {', '.join(missing)}; not the "
                "antklen/sasrec-bert4rec-recsys23 code this benchmark runs"
            )
    return None


def load_their_modules(repo: Path) -> dict:
    """Their src/datasets.py, models.py and modules.py, imported from the checkout (their
    generic names must not resolve to an installed package such as HF ``datasets``)."""
    src = str(repo.resolve() / "src")
    sys.path.insert(0, src)
    mods = {}
    for name in ("datasets", "models", "modules"):
        sys.modules.pop(name, None)
        mods[name] = importlib.import_module(name)
        if not str(Path(mods[name].__file__).resolve()).startswith(src):
            sys.exit(f"--kv-repo: '{name}' resolved to {mods[name].__file__}, not {src}")
    return mods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    ap.add_argument("--kv-repo", required=True)
    args = ap.parse_args()
    if why := check_repo(args.kv_repo):
        sys.exit(why)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import pandas as pd
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    their = load_their_modules(Path(args.kv_repo))
    CausalLMDataset, PaddingCollateFn = (
        their["datasets"].CausalLMDataset,
        their["datasets"].PaddingCollateFn,
    )
    SASRec, SeqRec = their["models"].SASRec, their["modules"].SeqRec

    data = Data(args.data)
    n, max_len = data.n_items, data.max_len
    lens = np.diff(data.offsets["train"])
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(len(lens)), lens),
            "item_id": data.items["train"],
            "time_idx": np.concatenate([np.arange(k) for k in lens]),
        }
    )

    pl.seed_everything(args.seed, verbose=False)
    loader = DataLoader(
        CausalLMDataset(frame, max_length=max_len),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=0,
        collate_fn=PaddingCollateFn(),
        generator=torch.Generator().manual_seed(args.seed),
    )
    model = SASRec(
        item_num=n,
        maxlen=max_len,
        hidden_units=args.hidden,
        num_blocks=args.blocks,
        num_heads=args.heads,
        dropout_rate=args.dropout,
    )
    module = SeqRec(model, lr=args.lr, predict_top_k=10, filter_seen=True)

    def score(hists: list[np.ndarray]) -> torch.Tensor:
        ids, last = right_padded(hists, max_len)
        model.add_head = False  # hidden states; the tied head is applied to the last one only
        try:
            hidden = model(ids, (ids != 0).float())
        finally:
            model.add_head = True
        h = hidden[torch.arange(len(hists)), last]
        scores = h @ model.item_emb.weight.T  # [b, n + 1], column 0 = PAD
        scores[:, 0] = -torch.inf
        return scores

    versions = {
        "kv_repo": str(Path(args.kv_repo).resolve()),
        "pytorch_lightning": version("pytorch_lightning"),
        "torch": torch.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }
    run = PeerRun("kv", args, data, model, score, versions)

    fit_with_clock(pl, run, args.epochs, module, train_dataloaders=loader)
    run.finish({"optimizer": "Adam (their SeqRec: torch defaults, betas (0.9, 0.999)), no "
                             "warm-up, no gradient clipping"})  # fmt: skip


if __name__ == "__main__":
    main()
