"""RePlay's SASRec, trained epoch by epoch on the data time_to_quality.py hands over.

    /tmp/replay-venv/bin/python benchmarks/peers/replay_side.py --data DIR/data.npz --out DIR/run \
        --hidden 64 --blocks 2 --heads 1 --dropout 0.1 --batch-size 128 --lr 1e-3 \
        --epochs 200 --patience 10 --seed 42 --threads 2

Runs RePlay (pip ``replay-rec``, 0.22) through the API 0.22 points to (its older
``replay.models.nn.sequential.SasRec`` is deprecated "Use replay.nn.sequential.SasRec and
replay.nn.lightning.LightningModule instead"): ``SasRec.from_params`` (RePlay's SASRec body,
blocks laid out as the original SASRec code, ReLU feed-forward of the model width, full CE over all
items, embeddings tied to the output), ``replay.nn.lightning.LightningModule`` with RePlay's
``OptimizerFactory`` (Adam, betas (0.9, 0.98), the given lr), ``ParquetModule`` with
``make_default_sasrec_transforms`` for the training batches (each user's last max_len + 1 items,
left-padded), and a Lightning ``Trainer`` on CPU. Nothing of RePlay is copied or patched.

Not RePlay's: the validation after each epoch (``protocol.PeerRun``: seqrec's full-ranking rule
on the model's own last-position logits, outside the training clock), early stopping on it and
the test of the best weights. RePlay's item ids are seqrec's minus one (RePlay's padding id is
the catalogue size).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Data, PeerRun, add_common_args, fit_with_clock, left_padded


def write_parquet(data: Data, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = pa.array(data.offsets["train"].astype(np.int32))
    values = pa.array(data.items["train"] - 1)  # RePlay ids: 0..n_items-1
    pq.write_table(pa.table({"item_id": pa.ListArray.from_arrays(offsets, values)}), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import lightning as L
    from replay.data import FeatureHint, FeatureType
    from replay.data.nn import ParquetModule, TensorFeatureInfo, TensorSchema
    from replay.nn.lightning import LightningModule
    from replay.nn.lightning.optimizer import OptimizerFactory
    from replay.nn.sequential import SasRec
    from replay.nn.transform.template import make_default_sasrec_transforms

    data = Data(args.data)
    n, max_len = data.n_items, data.max_len
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_path = out / "train.parquet"
    write_parquet(data, train_path)

    L.seed_everything(args.seed, verbose=False)
    schema = TensorSchema(
        [
            TensorFeatureInfo(
                "item_id",
                feature_type=FeatureType.CATEGORICAL,
                is_seq=True,
                feature_hint=FeatureHint.ITEM_ID,
                cardinality=n,
                padding_value=n,
                embedding_dim=args.hidden,
            )
        ]
    )
    model = SasRec.from_params(
        schema,
        embedding_dim=args.hidden,
        num_heads=args.heads,
        num_blocks=args.blocks,
        max_sequence_length=max_len,
        dropout=args.dropout,
    )
    module = LightningModule(model, optimizer_factory=OptimizerFactory(learning_rate=args.lr))
    datamodule = ParquetModule(
        batch_size=args.batch_size,
        metadata={"train": {"item_id": {"shape": max_len + 1, "padding": n}}},
        transforms=make_default_sasrec_transforms(schema),
        config={
            "train": {
                "generator": torch.Generator().manual_seed(args.seed),
                "device": torch.device("cpu"),
            }
        },
        train_path=str(train_path),
    )

    def score(hists: list[np.ndarray]) -> torch.Tensor:
        ids, mask = left_padded(hists, max_len, pad=n, shift=-1)
        logits = model.forward_inference({"item_id": ids}, mask)["logits"]  # [b, n]
        scores = torch.empty(len(hists), n + 1)
        scores[:, 0] = -torch.inf
        scores[:, 1:] = logits
        return scores

    versions = {
        "replay-rec": version("replay-rec"),
        "lightning": version("lightning"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "api": "replay.nn.sequential.SasRec.from_params + replay.nn.lightning.LightningModule "
        "+ replay.data.nn.ParquetModule",
    }
    run = PeerRun("replay", args, data, model, score, versions)

    fit_with_clock(L, run, args.epochs, module, datamodule=datamodule)
    run.finish({"optimizer": "Adam (RePlay OptimizerFactory defaults: betas (0.9, 0.98), "
                             "no weight decay), no warm-up, no gradient clipping"})  # fmt: skip
    train_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
