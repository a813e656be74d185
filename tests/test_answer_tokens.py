"""Which tokens are "yes" and "no": one id per word as the reference picks it, the other spellings an option."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from labeling.backends.logprobs import answer_tokens

# Answers start lines (after a chat template's header) and follow spaces, so a BPE vocabulary learns "Yes" and " Yes".
CORPUS = ["Yes, it is.\nNo, it is not.\nyes\nno", "He said Yes and she said No, then yes and no."] * 20


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen kind) trained on the corpus above."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


def pick(tokenizer, variants):
    return answer_tokens(
        lambda text: tokenizer.encode(text, add_special_tokens=False), lambda i: tokenizer.decode([i]), variants
    )


def test_it_takes_one_id_per_word_as_the_word_starts_a_line(tokenizer):
    tokens = pick(tokenizer, variants=False)

    assert tokenizer.convert_ids_to_tokens(list(tokens.yes)) == ["Yes", "yes"]
    assert tokenizer.convert_ids_to_tokens(list(tokens.no)) == ["No", "no"]
    # the reference's way on its own tokenizers: the last id of the word after the assistant's header
    for word, token in zip(["Yes", "yes", "No", "no"], tokens.ids, strict=True):
        assert tokenizer.encode("\n<|assistant|>\n" + word)[-1] == token


def test_an_option_adds_the_spelling_after_a_space(tokenizer):
    tokens = pick(tokenizer, variants=True)

    assert sorted(tokenizer.convert_ids_to_tokens(list(tokens.yes))) == ["Yes", "yes", "ĠYes", "Ġyes"]
    assert sorted(tokenizer.convert_ids_to_tokens(list(tokens.no))) == ["No", "no", "ĠNo", "Ġno"]


def test_a_word_that_is_no_single_token_is_refused():
    vocab = {"<unk>": 0, "\n": 1, "Y": 2, "es": 3, "yes": 4, "No": 5, "no": 6}
    word_pieces = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=10))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_pieces)

    with pytest.raises(ValueError, match="no single token for 'Yes' at the start of a line"):
        pick(tokenizer, variants=False)
