"""Distinct variable paths for the teacher, the student and the losses."""


def prefix_variable_paths(model, prefix):
    """Put every variable of `model` under `prefix/` in `variable.path`.

    Keras fixes `variable.path` when a variable is created (from the name
    scopes active then), and keras-hub backbones built outside any scope
    all give the same paths (`token_embedding/embeddings`, ...) to teacher
    and student. The torch backend keys a model's parameters by path and
    optimizer slot variables are named from it, so after construction the
    paths are made distinct by rewriting the private `_path`. A
    `keras.distribution.LayoutMap` is matched against the path at creation
    time, so to place teacher and student differently, create them under
    `keras.name_scope("teacher")` / `keras.name_scope("student")` (see
    `DistillationModel`); their paths then already carry the prefix and are
    left as they are.

    Args:
        model: a Keras layer or model.
        prefix: str, e.g. `"teacher"`.
    """
    for variable in model.variables:
        path = variable.path
        if not path.startswith(prefix + "/"):
            variable._path = f"{prefix}/{path}"
