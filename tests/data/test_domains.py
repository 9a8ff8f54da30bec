"""Multi-domain data: domains survive ingest -> store -> split -> batch; one-domain views
leak nothing; same-day order; bad input, each one line (docs/CROSS_DOMAIN.md)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.data import prepare
from seqrec.data.batches import history_batch, training_batch
from seqrec.data.catalog import CATALOG, with_catalog_defaults
from seqrec.data.evidence import detect
from seqrec.data.store import build_store
from seqrec.data.views import tie_report
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

DAY = 86_400
T0 = 1_300_000_000


def _toy(seed: int = 0, users: int = 12) -> dict[int, list[tuple[int, int]]]:
    """Per user ``[(file item index, time)]``: items 1..8 are domain 0, 9..16 domain 1; days
    with several events, listed by ascending index as the ABXI files list them."""
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(users):
        items = rng.permutation(16)[: int(rng.integers(5, 11))] + 1
        days = np.sort(rng.integers(0, 4, len(items)))
        rows = sorted(zip(days.tolist(), items.tolist(), strict=True))
        seqs[u] = [(i, T0 + d * DAY) for d, i in rows]
    return seqs


def _domain(index: int) -> int:
    return 0 if index <= 8 else 1


def write_abxi(folder: Path, seqs, order=None, domain=_domain, gz: bool = True) -> Path:
    """ABXI's two files: ``u item|ts ...`` lines and ``{ASIN: [index, domain]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    users = list(seqs) if order is None else order
    lines = [" ".join([str(u)] + [f"{i}|{t}" for i, t in seqs[u]]) for u in users]
    path = folder / ("seqs.txt.gz" if gz else "seqs.txt")
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    table = {f"B{i:03d}X": [i, domain(i)] for i in range(1, 17)}
    (folder / "map_item_50.txt").write_text(json.dumps(table))
    return path


def _cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(dataset=str(path), domain_map=str(path.parent / "map_item_50.txt"), **kw)


def test_domains_survive_ingest_store_cache_split_and_batches(tmp_path):
    seqs = _toy()
    path = write_abxi(tmp_path / "d", seqs)
    cfg = _cfg(path, same_day_order="file")
    store = build_store(cfg)
    again = build_store(cfg)  # from the cache
    np.testing.assert_array_equal(store.domains, again.domains)
    assert store.meta["format"] == "seq-ts" and store.domain_names == ["0", "1"]
    # every event: the ASIN and domain of its file index, in file order
    for u, events in seqs.items():
        row = store.user_index([str(u)])[0]
        lo, hi = store.offsets[row], store.offsets[row + 1]
        assert store.item_ids[store.items[lo:hi]].tolist() == [f"B{i:03d}X" for i, _ in events]
        assert store.domains[lo:hi].tolist() == [_domain(i) + 1 for i, _ in events]
        assert store.timestamps[lo:hi].tolist() == [t for _, t in events]
    _, split = prepare(cfg)
    tr, te = split.train, split.test
    b = training_batch(store.items, None, tr.users, tr.starts, tr.ends, 6, None, store.domains)
    real, has = b.items != 0, b.targets != 0
    dom = torch.from_numpy(store.item_domains.astype(np.int64))
    assert torch.equal(b.domains[real], dom[b.items[real]]) and (b.domains[~real] == 0).all()
    assert torch.equal(b.target_domains[has], dom[b.targets[has]])
    assert (b.target_domains[~has] == 0).all()
    tdom = store.item_domains[te.targets]
    h = history_batch(
        store.items, None, te.users, te.starts, te.ends, te.targets, 6, None, None,
        store.domains, tdom,
    )  # fmt: skip
    real = h.items != 0
    assert torch.equal(h.domains[real], dom[h.items[real]])
    assert h.target_domains.tolist() == tdom.tolist()


def test_a_permuted_file_gives_the_same_data(tmp_path):
    seqs = _toy(1)
    order = list(np.random.default_rng(5).permutation(list(seqs)))
    a = prepare(_cfg(write_abxi(tmp_path / "a", seqs)))
    b = prepare(_cfg(write_abxi(tmp_path / "b", seqs, order=order, gz=False)))
    for x, y in ((a[0].items, b[0].items), (a[0].domains, b[0].domains)):
        np.testing.assert_array_equal(x, y)
    for part in ("train", "valid", "test"):
        va, vb = getattr(a[1], part), getattr(b[1], part)
        for f in ("users", "starts", "ends", "targets"):
            np.testing.assert_array_equal(getattr(va, f), getattr(vb, f))


