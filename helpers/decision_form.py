"""The form of notebook 07: a target, a training-set size, a corpus size and a price, each change recomputing the
measured rule (`decision.should_finetune_measured`) from the learning curve and throughput the notebook measured.

In a live kernel it is an ipywidgets form; an executed copy (papermill, `workbook run`) leaves no live kernel
behind a form once it ends, so there it is the advice for the starting values, as markdown that also reads
as plain text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .decision import should_finetune_measured
from .outputs import markdown
from .progress import live_progress

ADVICE = {
    "off-the-shelf": "Use the off-the-shelf model",
    "generate_data_first": "Collect or generate more training pairs first",
    "fine-tune": "Fine-tune",
    "fine-tune + improve retrieval pipeline": "Fine-tune, and improve the retrieval pipeline too",
}


def advice_html(decision: Mapping[str, Any]) -> str:
    """One decision of the measured rule as HTML: the advice in words, its label, and a list of its reasons."""
    reasons = "".join(f"<li>{reason}</li>" for reason in decision["reasons"])
    return f"<b>{ADVICE[decision['recommendation']]}</b> ({decision['recommendation']})<ul>{reasons}</ul>"


def advice_markdown(decisions: Mapping[str, Mapping[str, Any]], with_inputs: bool = False) -> Any:
    """Decisions of either rule (label -> `should_finetune_measured` or `should_finetune_embeddings` result) as
    markdown: per label, "**label: the advice in words** (recommendation)" (with the baseline and target it was given
    when `with_inputs`) and its reasons as a list."""
    blocks = []
    for label, decision in decisions.items():
        inputs = f" (baseline {decision['baseline']:.3f}, target {decision['target']:.2f})" if with_inputs else ""
        reasons = "\n".join(f"- {reason}" for reason in decision["reasons"])
        advice = ADVICE.get(decision["recommendation"], decision["recommendation"])
        blocks.append(f"**{label}: {advice}** ({decision['recommendation']}){inputs}\n\n{reasons}")
    return markdown("\n\n".join(blocks))


def decision_form(
    baseline: float,
    curve: Mapping[int, float],
    docs_per_second: float,
    *,
    target: float,
    examples: int,
    corpus_size: int,
    price_per_hour: float = 0.0,
    reranker: Mapping[str, Any] | None = None,
    live: bool | None = None,
) -> Any:
    """The form (live, or `live` True): four controls and the advice under them, recomputed whenever a control
    changes. In a batch run (or `live` False): the advice for the starting values, as markdown."""

    def decide(target: float, examples: int, corpus_size: int, price: float) -> dict[str, Any]:
        return should_finetune_measured(
            baseline, target, corpus_size, examples, curve, docs_per_second, price, reranker=reranker
        )

    if not (live_progress() if live is None else live):
        decision = decide(target, examples, corpus_size, price_per_hour)
        reasons = "\n".join(f"- {reason}" for reason in decision["reasons"])
        return markdown(
            f"(a batch run: the form needs a live kernel) **{ADVICE[decision['recommendation']]}**:\n\n{reasons}"
        )
    import ipywidgets as widgets

    labelled = {"style": {"description_width": "11em"}, "layout": widgets.Layout(width="40em")}
    controls = {  # step 1 where a value of yours must not snap to a coarser grid
        "target": widgets.FloatSlider(
            value=target, min=0.0, max=1.0, step=0.01, description="target NDCG@10", **labelled
        ),
        "examples": widgets.IntSlider(
            value=examples,
            min=0,
            max=max(50_000, examples),
            step=1,
            readout_format=",d",
            description="training examples",
            **labelled,
        ),
        "corpus_size": widgets.BoundedIntText(
            value=corpus_size, min=1, max=10**12, description="documents to reindex", **labelled
        ),
        "price": widgets.FloatSlider(
            value=price_per_hour,
            min=0.0,
            max=max(10.0, price_per_hour),
            step=0.1,
            description="price per hour",
            **labelled,
        ),
    }
    answer = widgets.HTML()

    def advise(change: Any = None) -> None:
        answer.value = advice_html(decide(**{name: control.value for name, control in controls.items()}))

    for control in controls.values():
        control.observe(advise, names="value")
    advise()
    return widgets.VBox([*controls.values(), answer])
