"""Divide: rewrite each answer into atomic claims, each with a yes/no question the labeler can check.

Two divide methods (`Iteration.splitter` picks one: "rule", or the path of the LLM that runs `rlaifv`):
- ``rlaifv``: the paper's method. A text LLM (the released Llama-3-8B "split" and "changeq" fine-tunes)
  extracts facts from the question-answer pair, then turns each fact into a general question. The prompts are
  kept verbatim because those models were trained on them.
- ``rule``: a deterministic sentence/clause splitter for offline demos and tests. Not the paper's method.

Where we differ from the reference: it pairs facts with questions by ``zip`` (silently dropping a mismatch)
and skips a response whose output did not parse; we return a visible failure with a reason instead, so the
web app can mark the response ``split_failed`` and show why.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from labeling.backends.base import Backend, Sampling

METHODS = ("rule", "rlaifv")

RLAIFV_SAMPLING = Sampling(temperature=0.2, top_p=0.9, max_new_tokens=256)
RLAIFV_PROMPT_WORDS = 300

SPLIT_PROMPT = (
    "You are an expert in extracting facts from the given question-answer pair for an image. Your task is to "
    "extract and rewrite the facts mentioned in the question-answer pair into self-contained sentences. Exclude "
    "opinions or subjective statements.\n\nYou should present your result in the following format:\n### Facts:\n"
    "- {Extracted fact 1}\n- {Extracted fact 2}\n- ...\n\n### Question-answer pair:\nQuestion: "
)

CHANGEQ_PROMPT = (
    "You are an expert at modifying a given declarative sentence into a general question sentence. Your task is "
    "to modify the given declarative sentences one by one into a general question form. Do not change tenses or "
    "add extra content.\n    If the given declarative sentence contains not, no or negative meaning words, you "
    "need to check the modified general interrogative sentence to make sure that the generated general question "
    "sentence retains words with not , no or negative meaning words.\n\nYou should present your result in the "
    "following format:\n### Modified sentences:\n- {Modified sentence 1}\n- {Modified sentence 2}\n- ...\n\n"
    "### Declarative sentences:"
)


@dataclass(frozen=True)
class QuestionAnswer:
    """One policy response to divide: the instruction's question and the answer text."""

    question: str
    answer: str


@dataclass(frozen=True)
class Claim:
    """An atomic statement from an answer and the polar question that checks it."""

    text: str
    question: str


@dataclass(frozen=True)
class DivideResult:
    """Claims for one response, or the reason there are none (the response is then ``split_failed``).

    ``raw`` keeps the LLM outputs behind the result (split, then change-question) so a reviewer can see
    what went wrong; it is empty for the rule method.
    """

    method: str
    claims: tuple[Claim, ...] = ()
    failure: str | None = None
    raw: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.failure is None) == (not self.claims):
            raise ValueError("a DivideResult has either claims or a failure, not both or neither")

    @property
    def ok(self) -> bool:
        return self.failure is None


def divide(items: Sequence[QuestionAnswer], method: str = "rule", backend: Backend | None = None) -> list[DivideResult]:
    """Divide every answer into claims with `method` ("rule" or "rlaifv"); one result per item, in order."""
    if method == "rule":
        return [divide_by_rules(item) for item in items]
    if method == "rlaifv":
        if backend is None:
            raise ValueError("the rlaifv method needs a backend with complete()")
        return divide_rlaifv(items, backend)
    raise ValueError(f"unknown divide method {method!r}; expected one of {METHODS}")


# --- the paper's splitter ---------------------------------------------------------------------------------


def split_prompt(question: str, answer: str) -> str:
    """The split model's prompt, cut to its first 300 words exactly as the reference does.

    The reference cuts the whole prompt (instruction + question + answer) with ``content.split(' ')[:300]``:
    words are separated by single spaces only, so newlines do not start a new word. The instruction text
    takes ~60 of those words, leaving the question and answer the rest. The change-question prompt is not cut.
    """
    content = SPLIT_PROMPT + question + "\nAnswer: " + answer
    return " ".join(content.split(" ")[:RLAIFV_PROMPT_WORDS])


def changeq_prompt(facts: Sequence[str]) -> str:
    """The change-question model's prompt: the instruction, then one ``- fact`` line per fact."""
    return CHANGEQ_PROMPT + "".join(f"\n- {fact}\n" for fact in facts)


# One bullet character (not "**bold**" or a "---" rule) or "1." / "1)" followed by a space.
_BULLET = re.compile(r"^(?:[-*•](?![-*•])|\d+[.)]\s)\s*")
_PLACEHOLDER = re.compile(r"^\{.*\}$")
_HAS_WORD = re.compile(r"\w")


