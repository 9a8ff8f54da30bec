import torch

from seqrec.objectives.bce import sample_negatives, sampled_bce_loss


def test_negatives_avoid_the_row_items():
    items = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    targets = torch.tensor([[2, 3, 4, 5], [5, 6, 7, 1]])
    neg = sample_negatives(items, targets, 9, torch.Generator().manual_seed(0))
    for r in range(2):
        seen = set(items[r].tolist()) | set(targets[r].tolist())
        assert not (set(neg[r].tolist()) & seen)
    assert neg.min() >= 1 and neg.max() <= 9


def test_bce_ignores_padding_positions():
    h = torch.randn(1, 3, 4)
    w = torch.randn(6, 4)
    items = torch.tensor([[0, 1, 2]])
    targets = torch.tensor([[0, 2, 3]])
    torch.manual_seed(0)
    a = sampled_bce_loss(h, w, items, targets, torch.Generator().manual_seed(3))
    h2 = h.clone()
    h2[0, 0] = 1e6  # a PAD position's hidden state must not matter
    b = sampled_bce_loss(h2, w, items, targets, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
