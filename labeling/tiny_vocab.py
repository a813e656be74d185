"""The word list of the tiny offline models' WordLevel tokenizer.

A word missing here becomes `<unk>`, so the list holds every word our prompts and tests use: the chat
template, the labeler's answers and suffix, the two RLAIF-V divide prompts (verbatim, from docs/DESIGN.md), the
rule-based splitter's "Is it true that", the 80 COCO classes and common words of image descriptions.
The order is fixed, so token ids never change between builds.
"""

from tokenizers import pre_tokenizers

from labeling.divide import CHANGEQ_PROMPT, SPLIT_PROMPT

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]

CHAT_WORDS = "USER: ASSISTANT: SYSTEM: Yes yes No no Please answer yes or no. Is it true that ...?"


COCO_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip

# Words of everyday image descriptions and answers, lower case.
DESCRIPTION_WORDS = """
a an the this that these those there here it its they them their he she his her him we you i one some any
all each every both many few several more most much no not none nothing something other another same
is are was were be been being has have had do does did can could will would should may might must
shows show showing shown appears appear seems seem looks look looking sits sit sitting stands stand standing
holds hold holding wears wear wearing rides ride riding walks walk walking runs run running plays play
playing eats eat eating drinks drink drinking lies lie lying lays laying flies fly flying swims swim
swimming smiles smile smiling reads read reading uses use using carries carry carrying contains contain
covered filled placed located parked painted made surrounded displayed visible seen taken
and or but with without of in on at to from by for into onto over under above below behind beside
next near between among around through across along against inside outside front back top bottom left
right middle center centre side corner edge background foreground up down away off out together
white black red green blue yellow orange purple pink brown gray grey silver gold golden beige dark light
bright pale colorful colourful striped spotted wooden metal metallic plastic glass stone brick
zero two three four five six seven eight nine ten eleven twelve first second third single double pair
group couple lot lots number
large big small little tiny huge tall short long wide narrow thick thin round square flat high low
old young new open closed full empty clean dirty wet dry hot cold warm sunny cloudy snowy rainy clear
busy quiet calm happy sad beautiful pretty cute old-fashioned modern vintage fresh ripe sliced cut
man men woman women person people child children kid kids boy boys girl girls baby lady guy player
players crowd family friends astronaut scientist chef rider
face head hair eye eyes nose mouth hand hands arm arms leg legs foot feet body shirt jacket coat hat
cap helmet glasses dress suit uniform shoes pants jeans shorts skirt gloves flag badge patch
sky cloud clouds sun moon star stars space earth planet galaxy light lights shadow shadows
tree trees grass field park garden flower flowers plant plants leaf leaves bush forest mountain mountains
hill hills rock rocks sand beach ocean sea lake river water wave waves snow ice road street sidewalk
path track bridge city town building buildings house home wall walls window windows door doors roof
floor ceiling room kitchen bathroom bedroom office shop store restaurant table desk shelf counter
plate plates food meal drink coffee tea milk bread cheese meat vegetables fruit fruits salad soup
sauce beans saucer mug glass logo text sign letters word words picture image photo photograph
painting drawing scene view area place part piece object objects item items animal animals pet kitten
puppy tail fur whiskers paw paws ear ears collar rocket launch tower smoke fire engine wheel wheels
box bag basket bucket rope pole fence lamp screen phone camera computer machine tool tools toy toys
ball game sport team match board paper pen pencil card cards coin coins money camera
clock time day night morning evening color colour colors colours shape shapes pattern design
surface texture line lines circle circles stripe stripes dot dots spot spots
very quite also too just only still even well so as than then while when where what which who whom
whose why how if because about after before during until since
what's there's it's don't doesn't isn't aren't can't
"""

# Capitalised forms of the words that start sentences and questions.
SENTENCE_STARTERS = """
a an the this that these those there it they he she we i one some two three in on at on behind next
is are was were do does did can could has have will would what which who where why how yes no
""".split()

PUNCTUATION = list(".,:;!?'\"-()[]{}#/&%*+=<>")
NUMBERS = [str(i) for i in range(21)] + ["30", "40", "50", "100"]


def _words(text: str) -> list[str]:
    """Split like the tokenizer does (whitespace, then punctuation), so the list matches its tokens."""
    splitter = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return [piece for piece, _ in splitter.pre_tokenize_str(text)]


def tiny_vocabulary() -> list[str]:
    """Specials first (ids 0-4), then every word once, in a fixed order."""
    sources = [
        CHAT_WORDS,
        SPLIT_PROMPT + "\nAnswer: ",
        CHANGEQ_PROMPT + "\n- {fact}\n",
        " ".join(COCO_CLASSES),
        DESCRIPTION_WORDS,
        " ".join(word.capitalize() for word in SENTENCE_STARTERS),
        " ".join(PUNCTUATION + NUMBERS),
    ]
    words = list(SPECIAL_TOKENS)
    for source in sources:
        words += _words(source)
    return list(dict.fromkeys(words))
