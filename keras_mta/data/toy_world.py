"""A small English instruction dataset that keras-mta makes itself.

The embedded default run (`keras-mta distill` with no recipe) needs real
English text with noun and verb phrases, offline, and a task that a small
teacher can learn in minutes on a CPU, so that a student distilled from it
has something to keep. This module writes such a dataset from a small
"world" of creatures and their facts (where each lives, what it eats, how
it moves, ...): instructions ask about the world, responses state its facts
in full sentences, with a few paraphrases per answer so that the teacher's
next-token distributions carry more than the one-hot targets.

Everything here is written for this project; rows follow the Dolly schema
(`instruction`, `context`, `response`, `category`).
"""

import json
import os
import random

from keras_mta.utils.files import atomic_write

# What a recipe's `data.train` / `data.valid` names to use this dataset
# (written under the run's output directory by `keras-mta distill`).
TOY_WORLD = "builtin:toy-world"

# name -> (habitat, food, movement, color, size, time of activity)
CREATURES = {
    "red fox": (
        "the quiet forest",
        "small mice",
        "runs",
        "red",
        "small",
        "at night",
    ),
    "grey wolf": (
        "the cold mountains",
        "wild deer",
        "runs",
        "grey",
        "large",
        "at dusk",
    ),
    "brown bear": (
        "the deep woods",
        "sweet berries",
        "walks",
        "brown",
        "huge",
        "in the morning",
    ),
    "white owl": (
        "the old barn",
        "field voles",
        "flies",
        "white",
        "small",
        "at night",
    ),
    "green frog": (
        "the muddy pond",
        "tiny flies",
        "jumps",
        "green",
        "tiny",
        "after the rain",
    ),
    "black cat": (
        "the busy town",
        "fresh fish",
        "walks",
        "black",
        "small",
        "at night",
    ),
    "golden eagle": (
        "the high cliffs",
        "young rabbits",
        "flies",
        "golden",
        "large",
        "at noon",
    ),
    "blue whale": (
        "the open ocean",
        "pink krill",
        "swims",
        "blue",
        "enormous",
        "all day",
    ),
    "striped tiger": (
        "the hot jungle",
        "wild pigs",
        "runs",
        "orange",
        "large",
        "at dusk",
    ),
    "small rabbit": (
        "the green meadow",
        "fresh clover",
        "hops",
        "brown",
        "small",
        "at dawn",
    ),
    "wise turtle": (
        "the warm river",
        "soft plants",
        "swims",
        "green",
        "small",
        "in the afternoon",
    ),
    "busy beaver": (
        "the cold stream",
        "tree bark",
        "swims",
        "brown",
        "medium",
        "at night",
    ),
    "tall giraffe": (
        "the dry savanna",
        "acacia leaves",
        "walks",
        "yellow",
        "tall",
        "in the morning",
    ),
    "grey elephant": (
        "the wide plains",
        "green grass",
        "walks",
        "grey",
        "huge",
        "all day",
    ),
    "quick squirrel": (
        "the oak trees",
        "hard nuts",
        "climbs",
        "red",
        "small",
        "in the morning",
    ),
    "sleepy koala": (
        "the eucalyptus trees",
        "eucalyptus leaves",
        "climbs",
        "grey",
        "small",
        "at night",
    ),
    "proud lion": (
        "the golden grassland",
        "zebras",
        "runs",
        "golden",
        "large",
        "at dusk",
    ),
    "little penguin": (
        "the icy shore",
        "silver fish",
        "swims",
        "black",
        "small",
        "all day",
    ),
    "spotted deer": (
        "the shady valley",
        "young shoots",
        "runs",
        "brown",
        "medium",
        "at dawn",
    ),
    "busy bee": (
        "the flower garden",
        "sweet nectar",
        "flies",
        "yellow",
        "tiny",
        "in the afternoon",
    ),
    "slow snail": (
        "the wet garden",
        "lettuce leaves",
        "crawls",
        "brown",
        "tiny",
        "after the rain",
    ),
    "clever crow": (
        "the city park",
        "bread crumbs",
        "flies",
        "black",
        "small",
        "in the morning",
    ),
    "wild horse": (
        "the open prairie",
        "dry hay",
        "gallops",
        "brown",
        "large",
        "all day",
    ),
    "pink flamingo": (
        "the salty lake",
        "small shrimp",
        "wades",
        "pink",
        "tall",
        "in the morning",
    ),
}

