"""Greedy and beam-search decoding, batched across studies, for any :class:`CaptionModel`."""

from __future__ import annotations

import torch
from torch import Tensor

from gateway.findings.models import CaptionModel
from gateway.findings.text import Vocabulary

__all__ = ["beam_search", "greedy", "prime"]


def prime(
    model: CaptionModel, memory: Tensor, state: tuple[Tensor, ...], prefix: Tensor | None
) -> tuple[Tensor, ...]:
    """The decoder state after the context prefix ``(N, L)`` (nothing to do without one): the prefix is
    read, never generated, so its words cannot reach the draft."""
    if prefix is None:
        return state
    if prefix.shape[0] != memory.shape[0]:
        raise ValueError(f"{prefix.shape[0]} context prefixes for {memory.shape[0]} studies")
    for column in range(prefix.shape[1]):
        _, state = model.step(prefix[:, column].to(memory.device), memory, state)
    return state


def _step(
    model: CaptionModel, tokens: Tensor, memory: Tensor, state: tuple[Tensor, ...]
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``model.step`` with the context-only words (``ModelConfig.generated_vocab_size``) made impossible."""
    logp, state = model.step(tokens, memory, state)
    limit = model.config.generated_vocab_size
    if limit is not None and limit < logp.shape[-1]:
        logp = logp.clone()
        logp[:, limit:] = float("-inf")
    return logp, state


@torch.no_grad()
def greedy(
    model: CaptionModel, images: Tensor, max_tokens: int, prefix: Tensor | None = None
) -> list[list[int]]:
    """The most likely word at each step, until ``<end>`` or ``max_tokens`` words; ``prefix`` is the
    context prefix ``(N, L)`` of a model trained with context."""
    memory = model.encode(images)
    state = prime(model, memory, model.start(memory), prefix)
    batch = memory.shape[0]
    tokens = torch.full((batch,), Vocabulary.start, dtype=torch.long, device=memory.device)
    done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(max_tokens):  # a draft still going after max_tokens words is cut there
        logp, state = _step(model, tokens, memory, state)
        tokens = logp.argmax(dim=-1)
        for i, token in enumerate(tokens.tolist()):
            if not done[i]:
                out[i].append(token)
        done |= tokens == Vocabulary.end
        if bool(done.all()):
            break
    return [seq[:-1] if seq and seq[-1] == Vocabulary.end else seq for seq in out]


@torch.no_grad()
def beam_search(
    model: CaptionModel,
    images: Tensor,
    max_tokens: int,
    beam_size: int = 3,
    length_penalty: float = 1.0,
    prefix: Tensor | None = None,
) -> list[list[int]]:
    """Best hypothesis per study by ``sum(log p) / length**length_penalty``.

    Each study keeps ``beam_size`` live hypotheses; one that emits ``<end>`` among the top ``beam_size``
    candidates is set aside, and a study is done once it has ``beam_size`` finished ones. With
    ``beam_size == 1`` this is exactly greedy decoding.
    """
    if beam_size < 1:
        raise ValueError("beam_size must be at least 1")
    memory = model.encode(images)
    batch, k = memory.shape[0], beam_size
    device = memory.device
    index = torch.arange(batch, device=device).repeat_interleave(k)
    memory = memory[index]
    state = prime(model, memory, model.start(memory), None if prefix is None else prefix[index.cpu()])
    tokens = torch.full((batch * k,), Vocabulary.start, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical; only one may expand at first
    sequences: list[list[int]] = [[] for _ in range(batch * k)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for length in range(1, max_tokens + 1):
        logp, state = _step(model, tokens, memory, state)
        vocab = logp.shape[-1]
        candidates = (scores.view(-1, 1) + logp).view(batch, k * vocab)
        top_scores, top_ids = candidates.topk(min(2 * k, k * vocab), dim=1)
        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_scores: list[float] = []
        next_sequences: list[list[int]] = []
        for b in range(batch):
            chosen = 0
            for rank, (score, flat) in enumerate(
                zip(top_scores[b].tolist(), top_ids[b].tolist(), strict=True)
            ):
                if chosen == k or score == float("-inf"):
                    break
                row, token = b * k + flat // vocab, flat % vocab
                if token == Vocabulary.end or length == max_tokens:
                    if rank < k and not done[b]:
                        seq = sequences[row] if token == Vocabulary.end else [*sequences[row], token]
                        finished[b].append((score / (length**length_penalty), seq))
                    continue
                next_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
                next_sequences.append([*sequences[row], token])
                chosen += 1
            while chosen < k:  # a study out of candidates keeps dead beams
                next_rows.append(b * k)
                next_tokens.append(Vocabulary.pad)
                next_scores.append(float("-inf"))
                next_sequences.append([])
                chosen += 1
            if len(finished[b]) >= k:
                done[b] = True
        if all(done):
            break
        rows = torch.tensor(next_rows, device=device)
        state = model.reorder(state, rows)
        tokens = torch.tensor(next_tokens, dtype=torch.long, device=device)
        scores = torch.tensor(next_scores, device=device).view(batch, k)
        sequences = next_sequences
    best: list[list[int]] = []
    for b in range(batch):
        if finished[b]:
            best.append(max(finished[b], key=lambda item: item[0])[1])
        else:
            best.append([])
    return best
