import keras
import numpy as np
import pytest

from keras_mta.data.tokenizers import train_sentencepiece_tokenizer
from keras_mta.data.toy_world import make_rows


def test_trains_a_llama_tokenizer_that_round_trips(tmp_path):
    rows = make_rows(300, seed=0)
    texts = [r["instruction"] + "\n" + r["response"] for r in rows]
    path = tmp_path / "tok" / "vocab.spm"
    tokenizer = train_sentencepiece_tokenizer(texts, 200, proto_path=path)
    assert tokenizer.vocabulary_size() == 200
    assert (tokenizer.start_token_id, tokenizer.end_token_id) == (2, 3)
    ids = keras.ops.convert_to_numpy(tokenizer(texts[0]))
    assert 1 not in ids.tolist()  # no <unk> on its own text
    text = tokenizer.detokenize(ids)
    if hasattr(text, "numpy"):
        text = text.numpy()
    if isinstance(text, np.ndarray):
        text = text.item()
    if isinstance(text, bytes):
        text = text.decode()
    assert text == texts[0].replace("\n", " ") or text == texts[0]
    assert path.exists()


def test_too_large_a_vocabulary_is_named():
    with pytest.raises(ValueError, match="Lower `vocabulary_size`"):
        train_sentencepiece_tokenizer(["a few words only"] * 3, 5000)


@pytest.mark.once
def test_bpe_holds_whole_words_where_unigram_stops_short():
    # The toy data's unigram trainer refuses more than about 300 pieces
    # and spells its rarer words; BPE merges them into one piece each.
    rows = make_rows(1200, seed=0)
    texts = [r["instruction"] + "\n" + r["response"] for r in rows]
    with pytest.raises(ValueError, match="Lower `vocabulary_size`"):
        train_sentencepiece_tokenizer(texts, 640)
    tokenizer = train_sentencepiece_tokenizer(texts, 640, model_type="bpe")
    assert tokenizer.vocabulary_size() == 640
    ids = keras.ops.convert_to_numpy(tokenizer("The busy beaver"))
    assert len(ids.tolist()) == 3


@pytest.mark.once
def test_an_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="model_type='wordpiece'"):
        train_sentencepiece_tokenizer(["some text"], 8, model_type="wordpiece")
