"""Weight merging of an off-the-shelf model and its fine-tune, through sentence-transformers' mergekit API.

Notebook 11 interpolates one weight tensor by hand before using this: the linear merge is
`θ(α) = (1 − α)·θ_base + α·θ_tuned` for every floating-point tensor (WiSE-FT, LM-Cocktail). Here the same
`α` drives every method the notebook compares, so that "α = 0.3" means "30% of the way to the fine-tune":
`linear` weighs the two models, `slerp` and `nuslerp` take `t = α`, and the task-vector methods
(`task_arithmetic`, `ties`, `dare_linear`, ...) add `α` times the fine-tune's change to the base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentence_transformers import SentenceTransformer

INTERPOLATING_METHODS = ("linear", "slerp", "nuslerp")
TASK_VECTOR_METHODS = (
    "task_arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
    "breadcrumbs",
    "breadcrumbs_ties",
    "della",
    "della_linear",
)


class MergeError(ValueError):
    """Two models that cannot be merged, or a merge asked for with impossible settings; the message says which."""


def describe(model: SentenceTransformer) -> str:
    """Architecture, vocabulary size and source folder of a transformer-based model, for error messages."""
    module = model[0]
    architecture = type(getattr(module, "auto_model", module)).__name__
    tokenizer = getattr(model, "tokenizer", None)
    vocabulary = f"{len(tokenizer.get_vocab())}-token vocabulary" if tokenizer is not None else "no tokenizer"
    source = getattr(tokenizer, "name_or_path", "") or "unknown folder"
    return f"{architecture} with a {vocabulary} from {source}"


def check_mergeable(base: SentenceTransformer, tuned: SentenceTransformer) -> None:
    """Raise `MergeError` naming both models unless they share the architecture, the vocabulary and every
    weight's name and shape (what fine-tunes of one model share)."""
    problems = []
    if type(base[0].auto_model) is not type(tuned[0].auto_model):
        problems.append("different architectures")
    if base.tokenizer.get_vocab() != tuned.tokenizer.get_vocab():
        problems.append("different tokenizers (token-to-id maps)")
    base_shapes = {name: tuple(tensor.shape) for name, tensor in base.state_dict().items()}
    tuned_shapes = {name: tuple(tensor.shape) for name, tensor in tuned.state_dict().items()}
    if not problems and base_shapes != tuned_shapes:
        differing = sorted(set(base_shapes) ^ set(tuned_shapes)) or sorted(
            name for name in base_shapes if base_shapes[name] != tuned_shapes[name]
        )
        problems.append(f"different weights (first: {differing[0]})")
    if problems:
        raise MergeError(
            f"cannot merge {describe(base)} with {describe(tuned)}: {' and '.join(problems)}; only "
            "fine-tunes of one model can be merged"
        )


def merge(
    base: SentenceTransformer,
    tuned: SentenceTransformer,
    alpha: float,
    method: str = "linear",
    extra_parameters: dict[str, Any] | None = None,
) -> SentenceTransformer:
    """A new model `alpha` of the way from `base` to `tuned` by `method` (see the module docstring), built in
    memory by `SentenceTransformer.merge`; neither input changes. `extra_parameters` go to mergekit as they are
    (`{"density": 0.5}` for `ties`)."""
    if not 0 <= alpha <= 1:
        raise MergeError(f"alpha={alpha}: the merge weight must lie in [0, 1] (0 is the base model, 1 the fine-tune)")
    check_mergeable(base, tuned)
    if method == "linear":
        arguments: dict[str, Any] = {"parameters": {"weight": [1 - alpha, alpha]}}
    elif method in ("slerp", "nuslerp"):
        arguments = {"parameters": {"t": alpha}}
    elif method in TASK_VECTOR_METHODS:
        # mergekit normalises some of these (ties) by the sum of the weights, which would undo a single weight
        arguments = {"base_model": base, "parameters": {"weight": [alpha], "normalize": False}}
    else:
        raise MergeError(
            f"method {method!r}: use one of {', '.join(INTERPOLATING_METHODS + TASK_VECTOR_METHODS)} "
            "(the others need more than one fine-tune)"
        )
    arguments["parameters"].update(extra_parameters or {})
    try:
        return SentenceTransformer.merge([base, tuned], method, **arguments)
    except (ValueError, TypeError, KeyError) as error:  # mergekit's own validation of the method's parameters
        raise MergeError(f"merging {describe(base)} with {describe(tuned)} by {method}: {error}") from error


def smallest_alpha_keeping(dev_by_alpha: Mapping[float, float], share: float) -> float:
    """Notebook 11's rule for choosing α: the smallest α whose dev gain over α = 0 is at least `share` of the gain at
    α = 1 (`dev_by_alpha` maps each swept α, 0 and 1 among them, to its dev score). α = 1 when the fine-tune did not
    gain on dev: there is no gain to keep, and the fine-tune is reported as it is."""
    if 0.0 not in dev_by_alpha or 1.0 not in dev_by_alpha:
        raise MergeError(f"the sweep {sorted(dev_by_alpha)} must include α = 0 (the base) and α = 1 (the fine-tune)")
    full_gain = dev_by_alpha[1.0] - dev_by_alpha[0.0]
    if full_gain <= 0:
        return 1.0
    return float(min(alpha for alpha, value in dev_by_alpha.items() if value - dev_by_alpha[0.0] >= share * full_gain))


def part_of(name: str) -> str:
    """The part of the network a weight (by its state-dict name) belongs to: "embeddings", "layer N" (a
    transformer layer), "pooler" (BERT's [CLS] layer, unused by mean pooling), or "other"."""
    pieces = name.split(".")
    layer = next((part for previous, part in zip(pieces, pieces[1:]) if previous == "layer"), None)
    if layer is not None:
        return f"layer {layer}"
    return "embeddings" if "embeddings" in name else "pooler" if "pooler" in name else "other"


def merge_name(alpha: float, method: str = "linear") -> str:
    """A merged model's name in notebooks 11 and 12's score tables: "linear α=0.5", "ties α=0.75"."""
    return f"{method} α={alpha:g}"


def model_at(base: SentenceTransformer, tuned: SentenceTransformer, alpha: float) -> SentenceTransformer:
    """The linear merge at `alpha`, or one of the two models themselves at α = 0 (the base) and α = 1 (the fine-tune):
    the model notebooks 11 and 12 deploy once their rule has chosen α."""
    if alpha in (0.0, 1.0):
        return base if alpha == 0.0 else tuned
    return merge(base, tuned, alpha)