def parse_list(output: str) -> list[str]:
    """Items of a ``- item`` list in model output.

    The reference keeps every non-empty line without ``###`` and drops its first character. We strip
    whitespace, accept ``-``, ``*``, ``•`` and ``1.`` bullets with or without a space, and, when any line
    is bulleted, keep only bulleted lines, so chatter before or after the list ("Here are the facts:") is
    not mistaken for a fact. Output with no bullets at all is read one item per line. Template
    placeholders the model may echo (``...``, ``{Extracted fact 1}``) and lines without a word are dropped.
    """
    lines = [line.strip() for line in output.splitlines()]
    lines = [line for line in lines if line and "###" not in line]
    if any(_BULLET.match(line) for line in lines):
        lines = [_BULLET.sub("", line, count=1).strip() for line in lines if _BULLET.match(line)]
    return [line for line in lines if _HAS_WORD.search(line) and not _PLACEHOLDER.match(line)]


def divide_rlaifv(items: Sequence[QuestionAnswer], backend: Backend) -> list[DivideResult]:
    """The paper's divide step: all split prompts in one backend call, then all change-question prompts."""
    results: list[DivideResult | None] = [None] * len(items)
    todo = []
    for i, item in enumerate(items):
        if item.answer.strip():
            todo.append(i)
        else:
            results[i] = DivideResult("rlaifv", failure="empty answer")

    split_outputs = _complete(backend, [split_prompt(items[i].question, items[i].answer) for i in todo])
    with_facts = []
    for i, output in zip(todo, split_outputs, strict=True):
        facts = parse_list(output)
        if facts:
            with_facts.append((i, facts, output))
        else:
            results[i] = DivideResult("rlaifv", failure="split produced no facts", raw=(output,))

    changeq_outputs = _complete(backend, [changeq_prompt(facts) for _, facts, _ in with_facts])
    for (i, facts, split_output), output in zip(with_facts, changeq_outputs, strict=True):
        raw = (split_output, output)
        questions = parse_list(output)
        if len(questions) != len(facts):
            failure = f"{len(facts)} facts but {len(questions)} questions"
            results[i] = DivideResult("rlaifv", failure=failure, raw=raw)
        else:
            claims = tuple(Claim(f, q) for f, q in zip(facts, questions, strict=True))
            results[i] = DivideResult("rlaifv", claims=claims, raw=raw)
    return results


def _complete(backend: Backend, prompts: list[str]) -> list[str]:
    if not prompts:
        return []
    outputs = backend.complete(prompts, RLAIFV_SAMPLING)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"backend returned {len(outputs)} completions for {len(prompts)} prompts")
    return outputs


# --- the offline rule-based splitter ----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_BREAK = re.compile(r"\s*;\s*|,\s+(?:and|but|while|whereas|although)\s+", re.IGNORECASE)
_LIST_MARK = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_MIN_CLAUSE_WORDS = 3
# Words that start a sentence only because they are capitalised there; anything else (a name, "I",
# an acronym) keeps its capital inside "Is it true that ...?".
_LOWERCASE_STARTERS = frozenset(
    "a an the there it its this that these those they their he his she her we our you your one two three "
    "four five some several many most all both each every no none in on at behind near next under above "
    "beside between inside outside".split()
)


def divide_by_rules(item: QuestionAnswer) -> DivideResult:
    """Split the answer into sentences, then clauses, and ask "Is it true that <clause>?" for each.

    Deterministic and model-free, so demos and tests run offline. Questions in the answer and clauses
    shorter than three words ("Yes.") are skipped. Not the paper's method: the UI names the splitter.
    """
    claims = tuple(
        Claim(text=_as_sentence(clause), question=f"Is it true that {_lower_first_word(clause)}?")
        for clause in _clauses(item.answer)
    )
    if not claims:
        return DivideResult("rule", failure="split produced no facts")
    return DivideResult("rule", claims=claims)


def _clauses(text: str) -> list[str]:
    clauses = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line.strip())
        for sentence in _SENTENCE_END.split(line):
            if sentence.endswith("?"):
                continue
            for clause in _CLAUSE_BREAK.split(sentence):
                clause = clause.strip().rstrip(".!,:").strip()
                if len(clause.split()) >= _MIN_CLAUSE_WORDS:
                    clauses.append(clause)
    return clauses


def _as_sentence(clause: str) -> str:
    return clause[0].upper() + clause[1:] + "."


def _lower_first_word(clause: str) -> str:
    first = clause.split()[0]
    if first.lower() in _LOWERCASE_STARTERS:
        return clause[0].lower() + clause[1:]
    return clause
