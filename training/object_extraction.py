"""Object HalBench's other way of finding an answer's objects: a chat model lists them first (an option).

The reference (RLAIF-V's `eval/eval_gpt_obj_halbench.py`, `--use_gpt`) sends each (question, answer) to
gpt-3.5-turbo with the prompt below, reads the JSON list it returns, and maps the listed objects to COCO
classes through the same synonym list as the rule-based path; an object counts once per answer, and an
answer of three words or fewer lists none. Here the model is any OpenAI-compatible one, through the
openai engine's `complete` (labeling/backends/openai_backend.py), at temperature 0 so a rerun reads the
same objects. The reference refines each listed object with spaCy's lemmas and part-of-speech tags (its
noun runs); spaCy's English model is a download, so here each object's words are lemmatised with the CHAIR
table and read with the two-word rules, and the words the synonym list knows are its mentions: the same
for the one- and two-word object names the prompt asks for.
"""

import json
import re
from collections.abc import Sequence

from labeling.backends.base import Backend, Sampling
from training.chair import caption_words
from training.coco_synonyms import CLASS_OF

# The reference's prompt, verbatim: the extraction is measured as it was.
PROMPT = """You are an expert in image objects extraction according to a question answer pair. We asked an examiner to answer a question about a picture.

[Start of Question]

<image> {question}

[End of Question]

[Start of Examiner's Answer]

{answer}

[End of Examiner's Answer]


Assume that the answer is correct, please identify all visible objects that are directly shown in the image. Please following the instructions in below:

1. You should only mention objects that are explicitly mentioned in the examiner's answer.
2. You should only extract the object names without the attributes of the objects.
3. You should not include the properties of the object, like the color, material, etc. as part of the object name in your result.
4. Make your answer precise. Present the results in a JSON list format: ["object_1", ..., "object_n"].
5. You should return an empty JSON list () if no visible objects can be found.
"""  # noqa: E501
SAMPLING = Sampling(temperature=0.0, max_new_tokens=512)
SHORT_ANSWER_WORDS = 3  # answers this short list no objects, unasked


def parse_object_list(reply: str) -> list[str]:
    """The JSON list of a reply: inside a ```json block, or the reply's last line; ValueError otherwise."""
    block = re.search(r"```json\n(.*?)\n```", reply, re.DOTALL)
    text = block.group(1) if block else reply.strip().split("\n")[-1]
    try:
        objects = json.loads(text)
    except json.JSONDecodeError:
        objects = None
    if not isinstance(objects, list) or not all(isinstance(item, str) for item in objects):
        raise ValueError(f"object extraction: the reply is not a JSON list of names: {reply[:200]!r}")
    return objects


def listed_mentions(objects: Sequence[str]) -> list[tuple[str, str]]:
    """(word, COCO class) for the listed objects the synonym list knows, each word once, in order."""
    words: list[str] = []
    for name in objects:
        words += [word for word in caption_words(name) if word in CLASS_OF and word not in words]
    if "toilet" in words and "seat" in words:
        words.remove("seat")
    return [(word, CLASS_OF[word]) for word in words]


def extract_mentions(model: Backend, questions: Sequence[str], answers: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Each answer's object mentions as `model` lists them (the reference's GPT path); one list per answer."""
    asked = [i for i, answer in enumerate(answers) if len(answer.split()) > SHORT_ANSWER_WORDS]
    prompts = [PROMPT.replace("{question}", questions[i]).replace("{answer}", answers[i]) for i in asked]
    replies = dict(zip(asked, model.complete(prompts, SAMPLING), strict=True)) if prompts else {}
    return [listed_mentions(parse_object_list(replies[i])) if i in replies else [] for i in range(len(answers))]
