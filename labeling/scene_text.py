"""What is said about a world-2 scene (`labeling.scenes`): facts, two writing styles, their parser, errors,
corrections, instructions and yes/no probes.

A `Fact` is one checkable statement: a count ("there are two red circles"), an attribute of a kind seen once
("the red circle is big", "… is striped") or a relation ("the red circle is left of the blue square", "above",
"inside"). A description is one sentence per fact, so the rule splitter (`labeling.divide.divide_by_rules`)
makes each sentence one claim and the truth of every claim is known. Two styles state the same facts:
- "plain", the policy's and the labeler's: "There are two red circles. The blue square is big."
- "chatty", the second generator's: "I can see two red circles. The blue square looks big."
The paper's "adapted" arm (a correct description rewritten in another style) needs a style to confound.

Errors a policy learns (`with_errors`): habit companions named when absent (`scenes.COMPANIONS`), absent objects,
wrong counts, flipped attributes and swapped relations, each at its own rate, so that once the common errors are
trained away rarer ones remain for later rounds.
"""

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from labeling.conquer import labeler_prompt
from labeling.scenes import COMPANIONS, KINDS, PATTERNS, RELATIONS, SIZES, Scene
from labeling.whole_response import whole_response_question

NUMBERS = {1: "a", 2: "two", 3: "three", 4: "four"}
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
STYLES = ("plain", "chatty")
DESCRIBE = (
    "Describe the image in detail.",
    "What do you see in this picture?",
    "Give a detailed description of the scene.",
)


@dataclass(frozen=True)
class Fact:
    """kind: count | size | pattern | left_of | above | inside; subject: an object kind ("red circle");
    value: the count (int), the size or pattern word, or the other kind of a relation."""

    kind: str
    subject: str
    value: int | str


def is_true(fact: Fact, scene: Scene) -> bool:
    """Whether the scene bears the fact out. A count is exact; an attribute or relation of a kind seen several
    times holds when one of them has it; one of an absent kind never holds."""
    if fact.kind == "count":
        return scene.counts[fact.subject] == fact.value
    subjects = scene.of_kind(fact.subject)
    if fact.kind in ("size", "pattern"):
        return any(getattr(t, fact.kind) == fact.value for t in subjects)
    relation = RELATIONS[fact.kind]
    return any(relation(a, b) for a in subjects for b in scene.of_kind(fact.value))


def scene_facts(scene: Scene) -> list[Fact]:
    """The true detailed description's facts, kind by kind left to right: the count; for a kind seen once its
    size, its pattern and its relation to the next kind seen once (inside, else left of, else above)."""
    counts = scene.counts
    order = list(dict.fromkeys(t.kind for t in scene.things))
    singles = [k for k in order if counts[k] == 1]
    facts = []
    for kind in order:
        facts.append(Fact("count", kind, counts[kind]))
        thing = scene.single(kind)
        if thing is None:
            continue
        facts += [Fact("size", kind, thing.size), Fact("pattern", kind, thing.pattern)]
        following = singles[singles.index(kind) + 1 :]
        if following:
            facts += _relation(scene, kind, following[0])
    return facts


def _relation(scene: Scene, a: str, b: str) -> list[Fact]:
    one, other = scene.single(a), scene.single(b)
    for name, first, second in (
        ("inside", a, b),
        ("inside", b, a),
        ("left_of", a, b),
        ("left_of", b, a),
        ("above", a, b),
        ("above", b, a),
    ):
        if RELATIONS[name](*((one, other) if first == a else (other, one))):
            return [Fact(name, first, second)]
    return []


# --- sentences ------------------------------------------------------------------------------------------


def _plural(kind: str) -> str:
    return kind + "s"


