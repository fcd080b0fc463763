"""Why does MTA help or not in the fidelity experiment? Loss and gradient scale.

At the student's initialisation of `benchmarks/fidelity.py` (same recipe,
data and teacher cache), on a few training batches, reports:

- units per example (word and phrase units kept by the preprocessing);
- the value of each term of the loss: CE, KD (top-k form), DSA, HRA and the
  weighted MTA term `mta_weight * L_MTA` as it enters the loss;
- the norm of each term's gradient with respect to the student's weights,
  and the cosine between the KD and MTA gradients: how much of the update
  MTA contributes, and whether it pulls with KD or against it.

    KERAS_BACKEND=torch python benchmarks/fidelity_diagnostics.py

Uses the torch backend (gradients of single terms with `backward`); run it
after `benchmarks/fidelity.py`, whose teacher cache it reads. Prints a
table and writes `OUTPUT/diagnostics.json`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fidelity  # noqa: E402


def _grad_vector(term, variables):
    import torch

    for v in variables:
        v.value.grad = None
    term.backward(retain_graph=True)
    parts = [
        v.value.grad.detach().reshape(-1)
        if v.value.grad is not None
        else torch.zeros(v.value.numel())
        for v in variables
    ]
    return torch.cat(parts)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    batches = 4
    if "--batches" in argv:
        i = argv.index("--batches")
        batches = int(argv[i + 1])
        del argv[i : i + 2]
    args = fidelity.parse_args(argv)
    import keras
    import numpy as np
    import torch

    from keras_mta import CachedTeacher
    from keras_mta import DistillationModel
    from keras_mta import runner

    if keras.backend.backend() != "torch":
        raise SystemExit("Run with KERAS_BACKEND=torch.")
    output = Path(args.output)
    setup = fidelity.prepare(args, output)
    recipe, student, plan = setup.recipe, setup.student, setup.plan
    x, y, weights = setup.train_arrays
    cache = fidelity.training_cache(args, output, setup)
    del setup.teacher
    units = {
        key: float(np.mean(np.sum(x[key][..., 1] > x[key][..., 0], axis=-1)))
        for key in ("word_units", "phrase_units")
    }
    dist = recipe.distillation
    model = DistillationModel(
        CachedTeacher.from_cache(cache),
        student,
        plan=plan,
        divergence=runner.divergence_of(recipe),
        kd_ratio=dist.kd_ratio,
        mta_weight=dist.mta_weight,
    )
    variables = list(model.trainable_variables)
    student_ids = {id(v) for v in student.trainable_variables}
    dataset = cache.dataset(
        (x, y, weights), batch_size=args.batch_size, shuffle=False
    )
    rows = []
    for index, (bx, by, bw) in enumerate(dataset.take(batches)):
        bx = {k: np.asarray(v) for k, v in bx.items()}
        terms = model.compute_losses(
            bx, np.asarray(by), sample_weight=np.asarray(bw)
        )
        weighted = {
            "ce": (1 - dist.kd_ratio) * terms["ce"],
            "kd": dist.kd_ratio * terms["kd"],
            "mta": dist.kd_ratio * dist.mta_weight * terms["mta"],
        }
        grads = {
            name: _grad_vector(term, variables)
            for name, term in weighted.items()
        }
        mask = torch.tensor(
            np.concatenate(
                [
                    np.full(v.value.numel(), id(v) in student_ids)
                    for v in variables
                ]
            )
        )
        norms = {
            name: float(torch.linalg.vector_norm(g[mask]))
            for name, g in grads.items()
        }
        kd, mta = grads["kd"][mask], grads["mta"][mask]
        cosine = float(
            torch.dot(kd, mta)
            / (torch.linalg.vector_norm(kd) * torch.linalg.vector_norm(mta))
        )
        row = {
            "batch": index,
            **{
                name: float(keras.ops.convert_to_numpy(terms[name]))
                for name in ("ce", "kd", "dsa", "hra", "mta")
            },
            "weighted_mta": float(keras.ops.convert_to_numpy(weighted["mta"])),
            "grad_norm": norms,
            "cos_kd_mta": cosine,
        }
        rows.append(row)
        print(row, flush=True)
    mean = {
        key: float(np.mean([r[key] for r in rows]))
        for key in ("ce", "kd", "dsa", "hra", "mta", "weighted_mta")
    }
    grad = {
        name: float(np.mean([r["grad_norm"][name] for r in rows]))
        for name in ("ce", "kd", "mta")
    }
    cosine = float(np.mean([r["cos_kd_mta"] for r in rows]))
    out = {
        "units_per_example": units,
        "mta_weight": dist.mta_weight,
        "kd_ratio": dist.kd_ratio,
        "plan": plan.get_config(),
        "batches": rows,
        "mean_terms": mean,
        "mean_student_grad_norm": grad,
        "mean_cos_kd_mta": cosine,
    }
    (output / "diagnostics.json").write_text(json.dumps(out, indent=1))
    print()
    print(
        f"units per example: {units['word_units']:.1f} word, "
        f"{units['phrase_units']:.1f} phrase"
    )
    print("| term (as weighted in the loss) | value | student grad norm |")
    print("|---|---|---|")
    print(
        f"| (1 - kd_ratio) CE | {(1 - dist.kd_ratio) * mean['ce']:.3f} | "
        f"{grad['ce']:.3f} |"
    )
    print(
        f"| kd_ratio KD | {dist.kd_ratio * mean['kd']:.3f} | {grad['kd']:.3f} |"
    )
    print(
        f"| kd_ratio mta_weight L_MTA (DSA {mean['dsa']:.3f}, HRA "
        f"{mean['hra']:.3f}) | {mean['weighted_mta']:.3f} | "
        f"{grad['mta']:.3f} |"
    )
    print(f"cosine(grad KD, grad MTA) = {cosine:.3f}")
    return out


if __name__ == "__main__":
    main()
