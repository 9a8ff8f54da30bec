"""Mamba's selective scan (Gu & Dao, 2023) and SIGMA's partially flipped scan, each with the
plain sequential reference its tests compare it to.

Per channel e and state n, with A diagonal ([E, N]) and B, C shared by the channels:

    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t,        y_t = C_t · h_t + D u_t

`selective_scan_reference` is that loop over positions. `selective_scan` cuts the sequence into
chunks of T ≈ sqrt(L) positions and replaces the L-step loop by two short ones: a loop over
the T offsets that scans every chunk from a zero state at once, then a loop over the chunks
that carries each chunk's final state into the next; the carried state reaches offset t as
exp(A · Σ_{s≤t} Δ_s), the cumulative log-decay within the chunk. Both loops only multiply by
decays <= 1 and add, so the fast path is as stable as the reference. The closed form
h_t = e^{Λ_t} Σ_s e^{-Λ_s} b_s is not: e^{-Λ_s} overflows once a chunk's total log-decay
passes ~88 (fp32), which one step of a trained Δ A can reach; and Mamba-2's pairwise
e^{Λ_t - Λ_s} needs a [T, T] matrix per channel and state here (Mamba-1's A is per channel and
state), T times the memory of the states themselves.

SIGMA's partially flipped scan (``keep`` = r) reads the prefix x_0..x_t of every query t as
x_m, x_{m-1}, ..., x_0, x_{m+1}, ..., x_t with m = t - r: the older items newest-first, the r
most recent in time order (`partial_flip_order`). Scanning x_m..x_0 from a zero state leaves
S_m = Σ_{j<=m} P_j b_j with P_j = exp(A Σ_{k<j} Δ_k) (item j is decayed by the items older
than it, which are read after it), a prefix sum over j; the r kept steps then act on S_m as
they act on the forward state h_m. Hence, for every query at once,

    h^flip_t = h_t + exp(A Σ_{k=m+1}^{t} Δ_k) (S_m - h_m),

with every exponent <= 0. `flipped_scan` applies it to the chunked scan's states;
`flipped_scan_reference` instead scans each query's reordered prefix explicitly (L scans),
which is what the tests compare both fast paths with.

Which path is fast depends on the machine. The vectorised ones (`selective_scan` in chunks,
`flipped_scan`) make few kernel launches, for an accelerator, but pass over [Bt, L, E, N]
tensors several times, PAD slots included. On a CPU those passes are memory-bound; one loop
over positions whose per-step [k, E, N] tensors stay in cache is cheaper, and `packed_scan`
also skips PAD slots by sorting rows by length (Beauty's batches are ~80% PAD). CPU seconds,
forward + backward, one thread, E = 128, N = 32, r = 5 (benchmarks/results/sigma_scan_speed.json):
Beauty-like 256 x 50 rows (18% real slots): two plain reference scans (what the released code
pays for its two Mamba calls) 0.92, vectorised forward + flip 6.06, packed forward + flip 0.21;
ML-1M-like 32 x 200 (60% real): 0.34 / 1.90 / 0.45.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _step(h, delta_t, u_t, A, B_t):
    """One recurrence step on states [..., E, N]: exp(Δ A) h + Δ u B."""
    decay = torch.exp(delta_t[..., None] * A)
    return decay * h + (delta_t * u_t)[..., None] * B_t[..., None, :]


def _readout(h, C, D, u):
    """y = C · h (+ D u): states [..., E, N], C [..., N] -> [..., E]."""
    y = torch.einsum("...en,...n->...e", h, C)
    return y if D is None else y + D * u


def selective_scan_reference(u, delta, A, B, C, D=None, states: bool = False):
    """The recurrence, one position at a time. u, delta [Bt, L, E]; A [E, N]; B, C [Bt, L, N];
    D [E] or None. Returns y [Bt, L, E] (and the states [Bt, L, E, N] when ``states``)."""
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    hs = []
    for d_t, u_t, b_t in zip(delta.unbind(1), u.unbind(1), B.unbind(1), strict=True):
        h = _step(h, d_t, u_t, A, b_t)
        hs.append(h)
    h_all = torch.stack(hs, dim=1)
    y = _readout(h_all, C, D, u)
    return (y, h_all) if states else y


def default_chunk(length: int, device: torch.device) -> int:
    """T = ceil(sqrt(L)) on an accelerator: T + L / T loop steps, the fewest kernel launches.
    On a CPU one chunk (the per-position loop): its per-step tensors [Bt, E, N] stay in cache,
    while the chunked path's [Bt, L / T, E, N] do not (1.1-4x slower there, module docstring)."""
    return length if device.type == "cpu" else max(1, math.ceil(math.sqrt(length)))