def test_shuffle_permutes_only_within_a_users_equal_timestamps(tmp_path):
    seqs = _toy(2, users=30)
    path = write_abxi(tmp_path / "d", seqs)
    file_store, _ = prepare(_cfg(path, same_day_order="file"))
    shuffled, split = prepare(_cfg(path, same_day_order="shuffle"))
    other, _ = prepare(_cfg(path, same_day_order="shuffle", same_day_seed=3))
    again, _ = prepare(_cfg(path, same_day_order="shuffle"))
    np.testing.assert_array_equal(shuffled.items, again.items)  # a fixed seed
    assert not np.array_equal(shuffled.items, file_store.items)
    assert not np.array_equal(shuffled.items, other.items)
    np.testing.assert_array_equal(shuffled.timestamps, file_store.timestamps)
    for u in range(file_store.n_users):
        lo, hi = file_store.offsets[u], file_store.offsets[u + 1]
        for t in np.unique(file_store.timestamps[lo:hi]):
            at = file_store.timestamps[lo:hi] == t
            assert sorted(shuffled.items[lo:hi][at]) == sorted(file_store.items[lo:hi][at])
    # events stay with their domain and time
    np.testing.assert_array_equal(shuffled.domains, shuffled.item_domains[shuffled.items])
    assert split.protocol["same_day_order"] == "shuffle (seed 0)"


def test_tie_report_counts_by_hand(tmp_path):
    seqs = {
        0: [(11, T0 - DAY), (1, T0), (9, T0), (2, T0 + DAY)],
        1: [(3, T0), (4, T0 + DAY), (10, T0 + DAY)],
    }
    store, split = prepare(_cfg(write_abxi(tmp_path / "d", seqs), same_day_order="file"))
    report = tie_report(store, "file")
    # user 0: items 1, 9 tied; user 1: 4, 10 tied, and its last two share a day
    assert report["tied_events"] == 4 and report["tied_last_events"] == 1
    assert report["tied_pairs_across_domains"] == 2 and report["rising_share"] == 1.0
    assert split.protocol["same_day_order"] == "file"


def _reference_domain_split(store, code):
    """Brute force over the merged sequences: (user, train items, valid, test) of one domain."""
    out = []
    for u in range(store.n_users):
        lo, hi = store.offsets[u], store.offsets[u + 1]
        items, doms = store.items[lo:hi].tolist(), store.domains[lo:hi].tolist()
        if len(items) < 3:
            continue
        mine = [i for i, d in zip(items, doms, strict=True) if d == code]
        train = [i for i, d in zip(items[:-2], doms[:-2], strict=True) if d == code]
        valid = (train, items[-2]) if doms[-2] == code else None
        hist = [i for i, d in zip(items[:-1], doms[:-1], strict=True) if d == code]
        test = (hist, items[-1]) if doms[-1] == code else None
        out.append((u, train, valid, test, mine))
    return out


@pytest.mark.parametrize("code", [1, 2])
def test_one_domain_merged_split_matches_brute_force_and_leaks_nothing(tmp_path, code):
    path = write_abxi(tmp_path / "d", _toy(3, users=40))
    joint, jsplit = prepare(_cfg(path))
    name = joint.domain_names[code - 1]
    sub, split = prepare(_cfg(path, domain=name))
    assert set(sub.domains.tolist()) == {code} and sub.name.endswith(f":{name}")
    assert sub.n_items == int((joint.item_domains == code).sum())
    ids = lambda store, xs: store.item_ids[np.asarray(xs, dtype=np.int64)].tolist()  # noqa: E731
    ref = {u: r for u, *r in _reference_domain_split(joint, code)}
    assert split.train.users.tolist() == list(ref)
    for row, u in enumerate(split.train.users):
        assert ids(sub, split.train.history(row)) == ids(joint, ref[u][0])
    for part, k in (("valid", 1), ("test", 2)):
        view = getattr(split, part)
        want = [u for u in ref if ref[u][k] is not None and ref[u][k][0]]
        assert view.users.tolist() == want
        for row, u in enumerate(view.users):
            hist, target = ref[u][k]
            assert ids(sub, view.history(row)) == ids(joint, hist)
            assert ids(sub, [view.targets[row]]) == ids(joint, [target])
            assert sub.items[view.ends[row]] == view.targets[row]  # the event right after
    # no leakage: the joint split's valid / test events of either domain are never trained on
    for row, u in enumerate(split.train.users):
        trained = set(ids(sub, split.train.history(row)))
        jrow = int(np.flatnonzero(jsplit.test.users == u)[0])
        held = ids(joint, [jsplit.valid.targets[jrow], jsplit.test.targets[jrow]])
        assert not trained & set(held)
    assert split.protocol["domain"] == name


