"""Turn an engine's top-k first-token log-probs into RLAIF-V's P(yes) / P(no).

Engines that only report the k most likely tokens (vLLM, OpenAI-compatible servers) share this, so the
rule for which token strings count as "yes" and "no" lives in one place.
"""

import math
from collections.abc import Iterable

from labeling.backends.base import YesNo

YES = frozenset({"yes", "Yes"})
NO = frozenset({"no", "No"})


def answer_word(token: str | None) -> str:
    """The word a token spells, without whitespace or tokenizer space markers.

    Servers report the same token as "Yes", " Yes" (decoded, leading space kept) or "▁Yes" / "ĠYes" (raw
    SentencePiece / byte-level BPE pieces, as older vLLM reports them): all three are the answer "Yes".
    """
    return (token or "").replace("\u2581", " ").replace("\u0120", " ").strip()


def yes_no_from_top_tokens(top: Iterable[tuple[str | None, float]]) -> YesNo:
    """Sum exp(logprob) over the (token, logprob) pairs that spell yes/Yes and no/No.

    Only the engine's top-k tokens are known: a yes/no token outside the top k counts as 0. With k = 20
    each such token is less likely than the 20th, so it rarely changes a verdict. Case follows
    the paper (yes/Yes, no/No); "YES" and other tokens are ignored.
    """
    p_yes = p_no = 0.0
    for token, logprob in top:
        word = answer_word(token)
        if word in YES:
            p_yes += math.exp(logprob)
        elif word in NO:
            p_no += math.exp(logprob)
    return YesNo(p_yes=p_yes, p_no=p_no)