def sentence(fact: Fact, style: str = "plain") -> str:
    """One fact as one sentence in a style."""
    s, v = fact.subject, fact.value
    if style == "plain":
        if fact.kind == "count":
            return {0: f"There are no {_plural(s)}.", 1: f"There is a {s}."}.get(
                v, f"There are {NUMBERS.get(v, v)} {_plural(s)}."
            )
        if fact.kind in ("size", "pattern"):
            return f"The {s} is {v}."
        return f"The {s} is {fact.kind.replace('_', ' ')} the {v}."
    if style == "chatty":
        if fact.kind == "count":
            return (
                f"I cannot see any {_plural(s)}."
                if v == 0
                else f"I can see {NUMBERS.get(v, v)} {s if v == 1 else _plural(s)}."
            )
        if fact.kind == "size":
            return f"The {s} looks {v}."
        if fact.kind == "pattern":
            return f"The {s} has stripes." if v == "striped" else f"The {s} has no stripes."
        if fact.kind == "inside":
            return f"The {v} holds the {s}."
        return f"The {s} sits {'to the left of' if fact.kind == 'left_of' else 'over'} the {v}."
    raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")


def describe(facts: Iterable[Fact], style: str = "plain") -> str:
    return " ".join(sentence(f, style) for f in facts)


_KIND = r"(red|green|blue|yellow|purple) (circle|square|triangle|diamond)"
_PATTERNS = (
    (re.compile(rf"^there is an? {_KIND}$"), lambda m: Fact("count", _k(m, 1), 1)),
    (re.compile(rf"^there are (no|two|three|four) {_KIND}s$"), lambda m: Fact("count", _k(m, 2), _n(m[1]))),
    (re.compile(rf"^i can see (a|an|one) {_KIND}$"), lambda m: Fact("count", _k(m, 2), 1)),
    (re.compile(rf"^i can see (two|three|four) {_KIND}s$"), lambda m: Fact("count", _k(m, 2), _n(m[1]))),
    (re.compile(rf"^i cannot see any {_KIND}s$"), lambda m: Fact("count", _k(m, 1), 0)),
    (re.compile(rf"^the {_KIND} (?:is|looks) (small|big)$"), lambda m: Fact("size", _k(m, 1), m[3])),
    (re.compile(rf"^the {_KIND} is (plain|striped)$"), lambda m: Fact("pattern", _k(m, 1), m[3])),
    (re.compile(rf"^the {_KIND} has (no )?stripes$"),
     lambda m: Fact("pattern", _k(m, 1), "plain" if m[3] else "striped")),
    (re.compile(rf"^the {_KIND} is (left of|above|inside) the {_KIND}$"),
     lambda m: Fact(m[3].replace(" ", "_"), _k(m, 1), _k(m, 4))),
    (re.compile(rf"^the {_KIND} sits to the left of the {_KIND}$"), lambda m: Fact("left_of", _k(m, 1), _k(m, 3))),
    (re.compile(rf"^the {_KIND} sits over the {_KIND}$"), lambda m: Fact("above", _k(m, 1), _k(m, 3))),
    (re.compile(rf"^the {_KIND} holds the {_KIND}$"), lambda m: Fact("inside", _k(m, 3), _k(m, 1))),
)  # fmt: skip


def _k(match: re.Match, group: int) -> str:
    return f"{match[group]} {match[group + 1]}"


def _n(word: str) -> int:
    return 0 if word == "no" else NUMBER_WORDS[word]


def sentences(text: str) -> list[str]:
    """A text's sentences, as the rule splitter cuts them (at . ! ?), without their end marks."""
    return [s.strip() for s in re.split(r"[.!?]+", text) if s.strip()]


def parse(text: str) -> Fact | None:
    """The fact one sentence (or a claim the splitter made of it) states, in either style; None for anything else
    (a broken sentence a small policy wrote, or one about nothing in this world)."""
    words = " ".join(re.findall(r"[a-z]+", text.lower()))
    words = re.sub(r"^is it true that ", "", words)
    for pattern, make in _PATTERNS:
        match = pattern.match(words)
        if match:
            return make(match)
    return None


def parse_all(text: str) -> list[Fact | None]:
    return [parse(s) for s in sentences(text)]


# --- errors and corrections -----------------------------------------------------------------------------

# How often each error enters a policy's training description (`with_errors`): habits and absent objects
# are common, wrong counts, attributes and relations rarer, so later rounds still find errors to remove.
ERROR_RATES = {"habit": 0.6, "object": 0.3, "count": 0.15, "attribute": 0.08, "relation": 0.1}


