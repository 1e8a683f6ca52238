"""Zero-shot evaluation of vision-language models (the paper's Gemini / GPT comparison).

- `prompts`: one versioned YAML prompt per dataset, rendered from the data's class names;
- `images`: what the model sees (raw pixels, PNG, longest side <= 512);
- `clients`: OpenAI-compatible chat (``openai``) and Gemini (``google-genai``);
- `cache`: every answer in SQLite, committed as it arrives;
- `parsing`: free-text answers -> class ids; `scoring`: same metrics as trained models;
- `runner`: `run_zero_shot` over a split, `zero_shot_record` for the results store.
"""

from __future__ import annotations

from .cache import ResponseCache, cache_key
from .clients import (
    PROVIDERS,
    GeminiClient,
    MalformedResponseError,
    MissingAPIKeyError,
    OpenAIChatClient,
    Reply,
    VLMClient,
    make_client,
)
from .images import DEFAULT_MAX_SIDE, encode_png, images_hash, sent_size
from .parsing import parse_multi, parse_single
from .prompts import (
    Prompt,
    PromptError,
    PromptLabel,
    PromptTemplate,
    load_prompt,
    packaged_prompts,
    parse_prompt,
)
from .runner import (
    REGIME,
    IncompleteRunError,
    ItemResult,
    ZeroShotResult,
    prompt_for,
    run_zero_shot,
    task_format,
    zero_shot_record,
)
from .scoring import score, target_of

__all__ = [
    "DEFAULT_MAX_SIDE", "PROVIDERS", "REGIME", "GeminiClient", "IncompleteRunError", "ItemResult",
    "MalformedResponseError", "MissingAPIKeyError", "OpenAIChatClient", "Prompt", "PromptError",
    "PromptLabel", "PromptTemplate", "Reply", "ResponseCache", "VLMClient", "ZeroShotResult",
    "cache_key", "encode_png", "images_hash", "load_prompt", "make_client", "packaged_prompts",
    "parse_multi", "parse_prompt", "parse_single", "prompt_for", "run_zero_shot", "score",
    "sent_size", "target_of", "task_format", "zero_shot_record",
]
