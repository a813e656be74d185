"""The whole-response question: the labeler judges a whole answer at once, the paper's baseline to divide and conquer.

RLAIF-V splits an answer into claims and asks the labeler about each; its ablation scores the whole answer with
one long prompt instead. Here that prompt is the divide-and-conquer question widened to the whole answer,
"Is it true that <answer>?", to which `labeling.conquer.labeler_prompt` adds "Please answer yes or no.". For an
answer of one sentence it is exactly the question the rule splitter asks, so the two strategies differ only in
judging the claims together. The wording uses only words the shapes world's tiny labeler knows (a word outside
its vocabulary becomes `<unk>`, an embedding it never trained): "Is this description of the image accurate?"
has four such words.
"""

PREFIX = "Is it true that"


def whole_response_question(answer: str) -> str:
    """ "Is it true that <answer>?", the answer's whitespace collapsed and its closing punctuation dropped.

    The first letter is lowered unless the first word is "I" or an acronym ("COCO").
    """
    text = " ".join(answer.split()).rstrip(".!?;: ")
    first = text.split(" ", 1)[0]
    if first != "I" and not (len(first) > 1 and first.isupper()):
        text = text[:1].lower() + text[1:]
    return f"{PREFIX} {text}?"
