"""Which tokens are the answers "yes" and "no", and P(yes) / P(no) from an engine's first-token log-probs.

Every engine shares these, so the rule for which tokens count lives in one place.

**One token id per word, as the reference picks it.** RLAIF-V's labelers (OmniLMM, MiniCPM-Llama3-V 2.5) score
four token ids, one for each of "yes", "Yes", "no" and "No", each the last id of the word encoded right after
the assistant's header (`tokenizer.encode("\\n<|assistant|>\\n" + word)[-1]`, or after the BOS token): the word
as it starts a line, with no space before it. Then P(yes) = p(yes) + p(Yes), P(no) = p(no) + p(No), and a claim
stands iff P(yes) > P(no). We pick each id the same way, as the last id of `encode("\\n" + word)` without
special tokens, which gives the reference's ids on its tokenizers (SentencePiece and byte-level BPE alike).

**Variants, an option** (engine option `yes_no_variants`): the word's other spellings as a first token, the
word encoded bare and after a space (" Yes", SentencePiece's "▁Yes"), are added when they decode to the word.
A model whose template leaves the answer after a space (LLaVA-1.5's "ASSISTANT:") says " Yes", not "Yes".
"""

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from labeling.backends.base import YesNo

YES_WORDS, NO_WORDS = ("Yes", "yes"), ("No", "no")
YES, NO = frozenset(YES_WORDS), frozenset(NO_WORDS)


@dataclass(frozen=True)
class AnswerTokens:
    """The token ids whose probabilities make P(yes) and P(no)."""

    yes: tuple[int, ...]
    no: tuple[int, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return self.yes + self.no


def answer_ids(
    encode: Callable[[str], list[int]], decode: Callable[[int], str], word: str, variants: bool
) -> list[int]:
    """The ids that count as `word`: the reference's one (see the module), then the variants when asked.

    `encode` is the tokenizer's, without special tokens; `decode` turns one id into its text.
    """
    ids = encode("\n" + word)
    if not ids or decode(ids[-1]).strip() != word:
        raise ValueError(f"the tokenizer has no single token for {word!r} at the start of a line")
    picked = [ids[-1]]
    if variants:
        for text in (word, " " + word):
            first = encode(text)[:1]
            if first and decode(first[0]).strip() == word and first[0] not in picked:
                picked.append(first[0])
    return picked


def answer_tokens(encode: Callable[[str], list[int]], decode: Callable[[int], str], variants: bool) -> AnswerTokens:
    """The yes and no token ids of a tokenizer (see the module for the rule)."""

    def pick(words):
        return tuple(i for word in words for i in answer_ids(encode, decode, word, variants))

    return AnswerTokens(yes=pick(YES_WORDS), no=pick(NO_WORDS))


def yes_no_from_ids(logprobs: Mapping[int, float], tokens: AnswerTokens) -> YesNo:
    """Sum exp(logprob) over the answer ids; an id missing from `logprobs` counts 0."""
    p_yes = sum(math.exp(logprobs[i]) for i in tokens.yes if i in logprobs)
    p_no = sum(math.exp(logprobs[i]) for i in tokens.no if i in logprobs)
    return YesNo(p_yes=p_yes, p_no=p_no)


def answer_word(token: str | None) -> str:
    """The word a token spells, without whitespace or tokenizer space markers.

    Servers report the same token as "Yes", " Yes" (decoded, leading space kept) or "▁Yes" / "ĠYes" (raw
    SentencePiece / byte-level BPE pieces, as older vLLM reports them): all three are the answer "Yes".
    """
    return (token or "").replace("\u2581", " ").replace("\u0120", " ").strip()


def yes_no_from_top_tokens(top: Iterable[tuple[str | None, float]]) -> YesNo:
    """Sum exp(logprob) over the (token, logprob) pairs that spell yes/Yes and no/No; others are ignored.

    Each distinct token string counts once (a server may list the chosen token both as itself and among the top).
    """
    p_yes = p_no = 0.0
    seen = set()
    for token, logprob in top:
        if token in seen:
            continue
        seen.add(token)
        word = answer_word(token)
        if word in YES:
            p_yes += math.exp(logprob)
        elif word in NO:
            p_no += math.exp(logprob)
    return YesNo(p_yes=p_yes, p_no=p_no)