def test_joint_split_never_trains_on_a_held_out_event_of_either_domain(tmp_path):
    store, split = prepare(_cfg(write_abxi(tmp_path / "d", _toy(4, users=40))))
    for row in range(len(split.train)):
        lo, hi = split.train.starts[row], split.train.ends[row]
        end = store.offsets[split.train.users[row] + 1]
        assert hi == end - 2  # the training slice stops before the valid and the test event
        assert set(store.domains[lo:hi]) <= {1, 2}
        assert split.valid.targets[row] == store.items[end - 2]
        assert split.test.targets[row] == store.items[end - 1]


def test_domain_split_domain_is_leave_one_out_on_the_domains_own_events(tmp_path):
    path = write_abxi(tmp_path / "d", _toy(5, users=30))
    joint, _ = prepare(_cfg(path))
    sub, split = prepare(_cfg(path, domain="1", domain_split="domain"))
    for row, u in enumerate(split.test.users):
        lo, hi = joint.offsets[u], joint.offsets[u + 1]
        mine = joint.items[lo:hi][joint.domains[lo:hi] == 2]
        assert sub.item_ids[split.test.targets[row]] == joint.item_ids[mine[-1]]
        assert sub.item_ids[split.valid.targets[row]] == joint.item_ids[mine[-2]]
    assert split.protocol["domain_split"] == "own events"


def test_a_user_with_events_in_one_domain_is_kept_and_evaluated_there(tmp_path):
    seqs = _toy(6)
    seqs[99] = [(1, T0), (2, T0 + DAY), (3, T0 + 2 * DAY), (4, T0 + 3 * DAY)]  # domain 0 only
    store, split = prepare(_cfg(write_abxi(tmp_path / "d", seqs)))
    row = int(np.flatnonzero(split.test.users == store.user_index(["99"])[0])[0])
    assert store.item_domains[split.test.targets[row]] == 1
    sub, dsplit = prepare(_cfg(write_abxi(tmp_path / "d", seqs), domain="1"))
    u = store.user_index(["99"])[0]
    assert u in split.train.users and u not in dsplit.test.users  # nothing of domain 1 to rank
    assert sub.lengths()[u] == 0


def test_csv_domain_column(tmp_path):
    path = tmp_path / "log.csv"
    rows = ["user_id,item_id,timestamp,shop"] + [
        f"{u},{i},{t},{'books' if i < 5 else 'games'}"
        for u in range(6)
        for t, i in enumerate(np.random.default_rng(u).permutation(9)[:6] + 1)
    ]
    path.write_text("\n".join(rows) + "\n")
    store = build_store(DataConfig(dataset=str(path), domain_col="shop"))
    assert store.domain_names == ["books", "games"]
    expect = np.where(store.item_ids[store.items].astype(int) < 5, 1, 2)
    np.testing.assert_array_equal(store.domains, expect)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp,shop\n1,1,1,books\n2,1,2,games\n2,2,3,books\n")
    with pytest.raises(SeqrecError, match=r"item 1 is in domains \['books', 'games'\]"):
        build_store(DataConfig(dataset=str(bad), domain_col="shop"))


def test_seq_ts_is_detected(tmp_path):
    path = write_abxi(tmp_path / "d", _toy(), gz=False)
    choice = detect(path)
    assert choice.format == "seq-ts" and "item|timestamp" in choice.evidence


BAD = [
    (
        lambda p: DataConfig(dataset=str(p), domain_col="shop"),
        r"^data.domain_col names a column, but seqs.txt.gz is read as seq-ts",
    ),
    (
        lambda p: DataConfig(dataset=str(p), domain_map=str(p.parent / "nope.json")),
        r"^data.domain_map file .*nope.json does not exist .*set data.domain_map=null$",
    ),
    (
        lambda p: DataConfig(dataset=str(p), domain_map="auto", format="seq-ts"),
        None,  # auto finds map_item_50.txt next to the data: no error
    ),
    (lambda p: _cfg(p, domain="toys"), r"^data.domain=toys: dataset 'seqs' has the domains 0, 1"),
    (
        lambda p: DataConfig(dataset=str(p), domain="0", format="seq-ts"),
        r"^data.domain=0 keeps one domain's events, but dataset 'seqs' has no domains",
    ),
    (
        lambda p: _cfg(p, same_day_order="shuffle", time_col=None),
        None,  # seq-ts keeps its own times
    ),
]


