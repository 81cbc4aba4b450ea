"""Fine-tune only the top layers of a BERT classifier, reusing the frozen layers' outputs.

On a 2-core CPU a forward pass of all-MiniLM-L6-v2 runs at about 20 reviews a second, so full
fine-tuning (three passes per epoch) blows the demo's time budget. Freezing the embeddings and
the lower layers lets us run them ONCE: `frozen_states` keeps, per text, the hidden states that
enter the first trainable layer, and `top_logits` runs just the trainable layers, the pooler and
the classifier on them. The result is exactly the full model's forward (checked in the tests), so
the saved model is an ordinary transformers classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlml.bridge.runtimes.sentiment import pad_batch


def frozen_states(
    model: Any, ids: Sequence[Sequence[int]], frozen_layers: int, pad_id: int, batch_size: int = 64
) -> list[Any]:
    """Per text, the (tokens x hidden) states after the embeddings and `frozen_layers` layers."""
    import torch

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding per batch
    states: list[Any] = [None] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids, attention = pad_batch([ids[i] for i in chunk], pad_id)
            hidden = model.base_model(input_ids=input_ids, attention_mask=attention, output_hidden_states=True)
            layer_input = hidden.hidden_states[frozen_layers]
            for row, index in enumerate(chunk):
                states[index] = layer_input[row, : int(attention[row].sum())].clone()
    return states


def top_logits(model: Any, states: Sequence[Any], trainable_layers: int) -> Any:
    """The classifier's logits from cached states: top layers, pooler, dropout, classifier."""
    import torch

    width = max(state.shape[0] for state in states)
    hidden = torch.zeros(len(states), width, states[0].shape[1])
    mask = torch.zeros(len(states), width)
    for row, state in enumerate(states):
        hidden[row, : state.shape[0]] = state
        mask[row, : state.shape[0]] = 1
    # additive attention mask, the form BERT's layers take: 0 to attend, a large negative to ignore
    additive = (1.0 - mask[:, None, None, :]) * torch.finfo(hidden.dtype).min
    for layer in model.base_model.encoder.layer[-trainable_layers:]:
        out = layer(hidden, attention_mask=additive)
        hidden = out[0] if isinstance(out, tuple) else out
    return model.classifier(model.dropout(model.base_model.pooler(hidden)))


def trainable_parameters(model: Any, trainable_layers: int) -> list[Any]:
    """Freeze everything but the top layers, the pooler and the classifier; return those."""
    for parameter in model.parameters():
        parameter.requires_grad = False
    modules = [*model.base_model.encoder.layer[-trainable_layers:], model.base_model.pooler, model.classifier]
    chosen = [p for module in modules for p in module.parameters()]
    for parameter in chosen:
        parameter.requires_grad = True
    return chosen