_WHERE = [
    "Where does the {name} live?",
    "Tell me where the {name} lives.",
    "Describe the home of the {name}.",
]
_WHERE_ANSWERS = [
    "The {name} lives in {habitat}.",
    "The {name} makes its home in {habitat}.",
]
_EAT = [
    "What does the {name} eat?",
    "Tell me about the food of the {name}.",
]
_EAT_ANSWERS = [
    "The {name} eats {food}.",
    "The {name} likes to eat {food}.",
]
_MOVE = [
    "How does the {name} move?",
    "Explain how the {name} gets around.",
]
_MOVE_ANSWERS = [
    "The {name} {movement} through {habitat}.",
    "The {name} usually {movement} {time}.",
]
_DESCRIBE = [
    "Describe the {name}.",
    "Write a short description of the {name}.",
    "Give me two facts about the {name}.",
]
_DESCRIBE_ANSWERS = [
    "The {name} is a {size} {color} animal. It lives in {habitat} and eats "
    "{food}.",
    "The {name} is {size} and {color}. It {movement} {time} and looks for "
    "{food}.",
]
_COMPARE = [
    "Compare the {name} and the {other}.",
    "How is the {name} different from the {other}?",
]
_COMPARE_ANSWERS = [
    "The {name} lives in {habitat}, but the {other} lives in "
    "{other_habitat}. The {name} eats {food} and the {other} eats "
    "{other_food}.",
]
_STORY = [
    "Write one sentence about the {name} and the {other}.",
    "Tell a very short story with the {name} and the {other}.",
]
_STORY_ANSWERS = [
    "The {name} met the {other} {time}, and they shared {food} near {habitat}.",
    "One day the {name} {movement} to {other_habitat} and found the {other} "
    "eating {other_food}.",
]
_CONTEXT = [
    "Answer the question using the text.",
    "Read the text and answer the question.",
]
_CONTEXT_QUESTIONS = [
    ("What does the {name} eat?", "The {name} eats {food}."),
    ("Where does the {name} live?", "The {name} lives in {habitat}."),
    ("When is the {name} active?", "The {name} is active {time}."),
]

_TASKS = [
    ("where", _WHERE, _WHERE_ANSWERS),
    ("food", _EAT, _EAT_ANSWERS),
    ("movement", _MOVE, _MOVE_ANSWERS),
    ("describe", _DESCRIBE, _DESCRIBE_ANSWERS),
    ("compare", _COMPARE, _COMPARE_ANSWERS),
    ("story", _STORY, _STORY_ANSWERS),
]


def _facts(name, prefix=""):
    habitat, food, movement, color, size, time = CREATURES[name]
    return {
        f"{prefix}name": name,
        f"{prefix}habitat": habitat,
        f"{prefix}food": food,
        f"{prefix}movement": movement,
        f"{prefix}color": color,
        f"{prefix}size": size,
        f"{prefix}time": time,
    }


def _fill(template, facts):
    text = template.format(**facts)
    return text[0].upper() + text[1:]


def make_rows(num_rows, seed=0):
    """Rows of the toy instruction dataset (Dolly schema).

    Args:
        num_rows: int, how many rows.
        seed: int, the random seed; the same seed gives the same rows.

    Returns:
        A list of dicts with `instruction`, `context`, `response` and
        `category`.
    """
    rng = random.Random(seed)
    names = sorted(CREATURES)
    rows = []
    for _ in range(num_rows):
        name, other = rng.sample(names, 2)
        facts = _facts(name)
        facts.update(_facts(other, prefix="other_"))
        facts["other"] = other
        if rng.random() < 0.15:
            question, answer = rng.choice(_CONTEXT_QUESTIONS)
            context = _fill(rng.choice(_DESCRIBE_ANSWERS), facts)
            context += " " + _fill("It is active {time}.", facts)
            rows.append(
                {
                    "instruction": rng.choice(_CONTEXT)
                    + " "
                    + _fill(question, facts),
                    "context": context,
                    "response": _fill(answer, facts),
                    "category": "closed_qa",
                }
            )
            continue
        category, questions, answers = rng.choice(_TASKS)
        rows.append(
            {
                "instruction": _fill(rng.choice(questions), facts),
                "context": "",
                "response": _fill(rng.choice(answers), facts),
                "category": category,
            }
        )
    return rows


def write_toy_dataset(directory, num_train=2000, num_valid=100, seed=0):
    """Write `train.jsonl` and `valid.jsonl` of the toy dataset.

    Files are written atomically (a temporary file, then a rename).

    Returns:
        `(train_path, valid_path)`.
    """
    os.makedirs(directory, exist_ok=True)
    paths = []
    for split, count, split_seed in (
        ("train", num_train, seed),
        ("valid", num_valid, seed + 1),
    ):
        path = os.path.join(directory, f"{split}.jsonl")
        rows = make_rows(count, seed=split_seed)
        atomic_write(path, "".join(json.dumps(row) + "\n" for row in rows))
        paths.append(path)
    return tuple(paths)