@pytest.mark.parametrize("make,message", BAD)
def test_bad_domain_input_is_one_line(tmp_path, make, message):
    path = write_abxi(tmp_path / "d", _toy())
    if message is None:
        prepare(make(path))
        return
    with pytest.raises(SeqrecError, match=message) as err:
        prepare(make(path))
    assert "\n" not in str(err.value)


def test_map_that_misses_items_and_a_domain_seen_only_at_inference(tmp_path):
    seqs = _toy()
    path = write_abxi(tmp_path / "d", seqs)
    table = json.loads((path.parent / "map_item_50.txt").read_text())
    del table["B003X"]
    (path.parent / "map_item_50.txt").write_text(json.dumps(table))
    with pytest.raises(SeqrecError, match=r"1 item\(s\) of the interactions are not in the domain"):
        prepare(_cfg(path))
    # domain 1 appears only as every user's last event: targets with nothing trained
    late = {u: [(i, t) for i, t in ev if i <= 8] for u, ev in seqs.items()}
    late = {u: [*ev, (9 + u % 8, T0 + 10 * DAY)] for u, ev in late.items() if len(ev) >= 2}
    path = write_abxi(tmp_path / "late", late)
    with pytest.raises(SeqrecError, match=r"^domain '1' has \d+ test target\(s\) but no training"):
        prepare(_cfg(path))


def test_domain_option_checks():
    with pytest.raises(ValueError, match=r"data\.domain_split needs"):
        DataConfig(domain_split="domain")
    with pytest.raises(ValueError, match=r"data\.domain_map and data\.domain_col"):
        DataConfig(domain_map="auto", domain_col="x")
    with pytest.raises(ValueError, match=r"data\.same_day_seed seeds"):
        DataConfig(same_day_order="file", same_day_seed=1)


def test_catalogue_entries_declare_domains_and_the_tie_policy():
    for name, names in (
        ("amazon-food-kitchen", ("food", "kitchen")),
        ("amazon-beauty-electronics", ("beauty", "electronics")),
    ):
        spec = CATALOG[name]
        assert spec.format == "seq-ts" and spec.domain_names == names
        assert spec.domain_map is not None and len(spec.domain_map.sha256) == 64
        cfg = with_catalog_defaults(DataConfig(dataset=name))
        assert cfg.domain_map == "auto" and cfg.same_day_order == "shuffle"
        kept = with_catalog_defaults(DataConfig(dataset=name, same_day_order="file"))
        assert kept.same_day_order == "file"  # an explicit order is never overridden


SHARED = Path(
    os.environ.get("SEQREC_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data"
)


@pytest.mark.realdata
def test_food_kitchen_matches_its_published_statistics(monkeypatch):
    if not (SHARED / "amazon" / "abxi" / "afk").is_dir():
        pytest.skip(f"the ABXI files are not under {SHARED}")
    monkeypatch.setenv("SEQREC_DATA_DIR", str(SHARED))
    store, _ = prepare(DataConfig(dataset="amazon-food-kitchen", same_day_order="file"))
    assert store.n_users == 7144 and len(store.items) == 173_548
    assert store.domain_names == ["food", "kitchen"]
    assert np.bincount(store.item_domains)[1:].tolist() == [11_837, 16_258]
    assert np.bincount(store.domains)[1:].tolist() == [83_663, 89_885]
    assert store.item_ids[1].startswith("0") and len(store.item_ids[1]) == 10  # ASINs
    ties = store.meta["same_day_order"]
    assert ties["tied_last_events"] == 2275 and ties["rising_share"] == 1.0
    shuffled, _ = prepare(DataConfig(dataset="amazon-food-kitchen"))
    assert abs(shuffled.meta["same_day_order"]["rising_share"] - 0.5) < 0.02


def test_a_model_that_reads_domains_gets_them_or_one_line(tmp_path):
    """models/inputs hands a store's domains to a model whose Needs has ``domains``."""
    from types import SimpleNamespace

    from seqrec.models.inputs import prepare_inputs

    needs = SimpleNamespace(domains=True, behaviors=False, timestamps=False, item_features=False)
    cfg = SimpleNamespace(model=SimpleNamespace(name="crossrec", needs=lambda: needs))
    store, _ = prepare(_cfg(write_abxi(tmp_path / "d", _toy())))
    assert prepare_inputs(None, cfg, store).domains is store.domains
    plain = build_store(
        DataConfig(dataset=str(write_abxi(tmp_path / "p", _toy())), format="seq-ts")
    )
    with pytest.raises(SeqrecError, match=r"^model.name=crossrec reads each event's domain, but"):
        prepare_inputs(None, cfg, plain)
    needs.domains = False
    assert prepare_inputs(None, cfg, store).domains is None