def selective_scan(u, delta, A, B, C, D=None, states: bool = False, chunk: int | None = None):
    """`selective_scan_reference` in chunks of ``chunk`` positions (module docstring)."""
    batch, length, width = u.shape
    size = chunk or default_chunk(length, u.device)
    n_chunks = -(-length // size)
    pad = n_chunks * size - length  # Δ = 0, u = 0 on padded steps: decay 1, no input

    def chunked(x):  # [Bt, L, K] -> [Bt, chunks, T, K]
        return F.pad(x, (0, 0, 0, pad)).reshape(batch, n_chunks, size, x.shape[-1])

    delta_c = chunked(delta)
    h = u.new_zeros(batch, n_chunks, width, A.shape[1])
    local = []
    offsets = zip(delta_c.unbind(2), chunked(u).unbind(2), chunked(B).unbind(2), strict=True)
    for d_t, u_t, b_t in offsets:  # offset t of every chunk, each from a zero state
        h = _step(h, d_t, u_t, A, b_t)
        local.append(h)
    h_all = torch.stack(local, dim=2)
    if n_chunks > 1:
        h_all = h_all + _carry(h, delta_c, A)
    h_all = h_all.reshape(batch, n_chunks * size, width, -1)[:, :length]
    y = _readout(h_all, C, D, u)
    return (y, h_all) if states else y


def _carry(last, delta_c, A):
    """What the states entering each chunk add at its offsets: exp(A Σ_{s<=t} Δ_s) h_in, where
    h_in is carried chunk to chunk from each chunk's ``last`` local state [Bt, chunks, E, N]."""
    log_reach = torch.cumsum(delta_c, dim=2)[..., None] * A  # chunk start -> offset t, <= 0
    carried = [torch.zeros_like(last[:, 0])]
    ends = torch.exp(log_reach[:, :, -1]).unbind(1)
    for end_state, decay in zip(last.unbind(1)[:-1], ends[:-1], strict=True):
        carried.append(end_state + decay * carried[-1])
    return torch.exp(log_reach) * torch.stack(carried, dim=1)[:, :, None]


def partial_flip_order(length: int, keep: int) -> list[int]:
    """The order in which the partially flipped scan reads a prefix of ``length`` items: all
    but the ``keep`` most recent newest-first, then those in time order. Reversing one item
    changes nothing, so a prefix of at most keep + 1 items is read as it is."""
    head = max(length - keep, 0)
    return list(range(head - 1, -1, -1)) + list(range(head, length))


def _window_sums(delta: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_{k<j} Δ_k for every j, and Σ_{k=t-keep+1}^{t} Δ_k for every t >= keep, summed in
    float64 so the window is not a difference of two long fp32 sums."""
    total = torch.cumsum(delta.double(), dim=1)
    before = F.pad(total[:, :-1], (0, 0, 1, 0))
    window = total[:, keep:] - total[:, :-keep]
    return before.to(delta.dtype), window.to(delta.dtype)


def flipped_scan(u, delta, A, B, C, D=None, keep: int = 1, chunk: int | None = None):
    """(y, y_flip) [Bt, L, E]: the forward scan and, at every slot t, the partially flipped
    scan of the prefix ending at t (module docstring), in O(L) vectorised work."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the query's own item stays last), got {keep}")
    y, h = selective_scan(u, delta, A, B, C, D, states=True, chunk=chunk)
    length = u.shape[1]
    if length <= keep + 1:  # no prefix is long enough to flip
        return y, y
    before, window = _window_sums(delta, keep)
    inputs = (delta * u)[..., None] * B[:, :, None, :]
    reversed_states = torch.cumsum(torch.exp(before[..., None] * A) * inputs, dim=1)  # S_m
    m = length - keep  # queries t = keep..L-1 have m = t - keep = 0..L-keep-1
    lag = reversed_states[:, :m] - h[:, :m]
    shift = torch.exp(window[..., None] * A) * lag  # [Bt, L - keep, E, N]
    correction = torch.einsum("bten,btn->bte", shift, C[:, keep:])
    return y, y + F.pad(correction, (0, 0, keep, 0))


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """The first k rows; x itself when that is all of them (a full slice would still cost a
    zero-filled copy of x in the backward pass)."""
    return x if x.shape[0] == k else x[:k]


def packed_scan(u, delta, A, B, C, D, lengths, keep: int | None = None):
    """(y, y_flip or None) [Bt, L, E]: `flipped_scan` (``keep`` set) or the forward scan alone,
    as one loop over positions that touches real slots only (the CPU path).

    Rows are sorted by length, so the rows still active at slot t are the first k_t, and every
    step works on [k_t, E, N] tensors that stay in cache: PAD slots (80% of a Beauty batch)
    cost nothing, and no [Bt, L, E, N] tensor is built (module docstring: the vectorised paths
    build several, and on a CPU each full pass over them is memory-bound). The flipped state
    keeps the reversed prefix sum S_t and the states of the last ``keep`` slots."""
    batch, length, _ = u.shape
    order = torch.argsort(lengths, descending=True, stable=True)
    active = (lengths[order][None, :] > torch.arange(length, device=u.device)[:, None]).sum(1)
    flip = keep is not None and length > keep + 1
    sums = _window_sums(delta[order], keep) if flip else (delta[:, :0], delta[:, :0])
    steps = zip(*(x[order].unbind(1) for x in (u, delta, B, C)), strict=True)
    h = reversed_state = u.new_zeros(batch, u.shape[2], A.shape[1])
    before, window, past = sums[0].unbind(1), sums[1].unbind(1), []
    ys, flips = [], []
    for t, (k, (u_t, d_t, b_t, c_t)) in enumerate(zip(active.tolist(), steps, strict=True)):
        inputs = (_rows(d_t, k) * _rows(u_t, k))[..., None] * _rows(b_t, k)[:, None, :]
        h = torch.exp(_rows(d_t, k)[..., None] * A) * _rows(h, k) + inputs
        ys.append(F.pad(_readout(h, _rows(c_t, k), None, None), (0, 0, 0, batch - k)))
        if not flip:
            continue
        reach = torch.exp(_rows(before[t], k)[..., None] * A)
        reversed_state = _rows(reversed_state, k) + reach * inputs
        past.append((h, reversed_state))
        h_flip = h
        if t >= keep:  # m = t - keep; m = 0 adds S_0 - h_0 = 0
            h_m, s_m = past[t - keep]
            lag = _rows(s_m, k) - _rows(h_m, k)
            h_flip = h + torch.exp(_rows(window[t - keep], k)[..., None] * A) * lag
        flips.append(F.pad(_readout(h_flip, _rows(c_t, k), None, None), (0, 0, 0, batch - k)))
    back = torch.argsort(order)
    y = torch.stack(ys, dim=1)[back] + D * u
    if keep is None:
        return y, None
    return y, (torch.stack(flips, dim=1)[back] + D * u if flip else y)


def flipped_scan_reference(u, delta, A, B, C, D=None, keep: int = 1):
    """`flipped_scan`, one explicit reordered scan per query."""
    y = selective_scan_reference(u, delta, A, B, C, D)
    out = []
    for t in range(u.shape[1]):
        order = torch.tensor(partial_flip_order(t + 1, keep), device=u.device)
        pick = (u[:, order], delta[:, order], A, B[:, order], C[:, order], D)
        out.append(selective_scan_reference(*pick)[:, -1])
    return y, torch.stack(out, dim=1)