def confusable_absent(scene: Scene, rng: random.Random) -> str:
    """A kind the picture lacks, sharing a colour or a shape with one it holds (any absent kind if none)."""
    present = set(scene.counts)
    absent = [k for k in KINDS if k not in present]
    near = [k for k in absent if any(k.split()[0] == p.split()[0] or k.split()[1] == p.split()[1] for p in present)]
    return rng.choice(near or absent)


def absent_companions(scene: Scene) -> list[str]:
    """Companions of anchors the picture holds, themselves absent: what a habit makes a policy name."""
    counts = scene.counts
    return [COMPANIONS[k] for k in counts if k in COMPANIONS and not counts[COMPANIONS[k]]]


def _invented(kind: str, rng: random.Random) -> list[Fact]:
    return [
        Fact("count", kind, 1),
        Fact("size", kind, rng.choice(list(SIZES))),
        Fact("pattern", kind, rng.choice(PATTERNS)),
    ]


def wrong(fact: Fact, rng: random.Random) -> Fact:
    """The fact made wrong the way a policy gets it wrong: a count one off (one becomes two), the other size or
    pattern, a relation's two objects swapped."""
    if fact.kind == "count":
        return replace(fact, value=2 if fact.value == 1 else fact.value + rng.choice((-1, 1)))
    if fact.kind in ("size", "pattern"):
        values = list(SIZES) if fact.kind == "size" else list(PATTERNS)
        return replace(fact, value=values[1 - values.index(fact.value)])
    return Fact(fact.kind, fact.value, fact.subject)


def with_errors(facts: Sequence[Fact], scene: Scene, rng: random.Random, rates: dict | None = None) -> list[Fact]:
    """The facts with errors a habit-driven policy makes, each at its rate (ERROR_RATES by default)."""
    rates = ERROR_RATES | (rates or {})
    out = []
    for fact in facts:
        rate = rates["count"] if fact.kind == "count" else rates["relation" if fact.kind in RELATIONS else "attribute"]
        if (fact.kind != "count" or fact.value >= 1) and rng.random() < rate:
            fact = wrong(fact, rng)
        out.append(fact)
    for companion in absent_companions(scene):
        if rng.random() < rates["habit"]:
            anchor = next(k for k, c in COMPANIONS.items() if c == companion)
            at = max(i for i, f in enumerate(out) if f.subject == anchor and f.kind != "inside") + 1
            out[at:at] = _invented(companion, rng)
    if rng.random() < rates["object"]:
        at = rng.choice([i for i, f in enumerate(out) if f.kind == "count"] + [len(out)])
        out[at:at] = _invented(confusable_absent(scene, rng), rng)
    return out


def corrected(text: str, scene: Scene) -> str:
    """A fine-grained correction (RLHF-V style): each wrong sentence fixed from the truth in its own style (a
    wrong count set right, a flipped attribute set back, swapped objects put in their true relation), sentences
    about an absent kind or that say nothing readable dropped."""
    out = []
    for said in sentences(text):
        fact = parse(said)
        if fact is not None and not is_true(fact, scene):
            fact = _fixed(fact, scene)
        if fact is not None:
            out.append(sentence(fact, _style_of(said)))
    return " ".join(out)


def _style_of(said: str) -> str:
    return "chatty" if re.search(r"\b(i can|i cannot|looks|has|sits|holds)\b", said.lower()) else "plain"


def _fixed(fact: Fact, scene: Scene) -> Fact | None:
    """The fact set right, or None where it is about an absent kind (its sentence goes)."""
    if not scene.counts[fact.subject]:
        return None
    if fact.kind == "count":
        return replace(fact, value=scene.counts[fact.subject])
    one = scene.single(fact.subject)
    if fact.kind in ("size", "pattern"):
        return replace(fact, value=getattr(one, fact.kind)) if one else None
    other = scene.single(fact.value)
    if one is None or other is None:
        return None
    found = _relation(scene, fact.subject, fact.value)
    return found[0] if found else None


