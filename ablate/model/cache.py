"""Decode caches: keys and values per (iteration, layer), kept between forward calls.

Attention is causal in every iteration, so a new position's states depend on the earlier
positions only through their keys and values at each (t, layer). A Matrix Thinker's are
large (2·d² floats per position per (t, layer): 512 KiB per position at d = 32, T = 8,
8 layers), so the caches never copy them per step:

* ``DecodeCache``: one sequence per row. Buffers are allocated with room to grow
  (``reserve`` positions beyond the first call; doubling when full) and written in place;
  ``fork`` shares them until either side writes (copy on write). Under autograd
  (training a CODI model through it) it concatenates instead, as writing into a buffer
  that a backward pass still needs is not allowed.
* ``SharedPrefixCache``: greedy decoding of C continuations of each of G prompts (one per
  evaluation condition) as G·C rows of one batch. It takes over the prompt pass's keys
  and values (``DecodeCache.prefix_parts``: contiguous keys, values as columns, the
  layouts read fastest; the prompt cache cannot be extended afterwards) and reads them
  once per prompt for all its continuations (the continuations' queries attend to them
  as one matrix product); each row's generated tokens go to its own position-major
  buffer, whose filled part is contiguous. Rows that finish are left in place and
  skipped until at most half are active, then the buffers are compacted.

    >>> cache = DecodeCache()
    >>> model(prompt_ids, cache=cache)                      # doctest: +SKIP
    >>> branches = SharedPrefixCache(cache, n_branches=11, capacity=16)  # doctest: +SKIP
    >>> model(next_ids, position_ids=positions, cache=branches)         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Protocol

import torch

from ablate.errors import AblateError
from ablate.model.attention import Slot, _MatrixAttention

KV = tuple[torch.Tensor, torch.Tensor]


class AttentionCache(Protocol):
    """What the model's forward asks of a cache."""

    length: int  # positions held per row (the default offset of new positions)

    @property
    def ids(self) -> torch.Tensor | None: ...  # (B, length) token history, when kept

    def attention_mask(self, B: int, L: int, attention_mask: torch.Tensor | None,
                       device: torch.device) -> torch.Tensor | None: ...

    def reserve(self, slot: Slot, shape: torch.Size, like: torch.Tensor) -> KV | None: ...

    def attend(self, slot: Slot, attn: _MatrixAttention, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor: ...

    def advance(self, L: int, input_ids: torch.Tensor | None) -> None: ...


def _writing_in_place(k: torch.Tensor) -> bool:
    return not (torch.is_grad_enabled() and k.requires_grad)


class DecodeCache:
    """Keys/values per (iteration, layer) and the token history of B sequences.

    Buffers are (B, H, capacity, h, d); positions [0, length) are filled. ``reserve`` is
    how many positions beyond the first call to allocate (e.g. ``max_new_tokens``);
    a write past the capacity doubles it.
    """

    def __init__(self, reserve: int = 0) -> None:
        self.kv: dict[Slot, KV] = {}
        self.length = 0
        self.reserve_positions = int(reserve)
        self._ids: torch.Tensor | None = None
        self.key_valid: torch.Tensor | None = None  # (B, length) bool, when padded
        self._shared: set[Slot] = set()  # slots whose buffers a fork also holds
        self._prefix_parts: dict[Slot, KV] | None = None  # once handed to shared decoding

    @property
    def ids(self) -> torch.Tensor | None:
        return self._ids

    @ids.setter
    def ids(self, value: torch.Tensor | None) -> None:
        self._ids = value

    def keys_values(self, slot: Slot) -> KV:
        """The filled part of a slot's buffers, each (B, H, length, h, d)."""
        K, V = self.kv[slot]
        return K[:, :, : self.length], V[:, :, : self.length]

    def prefix_parts(self) -> dict[Slot, KV]:
        """The prompt's keys and values for shared-prefix decoding, per slot: keys
        (B, H, length, h, d) and values as columns, (B, H, h·d, length), both contiguous
        (every decode step reads all of them; strided keys and values read as rows are
        ~2.5x and ~1.5x slower on CPU). The buffers are converted slot by slot and the
        old ones dropped, so no second copy of the cache is held; afterwards this cache
        keeps only these parts (more shared-prefix caches can be built from it) and
        cannot run further positions."""
        if self._prefix_parts is None:
            parts: dict[Slot, KV] = {}
            for slot in list(self.kv):
                K, V = self.keys_values(slot)
                del self.kv[slot]
                B, H, L, h, d = V.shape
                parts[slot] = (K.contiguous(),
                               V.reshape(B, H, L, h * d).transpose(2, 3).contiguous())
                del K, V
            self._prefix_parts = parts
        return self._prefix_parts

    def fork(self) -> DecodeCache:
        """An independent copy: both share the buffers until one of them writes (then
        that one copies the filled part), so one prompt can branch into many
        continuations without copying it up front."""
        twin = DecodeCache(self.reserve_positions)
        twin.kv = dict(self.kv)
        twin.length, twin._ids, twin.key_valid = self.length, self._ids, self.key_valid
        self._shared |= set(self.kv)
        twin._shared = set(self.kv)
        return twin

    def reorder(self, index: torch.Tensor) -> None:
        """Keep only the batch rows in ``index`` (copies the buffers)."""
        self.kv = {slot: (K[index], V[index]) for slot, (K, V) in self.kv.items()}
        self._shared.clear()
        if self._ids is not None:
            self._ids = self._ids[index]
        if self.key_valid is not None:
            self.key_valid = self.key_valid[index]

    # -- what the forward pass calls ---------------------------------------------------
    def reserve(self, slot: Slot, shape: torch.Size, like: torch.Tensor) -> KV | None:
        """Where the keys and values of new positions, ``shape`` (B, H, L, h, d), go:
        views of the slot's buffers (grown or unshared first), so a caller can write them
        in place. None under autograd."""
        if not _writing_in_place(like):
            return None
        B, H, L, h, d = shape
        end = self.length + L
        buffers = self.kv.get(slot)
        if buffers is None:
            if self.length:
                raise AblateError(f"decode cache has no keys for {slot} after "
                                  f"{self.length} positions; use one cache per model")
            buffers = tuple(like.new_empty(B, H, end + self.reserve_positions, h, d)
                            for _ in range(2))
        else:
            if buffers[0].shape[0] != B:
                raise AblateError(f"decode cache holds {buffers[0].shape[0]} rows but the "
                                  f"input has {B}; reorder the cache first")
            capacity = buffers[0].shape[2]
            if end > capacity or slot in self._shared:
                grown = max(end, 2 * capacity) if end > capacity else capacity
                fresh = tuple(like.new_empty(B, H, grown, h, d) for _ in range(2))
                for new, old in zip(fresh, buffers, strict=True):
                    new[:, :, : self.length] = old[:, :, : self.length]
                buffers = fresh
                self._shared.discard(slot)
        self.kv[slot] = buffers  # type: ignore[assignment]
        return buffers[0][:, :, self.length:end], buffers[1][:, :, self.length:end]

    def attend(self, slot: Slot, attn: _MatrixAttention, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Store k, v (B, H, L, h, d) after the slot's keys and attend q over all of them."""
        end = self.length + k.shape[2]
        if _writing_in_place(k):
            dst_k, dst_v = self.reserve(slot, k.shape, k)  # type: ignore[misc]
            if dst_k.data_ptr() != k.data_ptr():  # not already written there
                dst_k.copy_(k)
                dst_v.copy_(v)
            K, V = (buffer[:, :, :end] for buffer in self.kv[slot])
        else:
            old = self.kv.get(slot)
            K = k if old is None else torch.cat([old[0][:, :, : self.length], k], 2)
            V = v if old is None else torch.cat([old[1][:, :, : self.length], v], 2)
            self.kv[slot] = (K, V)
            self._shared.discard(slot)
        return attn.attend(q, K, V, mask, causal=self.length == 0 and mask is None)

    def attention_mask(self, B: int, L: int, attention_mask: torch.Tensor | None,
                       device: torch.device) -> torch.Tensor | None:
        """Bool (B|1, 1, L, length+L) or None for the plain causal fast path; records
        which keys are padding for later calls."""
        if self._prefix_parts is not None:
            raise AblateError("this prompt cache was handed to shared-prefix decoding "
                              "(prefix_parts) and holds no buffers to extend; run the "
                              "prompt through a fresh DecodeCache")
        past = self.length
        if attention_mask is None and self.key_valid is not None:
            # Earlier chunks were padded: keep masking their padding in later chunks.
            attention_mask = torch.ones(B, L, dtype=torch.bool, device=device)
        if attention_mask is None and (past == 0 or L == 1):
            return None
        total = past + L
        causal = torch.ones(L, total, dtype=torch.bool, device=device).tril(past)
        if attention_mask is None:
            return causal[None, None]
        valid = attention_mask.to(device=device, dtype=torch.bool)
        if valid.shape[1] == L and past:
            prev = self.key_valid
            if prev is None:
                prev = torch.ones(B, past, dtype=torch.bool, device=device)
            valid = torch.cat([prev, valid], dim=1)
        _check_mask_shape(attention_mask, valid, B, L, total)
        self.key_valid = valid
        return padded_causal_mask(causal, valid, past)

    def advance(self, L: int, input_ids: torch.Tensor | None) -> None:
        self.length += L
        if input_ids is not None:
            self._ids = input_ids if self._ids is None else torch.cat([self._ids, input_ids], 1)


def _check_mask_shape(given: torch.Tensor, valid: torch.Tensor, B: int, L: int,
                      total: int) -> None:
    if valid.shape != (B, total):
        raise AblateError(
            f"attention_mask has shape {tuple(given.shape)}; expected ({B}, {total}) or "
            f"({B}, {L}): one entry per (cached and new) position"
        )


def padded_causal_mask(causal: torch.Tensor, valid: torch.Tensor, past: int) -> torch.Tensor:
    """(B, 1, L, total) from the causal pattern (L, total) and valid keys (B, total)."""
    L, total = causal.shape
    # A padded query may see nothing else; letting it see itself avoids NaN rows.
    diag = torch.zeros(L, total, dtype=torch.bool, device=causal.device)
    diag[torch.arange(L), past + torch.arange(L)] = True
    return (causal[None] & valid[:, None, :] | diag[None])[:, None]


class SharedPrefixCache:
    """C greedy continuations of each of G prompts, decoded one token per call as rows.

    Row r continues prompt r // C (rows are grouped by prompt). The prompt's keys and
    values stay in ``prefix`` (read for all C rows at once); each row's generated tokens
    have their own buffers of ``capacity`` positions (doubled when full). ``keep`` drops
    finished rows: the next call's input holds the kept rows in order.

    ``static=True`` fixes every shape, so that a decode step can be captured as a CUDA
    graph and replayed: all G·C rows are computed at every call (``keep`` is not
    available), attention runs over the whole ``capacity`` with a mask built from a step
    counter on the device, and at most ``capacity`` tokens can be decoded. The token
    history (``ids``) is not kept, so embeddings that read it (bigram) cannot use it.
    """

    def __init__(self, prefix: DecodeCache, n_branches: int, capacity: int,
                 static: bool = False) -> None:
        if not prefix.kv and not prefix._prefix_parts:
            raise AblateError("the prompt cache is empty: run the prompt pass through it first")
        # Keys (G, H, Lp, h, d) and values as columns (G, H, h·d, Lp), contiguous; the
        # prompt cache gives up its buffers for them (DecodeCache.prefix_parts).
        self._prefix = dict(prefix.prefix_parts())
        G = next(iter(self._prefix.values()))[0].shape[0]
        self.n_branches = C = int(n_branches)
        self.static = static
        Lp = prefix.length
        valid = prefix.key_valid
        device = next(iter(self._prefix.values()))[0].device
        self._prefix_valid = (valid if valid is not None
                              else torch.ones(G, Lp, dtype=torch.bool, device=device))
        self._prefix_padding = self._padding()
        self._prefix_ids = prefix.ids  # (G, Lp) or None
        self._group = torch.arange(G, device=device)  # prompt of each prefix row
        self._grid = (G, C)  # slots: prefix row g, branch c -> slot g * C + c
        self._active = torch.arange(G * C, device=device)  # slot of each live row, in order
        self._all_live = True
        self._capacity = max(1, int(capacity))
        self._suffix: dict[Slot, KV] = {}
        self._generated: list[torch.Tensor] = []  # (slots,) token ids per step
        self.prefix_length = Lp
        self.steps = 0
        self._step = torch.zeros((), dtype=torch.long, device=device)  # the steps, on device

    @property
    def length(self) -> int:
        return self.prefix_length + self.steps

    @property
    def n_rows(self) -> int:
        return int(self._active.numel())

    @property
    def ids(self) -> torch.Tensor | None:
        """(rows, length) token history of the live rows (for embeddings that read it)."""
        if self._prefix_ids is None or self.static:
            return None
        G, C = self._grid
        prompt_of_slot = torch.arange(G * C, device=self._active.device) // C
        rows = [self._prefix_ids[prompt_of_slot[self._active]]]
        if self._generated:
            rows.append(torch.stack(self._generated, 1)[self._active])
        return torch.cat(rows, 1)

    def keep(self, rows: torch.Tensor | list[int]) -> None:
        """Continue only the live rows at these indices (in the current row order)."""
        if self.static:
            raise AblateError("a static shared-prefix cache computes every row at every "
                              "step; ignore finished rows instead of dropping them")
        index = torch.as_tensor(rows, dtype=torch.long, device=self._active.device)
        self._active = self._active[index]
        G, C = self._grid
        if 2 * self._active.numel() <= G * C and self._active.numel():
            self._compact()
        G, C = self._grid
        self._all_live = torch.equal(self._active, torch.arange(G * C, device=index.device))

    def _compact(self) -> None:
        """Rebuild the slot grid around the live rows: prompts without live rows are
        dropped, each kept prompt gets as many slots as its most-continued prompt has."""
        G, C = self._grid
        prompt = self._active // C  # prefix row of each live row
        kept, counts = torch.unique(prompt, return_counts=True)
        C2 = int(counts.max())
        position = torch.searchsorted(kept, prompt)  # new prefix row
        branch = torch.zeros_like(prompt)
        for g in range(len(kept)):  # number the live rows of each prompt 0, 1, ...
            members = (position == g).nonzero()[:, 0]
            branch[members] = torch.arange(len(members), device=prompt.device)
        new_slots = position * C2 + branch
        if len(kept) < G:
            self._prefix = {slot: (K[kept], V[kept]) for slot, (K, V) in self._prefix.items()}
            self._prefix_valid = self._prefix_valid[kept]
            self._prefix_padding = self._padding()
            if self._prefix_ids is not None:
                self._prefix_ids = self._prefix_ids[kept]
        for slot, (K, V) in self._suffix.items():
            fresh = []
            for old in (K, V):
                new = old.new_zeros(old.shape[0], len(kept) * C2, *old.shape[2:])
                new[:, new_slots] = old[:, self._active]
                fresh.append(new)
            self._suffix[slot] = (fresh[0], fresh[1])
        self._generated = [self._scatter(step[self._active], new_slots, len(kept) * C2)
                           for step in self._generated]
        self._grid = (len(kept), C2)
        self._active = new_slots

    def _padding(self) -> torch.Tensor | None:
        """(G, 1, 1, Lp) True at the prompts' padding, or None when there is none."""
        if self.static or not bool(self._prefix_valid.all()):
            return ~self._prefix_valid[:, None, None, :]
        return None

    @staticmethod
    def _scatter(values: torch.Tensor, slots: torch.Tensor, n: int) -> torch.Tensor:
        out = values.new_zeros(n, *values.shape[1:])
        out[slots] = values
        return out

    # -- what the forward pass calls ---------------------------------------------------
    def attention_mask(self, B: int, L: int, attention_mask: torch.Tensor | None,
                       device: torch.device) -> torch.Tensor | None:
        if L != 1 or self.n_rows != B:
            raise AblateError(f"a shared-prefix cache decodes one token for each of its "
                              f"{self.n_rows} live rows per call; got input ({B}, {L})")
        if attention_mask is not None:
            raise AblateError("a shared-prefix cache builds its own mask; pass no attention_mask")
        return None

    def reserve(self, slot: Slot, shape: torch.Size, like: torch.Tensor) -> KV | None:
        return None  # the new keys of live rows are scattered into the slot grid in attend

    def attend(self, slot: Slot, attn: _MatrixAttention, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q, k, v (rows, H, 1, h, d) of the live rows -> attention output, same shape."""
        if self.static:
            return self._attend_static(slot, attn, q, k, v)
        G, C = self._grid
        n_slots = G * C
        s = self.steps
        _, H, _, h, d = q.shape
        K_s, V_s = self._suffix_buffers(slot, k, n_slots, s + 1)  # (capacity, slots, H, h, d)
        # (slots, H, h, d); with every slot live in slot order, no scatter is needed
        if self._all_live:
            K_s[s], V_s[s], grid_q = k[:, :, 0], v[:, :, 0], q[:, :, 0]
        else:
            K_s[s, self._active], V_s[s, self._active] = k[:, :, 0], v[:, :, 0]
            grid_q = self._scatter(q[:, :, 0], self._active, n_slots)
        K_own, V_own = K_s[: s + 1], V_s[: s + 1]  # contiguous
        by_prompt = grid_q.view(G, C, H, h, d).transpose(1, 2)  # (G, H, C, h, d)
        K_p, V_p = self._prefix[slot]  # (G, H, Lp, h, d), (G, H, h·d, Lp)
        prefix_scores = attn.scores(by_prompt, K_p)  # (G, H, C, Lp)
        if self._prefix_padding is not None:
            prefix_scores = prefix_scores.masked_fill(self._prefix_padding, float("-inf"))
        own_scores = attn.scores_each(grid_q, K_own)  # (slots, H, s+1)
        Lp = K_p.shape[2]
        scores = torch.cat([prefix_scores.transpose(1, 2).reshape(n_slots, H, Lp),
                            own_scores], dim=-1)
        w = torch.softmax(scores, dim=-1)
        w_prefix = w[..., :Lp].view(G, C, H, Lp).transpose(1, 2)  # (G, H, C, Lp)
        out_prefix = attn.mix_columns(w_prefix, by_prompt, K_p, V_p)  # (G, H, C, h, d)
        out_own = attn.mix_each(w[..., Lp:], grid_q, K_own, V_own)  # (slots, H, h, d)
        out = out_prefix.transpose(1, 2).reshape(n_slots, H, h, d).add_(out_own)[:, :, None]
        return out if self._all_live else out[self._active]

    def _attend_static(self, slot: Slot, attn: _MatrixAttention, q: torch.Tensor,
                       k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``attend`` with fixed shapes: every row, the whole capacity, a device mask."""
        G, C = self._grid
        R, H, _, h, d = q.shape
        K_s, V_s = self._suffix_buffers(slot, k, R, self._capacity)
        K_s.index_copy_(0, self._step.view(1), k.permute(2, 0, 1, 3, 4))
        V_s.index_copy_(0, self._step.view(1), v.permute(2, 0, 1, 3, 4))
        own_q = q[:, :, 0]  # (R, H, h, d)
        by_prompt = own_q.view(G, C, H, h, d).transpose(1, 2)  # (G, H, C, h, d)
        K_p, V_p = self._prefix[slot]
        prefix_scores = attn.scores(by_prompt, K_p)  # (G, H, C, Lp)
        if self._prefix_padding is not None:
            prefix_scores = prefix_scores.masked_fill(self._prefix_padding, float("-inf"))
        own_scores = attn.scores_each(own_q, K_s)  # (R, H, capacity)
        future = torch.arange(K_s.shape[0], device=q.device) > self._step
        own_scores = own_scores.masked_fill(future, float("-inf"))
        Lp = K_p.shape[2]
        scores = torch.cat([prefix_scores.transpose(1, 2).reshape(R, H, Lp), own_scores], -1)
        w = torch.softmax(scores, dim=-1)
        w_prefix = w[..., :Lp].reshape(G, C, H, Lp).transpose(1, 2)
        out_prefix = attn.mix_columns(w_prefix, by_prompt, K_p, V_p).transpose(1, 2)
        out = out_prefix.reshape(R, H, h, d) + attn.mix_each(w[..., Lp:], own_q, K_s, V_s)
        return out[:, :, None]

    def _suffix_buffers(self, slot: Slot, like: torch.Tensor, n_slots: int, end: int) -> KV:
        """The slot's own keys and values, (capacity, slots, H, h, d): position-major, so
        that the filled part [0, end) is contiguous."""
        buffers = self._suffix.get(slot)
        _, H, _, h, d = like.shape
        # Only the static variant reads positions not yet written (masked, so they must
        # be finite); the dynamic one reads [0, end), so its buffers need no zeroing.
        allocate = like.new_zeros if self.static else like.new_empty
        if buffers is None:
            buffers = tuple(allocate(max(self._capacity, end), n_slots, H, h, d)
                            for _ in range(2))
        elif end > buffers[0].shape[0]:
            grown = []
            for old in buffers:
                new = allocate(max(end, 2 * old.shape[0]), n_slots, H, h, d)
                new[: old.shape[0]] = old
                grown.append(new)
            buffers = tuple(grown)
        self._suffix[slot] = buffers  # type: ignore[assignment]
        return buffers  # type: ignore[return-value]

    def advance(self, L: int, input_ids: torch.Tensor | None) -> None:
        assert L == 1
        self._step.add_(1)
        if input_ids is not None and not self.static:
            G, C = self._grid
            self._generated.append(self._scatter(input_ids[:, 0], self._active, G * C))
        self.steps += 1
