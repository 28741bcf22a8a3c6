"""`kerasflow generate`: text from a saved next_token model, token after token, as the books' text-generation
chapter does.

Each step feeds the model the last `window` token ids (the prompt's, left-padded with id 0 while it is shorter)
and draws the next token from its probabilities sharpened or flattened by `temperature` (p^(1/T), renormalised;
never the out-of-vocabulary id 0, nor an id past the vocabulary). Draws come from a generator seeded with `seed`,
so the same model, prompt and seed give the same text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasflow.tasks.config.errors import DataError
from kerasflow.tasks.data.tokens import TokenVocabulary, join
from kerasflow.tasks.outputs.saved_model import load_keras_model, read_saved


def generate_text(model_dir: str | Path, prompt: str, length: int, temperature: float = 1.0, seed: int = 0) -> str:
    """`length` tokens following `prompt`, drawn from the next_token model in `model_dir`; the generated text only."""
    saved = read_saved(model_dir)
    if saved.task != "next_token":
        raise DataError(f"{model_dir}: a {saved.task!r} model; generate needs one trained with task next_token "
                        f"(dataset.task: next_token)")
    if length < 1 or not temperature > 0 or seed < 0:
        raise DataError(f"--length must be at least 1, --temperature above 0 and --seed 0 or more. Received: length "
                        f"{length}, temperature {temperature}, seed {seed}")
    vocabulary: TokenVocabulary = saved.preprocessor
    window = vocabulary.spec.window
    context = [0] * window + vocabulary.encode_text(prompt).tolist()
    model = load_keras_model(saved.path)  # Keras is imported now, once the inputs are known to be good
    rng = np.random.default_rng(seed)
    known = len(vocabulary.tokens_)
    drawn: list[int] = []
    for _ in range(length):
        probabilities = np.asarray(model.predict_on_batch(np.array([context[-window:]], dtype=np.int32)),
                                   dtype=np.float64)[0]
        # Only the vocabulary's ids: not the out-of-vocabulary id 0, which stands for no token in particular, nor the
        # ids past the vocabulary's end (preprocess.tokens.num_words outputs, for a text with fewer distinct tokens).
        weights = np.power(np.clip(probabilities[:known], 0.0, None), 1.0 / temperature)
        weights[0] = 0.0
        total = weights.sum()
        token = int(rng.choice(known, p=weights / total)) if total > 0 else int(np.argmax(probabilities[1:known]) + 1)
        drawn.append(token)
        context.append(token)
    return join([vocabulary.tokens_[i] for i in drawn], vocabulary.spec.level)
