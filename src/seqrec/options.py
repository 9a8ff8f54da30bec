"""Typed options of a run's sections (data, objective, train, eval, task); the YAML presets and
the parsing of dotted overrides are in `seqrec.presets`.

At the bottom of the layers: it imports nothing from seqrec, so every other module may import it. Each model's own options live beside the model (models/<name>.py); `seqrec.recipe` puts the
sections and the model together into the `RunConfig` of a run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors (never silently ignored options), assignments re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    """Where the interactions come from and how they become sequences."""

    dataset: str = "ml-1m"
    """A catalogue name (``seqrec data list``) or a path to a file/folder."""
    updates: list[str] = []
    """Events files appended to ``dataset`` in order, without renumbering it (data/update.py).
    An update writes its events here, so ``seqrec train -c UPDATE/config.yaml`` retrains on
    everything the update saw instead of the base data alone."""
    format: Literal["auto", "ml-dat", "csv", "parquet", "seq", "pairs", "seq-ts"] = "auto"
    """``seq-ts``: one user per line, ``user item|timestamp item|timestamp ...`` (C2DSR, ABXI)."""
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str | None = "timestamp"
    sep: str | None = None
    dedupe: Literal["keep", "first", "last"] = "keep"
    """Repeated (user, item) pairs: keep all, or keep the first / last occurrence."""
    min_user_count: int = Field(0, ge=0)
    min_item_count: int = Field(0, ge=0)
    kcore: Literal["iterative", "once"] = "iterative"
    catalog_defaults: bool = True
    """Fill fields left at their default with the catalogue's literature preprocessing (e.g.
    ml-1m drops items with < 5 ratings); false keeps the raw data (generative-recommenders' ML-1M)."""
    split: Literal["loo", "temporal"] = "loo"
    valid_users: int | None = Field(None, ge=1)
    """Leave-one-out only: hold out the second-to-last item of only this many users (a fixed
    random subset, the same in every run) for validation; every other user also trains on it.
    None = every user (the SASRec / BERT4Rec papers). Klenitskiy & Vasilev validate on at most
    10,000 users, gSASRec on 512; generative-recommenders' shipped code trains every user
    through the second-to-last item. Test targets and histories are the same either way."""
    temporal_valid_frac: float = Field(0.1, gt=0, lt=1)
    temporal_test_frac: float = Field(0.1, gt=0, lt=1)
    max_len: int = Field(200, ge=2)
    train_fraction: float = Field(1.0, gt=0, le=1)
    """Keep this fraction of the training users (a (seed)-derived subset; a smaller fraction's
    users are a subset of a larger one's). Validation and test users are unchanged, so data
    scaling sweeps compare models on the same evaluation."""
    cache_dir: str | None = None
    behavior_col: str | None = None
    """Read a behaviour per event into ``store.behaviors`` (int16, 0 = none): for csv/parquet
    the column's name (e.g. ``rating``); for MovieLens ratings.dat / u.data any value turns
    the rating field on. Integer values are kept (ratings 1-5); other values are coded 1..K in
    sorted order (``store.meta["behavior_values"]``)."""
    item_features: str | None = None
    """Item side information (data/features/): a metadata file (movies.dat, u.item,
    movies.csv, *item2attributes.json, an .npz of text vectors; several comma-separated), or
    ``auto`` = the dataset's own metadata file found next to its interactions."""
    item_feature_fields: list[str] | None = None
    """Which item fields to use (None = all the file provides); a missing one is an error."""
    user_features: str | None = None
    """User side information: users.dat, u.user, or ``auto``."""
    user_feature_fields: list[str] | None = None
    domain_map: str | None = None
    """Multi-domain data (docs/CROSS_DOMAIN.md): a JSON item -> domain map, ``{item: domain}``
    or ABXI's ``{ASIN: [item index, domain]}`` (the ASINs become the item ids), or ``auto``."""
    domain_col: str | None = None
    """csv / parquet: the column holding each event's domain (one domain per item)."""
    domain: str | None = None
    """Keep only this domain's events (a single-domain baseline on multi-domain data)."""
    domain_split: Literal["merged", "domain"] = "merged"
    """With ``data.domain``: split the merged sequence and keep the rows whose target is in the
    domain (the joint models' rows), or split the domain's own events."""
    same_day_order: Literal["auto", "file", "shuffle"] = "auto"
    """A user's events with equal timestamps: in file order, or shuffled with
    ``same_day_seed``; ``auto`` = the catalogue's choice (shuffle for ABXI's files), else file."""
    same_day_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _domain_options(self) -> DataConfig:
        for bad, why in (
            (self.domain_map and self.domain_col, "data.domain_map and data.domain_col both "
             "say where domains come from; keep one of them"),
            (self.domain_split != "merged" and self.domain is None, "data.domain_split needs "
             "data.domain; set data.domain or drop data.domain_split"),
            (self.same_day_seed and self.same_day_order == "file", "data.same_day_seed seeds "
             "data.same_day_order=shuffle; set it, or drop data.same_day_seed"),
        ):  # fmt: skip
            if bad:
                raise ValueError(why)
        return self


class ObjectiveConfig(Strict):
    name: Literal["ce", "bce", "cloze", "ssm", "gbce"] = "ce"
    """ce: softmax cross-entropy over every item (chunked); bce: SASRec paper, 1 negative/position;
    cloze: BERT4Rec's masked-item prediction (full-softmax CE at masked positions only);
    ssm: sampled softmax over the target and n_negatives sampled items (generative-recommenders);
    gbce: gSASRec's calibrated BCE with n_negatives uniform negatives (objectives/gbce.py)."""
    chunk_size: int | None = Field(None, ge=1)
    """Rows of hidden states scored against the whole catalogue at once by the chunked CE; None
    sizes the block to the device (ops/cross_entropy.py ``auto_chunk``: cache-sized on a CPU)."""
    mask_prob: float = Field(0.2, gt=0, le=1)
    """cloze: probability that each real item is masked (at least one per row); BERT4Rec ML-1M 0.2."""
    n_negatives: int = Field(128, ge=1)
    """ssm / gbce: negatives per position (128 for ML-1M in generative-recommenders, 256 in
    gSASRec)."""
    gbce_t: float = Field(0.75, ge=0, le=1)
    """gbce: calibration t; 0 is plain BCE with n_negatives negatives, 0.75 gSASRec's default."""
    sampling: Literal["global", "in_batch"] = "global"
    """ssm: negatives uniform over the catalogue, independently per position ("global", the
    research code's "local" sampler), or drawn from the batch's target items ("in_batch")."""
    logq_correction: bool = True
    """ssm: subtract log(sampling probability) from every logit (Yi et al. 2019); a constant,
    hence a no-op, for global uniform sampling; for in_batch the probability is the item's
    frequency among the batch's targets."""
    shared_negatives: bool = False
    """ssm: draw the n_negatives once per batch and score every position against the same set
    (TensorFlow's sampled_softmax_loss, most large-catalogue trainers) instead of per position:
    one [N, R] matmul over a few thousand distinct rows instead of an [N, R, D] gather, which is
    what makes a million-item catalogue trainable on a CPU. Noisier per position, same
    expectation."""
    temperature: float = Field(1.0, gt=0)
    """ssm: logits = score / temperature (0.05 with normalize in generative-recommenders)."""
    normalize: bool = False
    """ssm: score cosines instead of dot products; needs model.l2_norm_output=true, which makes
    the model's outputs and item table (and hence evaluation) use the same normalisation."""


class TrainConfig(Strict):
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int | None = Field(None, ge=0)
    """Linear learning-rate warm-up in steps; None sizes it by ``warmup_epochs`` instead."""
    warmup_epochs: float = Field(0.1, ge=0)
    """Warm-up as a share of this data's epoch (rounded up to whole steps) when
    ``warmup_steps`` is unset: it scales with the data. Chosen by measurement
    (benchmarks/warmup.py); the fixed 100 steps it replaced lasted two ML-1M epochs."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    grad_clip: float | None = 1.0
    patience: int = Field(10, ge=1)
    """Stop after this many evaluations without a better validation NDCG@10."""
    select: Literal["best", "last"] = "best"
    """Which weights the test evaluates: the best validation NDCG@10 (early stopping) or the
    last epoch's, after all ``epochs`` (patience ignored; validation is still logged). "last"
    is generative-recommenders' shipped protocol: a fixed epoch count and no model selection,
    usually with ``data.valid_users`` so that nearly everyone trains through the second-to-last
    item. The run folder's best.safetensors then holds those tested weights, so evaluate,
    recommend and export use them too."""
    eval_every: int = Field(1, ge=1)
    """Validate every this many epochs."""
    log_test: bool = False
    """Also evaluate the test split at every validation and log it (event ``test_peek`` in
    metrics.jsonl). A diagnostic, never used for selection or stopping: it shows what a number
    read off test curves during training would be, as with code that evaluates its test item
    every epoch and has no validation split (generative-recommenders). It costs one more full
    evaluation per validation."""
    max_steps: int | None = None
    time_budget_s: float | None = Field(None, gt=0)
    """Stop after the first validation past this many wall-clock seconds (training + validation,
    over resumed sessions) and test the best weights, as early stopping does; None = no limit."""
    window: Literal["last", "random"] = "last"
    """Which max_len + 1 items of a long training sequence an epoch uses: the most recent ones
    (SASRec) or a random window per user and epoch, so long histories are fully used over epochs."""
    samples: Literal["sequences", "prefixes"] = "sequences"
    """What one training row is. ``sequences``: a user's window with a next-item target at every
    slot (SASRec), which needs a model whose slot t reads slots <= t only. ``prefixes``: every
    prefix of every training sequence is its own row, with a target at its last slot only (the
    data augmentation of RecBole, ICLRec and BSARec): an epoch then costs about max_len times
    more encoder work, and models whose state at a slot reads the whole window (BSARec's
    Fourier filter) can train on it without seeing their targets."""
    seed: int = 42
    device: str = "auto"
    """auto (CUDA when visible), cpu, mps, cuda or cuda:N (xpu, xpu:N); checked with the whole
    config (recipe.py), so a misspelt device is refused before any folder is written."""
    threads: int | None = None
    log_every: int = Field(50, ge=1)
    """Write a training line (loss, lr, throughput) to metrics.jsonl every this many steps;
    1 records every step's loss (the redesign's golden runs compare them step by step)."""
    checkpoint_every: int = Field(500, ge=1)
    """Write a resumable checkpoint every this many steps (and at every epoch end)."""
    init_from: str | None = None
    """Start from the weights of another run (its folder's best.safetensors, or a .safetensors
    file) instead of a fresh init: pre-train -> fine-tune. Shapes must match exactly (same
    architecture); catalogue-bound state (SRT's item tokens) stays this run's. Applied before
    the first step only, so a resumed run continues from its own checkpoint."""
    item_updates: Literal["dense", "sparse"] = "dense"
    """sparse: the item table gets a sparse gradient (only the rows a step reads: its input
    items, targets and sampled negatives) and a row-wise AdamW (trainer/optim.py) moves only
    those rows, so a step costs the rows it touches instead of the whole catalogue. Rows a
    step does not touch keep their moments and weights (lazy Adam, as TF's LazyAdam and
    TorchRec's row-wise optimisers); with every row touched it is AdamW exactly. Needs a sampled
    objective (ssm, gbce, bce): full CE and cloze score every row."""
    item_sharding: Literal["none", "rowwise"] = "none"
    """rowwise: under torchrun, split the item table's rows across the processes with TorchRec
    (each keeps its rows, their gradient and AdamW moments; the layers stay DDP). SASRec,
    objective.name=ssm with shared_negatives=true, CPU; needs TorchRec (docs/DISTRIBUTED.md)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: the training loss (model forward + objective) runs under bf16 autocast, on fp32
    weights; evaluation stays fp32, for exact ranks (trainer/precision.py)."""
    compile: bool = False
    """Run the training steps through ``torch.compile`` (evaluation and saved weights use the
    plain module); a machine where it cannot compile fails at the start, naming this option."""


class EvalConfig(Strict):
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50, 100])
    """The cut-offs of HR@k / NDCG@k, each at least 1 (retrieval validation reads @10)."""
    mask_seen: bool | Literal["window"] = True
    """Which history items leave the candidate list: True every item of the user's whole
    history; ``"window"`` only the last ``data.max_len`` the model reads, as
    generative-recommenders' evaluation filters its padded input ids (so an item seen before
    the window can be recommended again and push the target down); False none."""
    repeat_targets: Literal["rank", "miss", "drop"] = "rank"
    """A target the user has already seen (one of the masked history items): ``rank`` ranks it
    by its own score like any target; ``miss`` counts it a miss (ranked last), as published code
    that zeroes the scores of every training item does (``rating_pred[train_matrix > 0] = 0``
    in ICLRec / BSARec-style trainers); ``drop`` leaves such rows out of the metrics. Compare a
    published number only under the rule its code used; every result records the rule and the
    share of rows it concerns (``repeat_share``). Needs ``mask_seen`` unless ``rank``."""
    batch_users: int = Field(256, ge=1)
    sampled: Literal["uniform", "popularity"] | None = None
    """None = full ranking over every item (default). Otherwise rank among n_negatives sampled ones."""
    n_negatives: int = Field(100, ge=1)
    valid_max_users: int | None = None
    """Validate early stopping on at most this many random users (None = all)."""
    per_domain: bool = True
    """Multi-domain data: also the metrics of each target domain's rows (eval/domains.py)."""
    domain_candidates: Literal["own", "joint", "both"] = "both"
    """Per-domain ranking among the target domain's items (own), every item (joint), or both."""
    domain_negatives: int | None = Field(999, ge=1)
    """Also ABXI / MERIT's sampled protocol: this many negatives from the target's domain."""

    @model_validator(mode="after")
    def _repeat_rule_needs_masking(self) -> EvalConfig:
        if self.repeat_targets != "rank" and not self.mask_seen:
            raise ValueError(
                f"eval.repeat_targets={self.repeat_targets} treats targets found among the "
                "masked history items, but eval.mask_seen=false masks none; set "
                "eval.mask_seen=true (or window), or eval.repeat_targets=rank"
            )
        return self


class TaskConfig(Strict):
    """What is learned: next-item retrieval (default) or ranking (CTR: history + candidate ->
    probability of a positive action; ``seqrec.tasks.ranking``)."""

    name: Literal["retrieval", "ranking"] = "retrieval"
    positive_threshold: float = 4.0
    """ranking: label = 1 when the event's behaviour value (data.behavior_col, e.g. the rating)
    is >= this (MovieLens convention: rating >= 4 is a positive)."""
    sampled_negatives: int = Field(1, ge=0)
    """ranking: random items the user never interacted with, added per training positive with
    label 0 (redrawn every epoch from (seed, epoch)); evaluation uses real events only."""
    baseline: Literal["popularity", "logistic", "itemknn"] | None = None
    """ranking: train a baseline instead of the model.name encoder + ranking head: smoothed item
    positive rate (popularity), logistic regression on one-hot user/item ids + features, or
    item-based collaborative filtering on the history's centred ratings stacked on popularity
    (itemknn, seqrec/tasks/ranking/itemknn.py)."""
    knn_history: int = Field(200, ge=1)
    """ranking itemknn baseline and task.knn_feature: how many of the history's most recent
    events the item-kNN score reads (independent of data.max_len, the encoder's window)."""
    knn_feature: bool = False
    """ranking (Ranker only): feed the item-kNN baseline's score of the candidate (and the
    log of its similarity mass) to the ranker: a learned weight times the score goes to the
    logit, both go to the head's MLP. Co-rating statistics over the whole training period
    are what orders a user's items best here; a transformer trained on those same events
    overfits their within-user order. A training example's similarities leave out its own
    rating (seqrec/tasks/ranking/itemknn.py), so the feature never carries the label."""
    attention: Literal["din", "dot"] = "din"
    """ranking head's target attention over the history states: DIN's MLP on
    [h, e, h*e, h-e] (Zhou et al. 2018) or a scaled dot product with the candidate as query."""
    attention_hidden: int = Field(64, ge=1)
    """ranking: width of the DIN attention MLP (DIN uses 80-40; one layer here)."""
    head_hidden: list[int] = Field(default_factory=lambda: [128, 64])
    """ranking: hidden widths of the final MLP (ReLU, dropout = model.dropout)."""
    history_behaviors: bool = True
    """ranking: add a learned embedding of each history event's behaviour value (its rating)
    to the history states the target attention reads; the candidate's own value is never in
    its history (histories end strictly before the candidate's timestamp)."""
    features: bool = False
    """ranking: feed the item/user features of data/features/ (genres, year; gender, age,
    occupation) to the ranking head and the logistic baseline."""
    popularity_prior: float = Field(20.0, ge=0)
    """ranking popularity baseline: the item's positive rate is shrunk toward the global rate
    with this many pseudo-events: (pos + prior * rate) / (n + prior)."""
    pairwise_weight: float = Field(0.0, ge=0)
    """ranking: add this weight x a BPR loss over every (positive, negative) pair of the same
    user in a batch, the within-user order that GAUC scores (log loss alone mostly learns who
    rates generously); > 0 also groups each epoch's examples by user so batches hold pairs."""
    train_min_age_s: int = Field(0, ge=0)
    """ranking (trained rankers): fit only on training events at least this many seconds after
    their user's first event (0 = all). On MovieLens 82% of the training period's events are
    part of a user's first-day rating burst, while nearly every test event comes from a user
    back more than 30 days later with a long history: training on the returning visits
    matches what the model is scored on. The popularity prior and item-kNN statistics still
    use every training event (shares: benchmarks/results/ranking_population.json)."""
    monitor: Literal["AUC", "GAUC"] = "AUC"
    """ranking: the validation metric that early stopping keeps the best weights by (GAUC when
    what matters is the order of items within each user)."""
    item_prior: bool = False
    """ranking (Ranker only): add the logit of the popularity baseline's smoothed positive rate
    of the candidate as a fixed offset, so the network learns the user's deviation from the
    item's general appeal instead of re-learning that appeal from scratch (residual learning
    on the baseline; the offset table is a buffer saved with the weights). The head's last
    layer then starts at zero, so an untrained ranker predicts exactly the baseline."""
    behavior_pool: bool = False
    """ranking (Ranker only): also pool the history states weighted by each event's behaviour
    value centred on the history's mean (a learned scalar per behaviour code, starting at the
    standardised code), and add a bilinear term of that vector with the candidate to the
    logit. This is item-based collaborative filtering written as a linear attention head:
    "the candidate resembles what this user rated above their own average". Softmax target
    attention averages the history and cannot express that signed sum; it is the signal
    that ranks items within a user (GAUC), where the item's general appeal stops."""

    @model_validator(mode="after")
    def _prior_needs_ranker(self) -> TaskConfig:
        for flag in ("item_prior", "behavior_pool", "knn_feature"):
            if getattr(self, flag) and self.baseline is not None:
                raise ValueError(
                    f"task.{flag} is part of the Ranker; the {self.baseline} baseline has "
                    f"none (drop task.{flag} or task.baseline)"
                )
        if self.train_min_age_s and self.baseline in ("popularity", "itemknn"):
            raise ValueError(
                f"task.train_min_age_s selects what trained weights fit; the {self.baseline} "
                "baseline fits none (drop one of them)"
            )
        if self.behavior_pool and not self.history_behaviors:
            raise ValueError(
                "task.behavior_pool weights history events by their behaviour values; set "
                "task.history_behaviors=true (and data.behavior_col) or drop task.behavior_pool"
            )
        return self
