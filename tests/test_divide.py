"""Divide: the rlaifv prompts and parser, the batched rlaifv flow, and the offline rule splitter."""

import pytest

from labeling.backends.base import Sampling
from labeling.divide import (
    Claim,
    DivideResult,
    QuestionAnswer,
    changeq_prompt,
    divide,
    divide_by_rules,
    parse_list,
    split_prompt,
)

# The released split/changeq models were trained on exactly these prompts (RLAIF-V reference, docs/DESIGN.md §1).
SPLIT_PREFIX = (
    "You are an expert in extracting facts from the given question-answer pair for an image. Your task is to "
    "extract and rewrite the facts mentioned in the question-answer pair into self-contained sentences. "
    "Exclude opinions or subjective statements.\n\nYou should present your result in the following format:\n"
    "### Facts:\n- {Extracted fact 1}\n- {Extracted fact 2}\n- ...\n\n### Question-answer pair:\nQuestion: "
)
CHANGEQ_PREFIX = (
    "You are an expert at modifying a given declarative sentence into a general question sentence. Your task "
    "is to modify the given declarative sentences one by one into a general question form. Do not change "
    "tenses or add extra content.\n    If the given declarative sentence contains not, no or negative meaning "
    "words, you need to check the modified general interrogative sentence to make sure that the generated "
    "general question sentence retains words with not , no or negative meaning words.\n\nYou should present "
    "your result in the following format:\n### Modified sentences:\n- {Modified sentence 1}\n- {Modified "
    "sentence 2}\n- ...\n\n### Declarative sentences:"
)