# --- instructions and probes ----------------------------------------------------------------------------


def instruction(scene: Scene, rng: random.Random) -> tuple[str, str, list[Fact]]:
    """(question kind, question, the true answer's facts): mostly "describe"; sometimes "count" (of a kind
    present or not) or "where" (a kind seen once: its relation to its nearest kind seen once)."""
    roll = rng.random()
    if roll < 0.15:
        kind = rng.choice(sorted(scene.counts) + [confusable_absent(scene, rng)])
        return "count", f"How many {_plural(kind)} are there?", [Fact("count", kind, scene.counts[kind])]
    singles = [k for k, n in scene.counts.items() if n == 1]
    if roll < 0.3 and len(singles) >= 2:
        kind = rng.choice(singles)
        near = min((k for k in singles if k != kind), key=lambda k: _distance(scene, kind, k))
        relation = _relation(scene, kind, near)
        if relation:
            return "where", f"Where is the {kind}?", relation
    return "describe", rng.choice(DESCRIBE), scene_facts(scene)


def _distance(scene: Scene, a: str, b: str) -> float:
    (ax, ay), (bx, by) = scene.single(a).centre, scene.single(b).centre
    return (ax - bx) ** 2 + (ay - by) ** 2


@dataclass(frozen=True)
class Probe:
    """A discriminative yes/no question (AMBER's existence, attribute and relation kinds) and its answer."""

    kind: str
    question: str
    truth: bool
    habit: bool = False  # an existence probe for an absent companion of a present anchor


def probes(scene: Scene, rng: random.Random) -> list[Probe]:
    """One true and one false probe of each kind the scene allows: existence (false: an absent companion if
    there is one, else a confusable absent kind), attribute (a kind seen once, its value or the other) and
    relation (a true one, or its two objects swapped)."""
    present = rng.choice(sorted(scene.counts))
    companions = absent_companions(scene)
    absent = rng.choice(companions) if companions else confusable_absent(scene, rng)
    out = [
        Probe("existence", f"Is there a {present} in the image?", True),
        Probe("existence", f"Is there a {absent} in the image?", False, habit=bool(companions)),
    ]
    facts = scene_facts(scene)
    attributes = [f for f in facts if f.kind in ("size", "pattern")]
    if attributes:
        fact = rng.choice(attributes)
        out += [
            Probe("attribute", f"Is the {fact.subject} {fact.value}?", True),
            Probe("attribute", f"Is the {fact.subject} {wrong(fact, rng).value}?", False),
        ]
    relations = [f for f in facts if f.kind in RELATIONS]
    if relations:
        fact = rng.choice(relations)
        words = fact.kind.replace("_", " ")
        out += [
            Probe("relation", f"Is the {fact.subject} {words} the {fact.value}?", True),
            Probe("relation", f"Is the {fact.value} {words} the {fact.subject}?", False),
        ]
    return out


def vocabulary() -> list[str]:
    """Every word the world's prompts and answers use, in both styles, for the tiny models' WordLevel tokenizer;
    Yes/No first after the chat words so their ids are small and fixed. The order never changes."""
    kinds = [Fact("count", k, n) for k in KINDS for n in (0, 1, 2, 3, 4)]
    kinds += [Fact(a, k, v) for k in KINDS[:1] for a, vs in (("size", SIZES), ("pattern", PATTERNS)) for v in vs]
    kinds += [Fact(r, KINDS[0], KINDS[1]) for r in RELATIONS]
    said = [describe(kinds, style) for style in STYLES]
    texts = [
        "USER: ASSISTANT: Yes No yes no",
        *DESCRIBE,
        *said,
        " ".join(KINDS),
        *(f"How many {_plural(k)} are there? Where is the {k}? Is there a {k} in the image?" for k in KINDS),
        "Is the red circle left of the red square? above inside big small plain striped",
        *(labeler_prompt(whole_response_question(text)) for text in said),
    ]
    words = []
    for text in texts:
        words += re.findall(r"\w+|[^\w\s]", text)
    return list(dict.fromkeys(words))