class CannedBackend:
    """Answers complete() from a prompt -> text table and records every call."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def complete(self, prompts, sampling):
        self.calls.append((list(prompts), sampling))
        return [self.answers[p] for p in prompts]


# --- prompts ----------------------------------------------------------------------------------------------


def test_it_builds_the_split_prompt_verbatim():
    prompt = split_prompt("What is on the table?", "A red cup is on the table.")
    assert prompt == SPLIT_PREFIX + "What is on the table?\nAnswer: A red cup is on the table."


def test_it_builds_the_changeq_prompt_verbatim():
    prompt = changeq_prompt(["The cup is red.", "There is no spoon."])
    assert prompt == CHANGEQ_PREFIX + "\n- The cup is red.\n\n- There is no spoon.\n"


def test_it_cuts_the_split_prompt_to_300_space_separated_words():
    answer = " ".join(f"w{i}" for i in range(1000))
    prompt = split_prompt("Describe the image.", answer)
    assert len(prompt.split(" ")) == 300
    assert prompt.startswith(SPLIT_PREFIX + "Describe the image.\nAnswer: w0 w1")
    # As in the reference, only spaces separate words: "pair:\nQuestion:" counts as one.
    n_prefix_words = len((SPLIT_PREFIX + "Describe the image.\nAnswer:").split(" "))
    assert prompt.endswith(f" w{300 - n_prefix_words - 1}")


def test_it_does_not_cut_a_short_split_prompt_or_any_changeq_prompt():
    assert split_prompt("Q?", "Short answer.").endswith("\nAnswer: Short answer.")
    facts = [f"Fact number {i} is here." for i in range(100)]
    assert changeq_prompt(facts).endswith("\n- Fact number 99 is here.\n")


# --- parser -----------------------------------------------------------------------------------------------


def test_it_parses_a_clean_list():
    assert parse_list("### Facts:\n- The cup is red.\n- The table is wooden.") == [
        "The cup is red.",
        "The table is wooden.",
    ]


def test_it_ignores_chatter_around_a_bulleted_list():
    output = (
        "Sure! Here are the facts you asked for:\n\n"
        "### Facts:\n"
        "  - The cup is red.  \n"
        "\n"
        "-The table is wooden.\n"
        "* A lamp stands on the left.\n"
        "• The wall is white.\n"
        "2. The chair is empty.\n"
        "### Question-answer pair:\n"
        "I hope this helps."
    )
    assert parse_list(output) == [
        "The cup is red.",
        "The table is wooden.",
        "A lamp stands on the left.",
        "The wall is white.",
        "The chair is empty.",
    ]


def test_it_reads_unbulleted_output_one_item_per_line():
    assert parse_list("### Modified sentences:\nIs the cup red?\n\n  Is the table wooden?  \n") == [
        "Is the cup red?",
        "Is the table wooden?",
    ]


def test_it_drops_placeholders_rules_and_bold_headings():
    output = "**Facts:**\n---\n- {Extracted fact 1}\n- The cup is red.\n- ...\n-\n- …"
    assert parse_list(output) == ["The cup is red."]


def test_it_keeps_numbers_that_are_not_bullets():
    assert parse_list("- 2.5 metres of rope lie on the floor.") == ["2.5 metres of rope lie on the floor."]
    assert parse_list("3 cats sit on the sofa.") == ["3 cats sit on the sofa."]


@pytest.mark.parametrize("output", ["", "   \n\n", "### Facts:\n", "### Facts:\n- \n-\n###"])
def test_it_parses_empty_output_as_no_items(output):
    assert parse_list(output) == []


# --- the rlaifv preset end to end -------------------------------------------------------------------------


def test_it_divides_many_responses_in_two_batched_calls():
    good = QuestionAnswer("What is on the table?", "A red cup and no spoon.")
    unparsable = QuestionAnswer("What is this?", "Hmm.")
    mismatched = QuestionAnswer("Describe it.", "A cat sleeps on a mat.")
    empty = QuestionAnswer("Describe it.", "   ")
    backend = CannedBackend(
        {
            split_prompt(good.question, good.answer): "### Facts:\n- The cup is red.\n- There is no spoon.",
            split_prompt(unparsable.question, unparsable.answer): "### Facts:\n",
            split_prompt(mismatched.question, mismatched.answer): "- A cat is sleeping.\n- The cat is on a mat.",
            changeq_prompt(["The cup is red.", "There is no spoon."]): (
                "### Modified sentences:\n- Is the cup red?\n- Is there no spoon?"
            ),
            changeq_prompt(["A cat is sleeping.", "The cat is on a mat."]): "- Is a cat sleeping?",
        }
    )

    results = divide([good, unparsable, mismatched, empty], method="rlaifv", backend=backend)

    assert [len(prompts) for prompts, _ in backend.calls] == [3, 2]
    assert all(s == Sampling(temperature=0.2, top_p=0.9, max_new_tokens=256) for _, s in backend.calls)
    assert results[0] == DivideResult(
        "rlaifv",
        claims=(Claim("The cup is red.", "Is the cup red?"), Claim("There is no spoon.", "Is there no spoon?")),
        raw=(
            "### Facts:\n- The cup is red.\n- There is no spoon.",
            "### Modified sentences:\n- Is the cup red?\n- Is there no spoon?",
        ),
    )
    assert results[1].failure == "split produced no facts"
    assert results[1].raw == ("### Facts:\n",)
    assert results[2].failure == "2 facts but 1 questions"
    assert results[3].failure == "empty answer"
    assert [r.ok for r in results] == [True, False, False, False]


def test_it_makes_no_changeq_call_when_nothing_split():
    item = QuestionAnswer("Q?", "Something.")
    backend = CannedBackend({split_prompt(item.question, item.answer): "### Facts:"})
    assert divide([item], "rlaifv", backend)[0].failure == "split produced no facts"
    assert len(backend.calls) == 1


def test_it_reads_unbulleted_prose_as_facts_and_catches_it_at_the_question_count():
    # docs/DESIGN.md's rule keeps any non-empty line, so prose from the split model becomes a "fact"; the change-q
    # model then rarely returns a matching list, and the mismatch is what surfaces the problem.
    item = QuestionAnswer("Q?", "Something.")
    backend = CannedBackend(
        {
            split_prompt(item.question, item.answer): "I cannot do that.",
            changeq_prompt(["I cannot do that."]): "",
        }
    )
    assert divide([item], "rlaifv", backend)[0].failure == "1 facts but 0 questions"


def test_it_refuses_a_backend_that_loses_completions():
    class LossyBackend:
        def complete(self, prompts, sampling):
            return []

    with pytest.raises(RuntimeError, match="0 completions for 1 prompts"):
        divide([QuestionAnswer("Q?", "An answer here.")], "rlaifv", LossyBackend())


def test_it_needs_a_backend_for_rlaifv_and_a_known_method():
    with pytest.raises(ValueError, match="needs a backend"):
        divide([QuestionAnswer("Q?", "A.")], "rlaifv")
    with pytest.raises(ValueError, match="unknown divide method"):
        divide([QuestionAnswer("Q?", "A.")], "gpt")


def test_it_divides_nothing_without_calling_the_backend():
    backend = CannedBackend({})
    assert divide([], "rlaifv", backend) == []
    assert backend.calls == []


def test_it_holds_claims_or_a_failure_never_both():
    with pytest.raises(ValueError):
        DivideResult("rule")
    with pytest.raises(ValueError):
        DivideResult("rule", claims=(Claim("A b c.", "Is it true that a b c?"),), failure="oops")


# --- the rule splitter ------------------------------------------------------------------------------------


def test_it_splits_sentences_and_clauses_into_polar_questions():
    answer = (
        "The image shows a red cup on a wooden table, and a lamp stands behind it. "
        "John is holding a phone; there is no spoon.\n"
        "- Two cats sleep on the sofa.\n"
        "Is it sunny? Yes. I think the room looks cozy!"
    )
    result = divide([QuestionAnswer("Describe the image.", answer)], method="rule")[0]
    assert result.method == "rule"
    assert result.claims == (
        Claim(
            "The image shows a red cup on a wooden table.",
            "Is it true that the image shows a red cup on a wooden table?",
        ),
        Claim("A lamp stands behind it.", "Is it true that a lamp stands behind it?"),
        Claim("John is holding a phone.", "Is it true that John is holding a phone?"),
        Claim("There is no spoon.", "Is it true that there is no spoon?"),
        Claim("Two cats sleep on the sofa.", "Is it true that two cats sleep on the sofa?"),
        Claim("I think the room looks cozy.", "Is it true that I think the room looks cozy?"),
    )


def test_it_splits_the_same_answer_the_same_way_every_time():
    item = QuestionAnswer("Describe.", "A dog runs in the park, while a child watches. The sky is blue.")
    assert divide_by_rules(item) == divide_by_rules(item)
    assert [c.question for c in divide_by_rules(item).claims] == [
        "Is it true that a dog runs in the park?",
        "Is it true that a child watches?",
        "Is it true that the sky is blue?",
    ]


@pytest.mark.parametrize("answer", ["", "Yes.", "Is it a cat? No."])
def test_it_fails_visibly_when_rules_find_no_claim(answer):
    result = divide_by_rules(QuestionAnswer("Is there a cat?", answer))
    assert not result.ok
    assert result.failure == "split produced no facts"
