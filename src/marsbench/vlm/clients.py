"""Clients for vision-language model APIs, built on each provider's official package.

- `OpenAIChatClient`: any OpenAI-compatible chat-completions API through ``openai`` (OpenAI
  itself, or a local server such as vLLM or Ollama through ``base_url``).
- `GeminiClient`: Gemini through ``google-genai``.

Both send the prompt text and each image as a real image part (PNG from `images.encode_png`),
and retry rate limits (429), server errors (5xx) and timeouts with exponential backoff using the
library's own retry machinery. API keys come only from the environment (``OPENAI_API_KEY``;
``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``); they are never logged or stored.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ..errors import MarsbenchError
from .images import MIME_TYPE
from .prompts import Prompt

PROVIDERS = ("openai", "gemini")
LOCAL_API_KEY = "unused-local-key"  # OpenAI-compatible local servers ignore the key


class MissingAPIKeyError(MarsbenchError, RuntimeError):
    """The provider's API key is not in the environment."""


class MalformedResponseError(MarsbenchError, RuntimeError):
    """The API answered, but not with a chat answer (e.g. no choices)."""


@dataclass(frozen=True)
class Reply:
    """A model's answer text and the tokens it cost (0 where the API did not say)."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0


class VLMClient(Protocol):
    """What the runner needs from a client. ``identity`` keys the response cache."""

    provider: str
    model: str

    @property
    def identity(self) -> dict[str, Any]: ...

    def ask(self, prompt: Prompt, images: Sequence[bytes]) -> Reply: ...


def image_caption(prompt: Prompt, index: int, count: int) -> str | None:
    """Text placed before image ``index``: "Image 1 (before):" for pairs, None for one image."""
    if count == 1 and not prompt.image_captions:
        return None
    caption = prompt.image_captions[index] if index < len(prompt.image_captions) else None
    return f"Image {index + 1} ({caption}):" if caption else f"Image {index + 1}:"


class OpenAIChatClient:
    """Chat completions with image parts; ``base_url`` points at any OpenAI-compatible server.

    ``max_retries``/``timeout`` are the ``openai`` client's own: it retries 408, 409, 429, 5xx
    and timeouts with exponential backoff (0.5 s doubling to 8 s, with jitter) and honours
    ``Retry-After``. ``temperature=None`` or ``max_tokens=None`` leaves them out of the request
    (reasoning models refuse a temperature).
    """

    provider = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, timeout: float = 60.0,
                 max_retries: int = 5, temperature: float | None = 0.0,
                 max_tokens: int | None = None, image_detail: str | None = None):
        from openai import OpenAI

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise MissingAPIKeyError(
                    "OPENAI_API_KEY is not set: export it, or pass --base-url for a local "
                    "OpenAI-compatible server that needs no key")
            key = LOCAL_API_KEY
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.image_detail = image_detail
        self._client = OpenAI(api_key=key, base_url=base_url, timeout=timeout,
                              max_retries=max_retries)

    @property
    def identity(self) -> dict[str, Any]:
        return {"provider": self.provider, "endpoint": public_endpoint(self.base_url),
                "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "image_detail": self.image_detail}

    def messages(self, prompt: Prompt, images: Sequence[bytes]) -> list[dict[str, Any]]:
        """The chat messages: system text, then the user's text and image parts."""
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt.user}]
        for i, png in enumerate(images):
            caption = image_caption(prompt, i, len(images))
            if caption:
                content.append({"type": "text", "text": caption})
            url = f"data:{MIME_TYPE};base64,{base64.b64encode(png).decode('ascii')}"
            part: dict[str, Any] = {"url": url}
            if self.image_detail:
                part["detail"] = self.image_detail
            content.append({"type": "image_url", "image_url": part})
        return [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]

    def ask(self, prompt: Prompt, images: Sequence[bytes]) -> Reply:
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_tokens is not None:
            options["max_completion_tokens"] = self.max_tokens
        response = self._client.chat.completions.create(
            model=self.model, messages=self.messages(prompt, images), **options)
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            raise MalformedResponseError(f"{self.model}: the response has no answer choices")
        usage = getattr(response, "usage", None)
        return Reply(text=choices[0].message.content or "",
                     input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                     output_tokens=int(getattr(usage, "completion_tokens", 0) or 0))


class GeminiClient:
    """Gemini ``generate_content`` with inline PNG parts.

    Retries are google-genai's own (`HttpRetryOptions`, tenacity inside): 408, 429, 5xx and
    connection/timeout errors, exponential backoff from ``initial_delay`` doubling to
    ``max_delay``, ``attempts`` in all. ``base_url`` points the client elsewhere (tests, proxies).
    Output tokens count the answer and any thinking tokens (both are billed as output).
    """

    provider = "gemini"

    def __init__(self, model: str, *, base_url: str | None = None, timeout: float = 60.0,
                 attempts: int = 6, initial_delay: float = 1.0, max_delay: float = 60.0,
                 temperature: float | None = 0.0, max_tokens: int | None = None):
        from google import genai
        from google.genai import types

        key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key:
            raise MissingAPIKeyError("GEMINI_API_KEY (or GOOGLE_API_KEY) is not set: export it")
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._types = types
        retry = types.HttpRetryOptions(attempts=attempts, initial_delay=initial_delay,
                                       max_delay=max_delay)
        http = types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000),
                                 retry_options=retry)
        self._client = genai.Client(api_key=key, http_options=http)

    @property
    def identity(self) -> dict[str, Any]:
        return {"provider": self.provider, "endpoint": public_endpoint(self.base_url),
                "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def contents(self, prompt: Prompt, images: Sequence[bytes]) -> list[Any]:
        """The user turn's parts: the text, then each image as inline PNG bytes."""
        types = self._types
        parts = [types.Part.from_text(text=prompt.user)]
        for i, png in enumerate(images):
            caption = image_caption(prompt, i, len(images))
            if caption:
                parts.append(types.Part.from_text(text=caption))
            parts.append(types.Part.from_bytes(data=png, mime_type=MIME_TYPE))
        return parts

    def config(self, prompt: Prompt) -> Any:
        return self._types.GenerateContentConfig(
            system_instruction=prompt.system, temperature=self.temperature,
            max_output_tokens=self.max_tokens)

    def ask(self, prompt: Prompt, images: Sequence[bytes]) -> Reply:
        response = self._client.models.generate_content(
            model=self.model, contents=self.contents(prompt, images), config=self.config(prompt))
        if not getattr(response, "candidates", None) and response.prompt_feedback is None:
            raise MalformedResponseError(f"{self.model}: the response has no candidates")
        usage = response.usage_metadata
        out_tokens = (getattr(usage, "candidates_token_count", 0) or 0) + (
            getattr(usage, "thoughts_token_count", 0) or 0)
        return Reply(text=_gemini_text(response),
                     input_tokens=int(getattr(usage, "prompt_token_count", 0) or 0),
                     output_tokens=int(out_tokens))


def make_client(provider: str, model: str, *, base_url: str | None = None,
                timeout: float = 60.0, max_retries: int = 5, temperature: float | None = 0.0,
                max_tokens: int | None = None) -> VLMClient:
    """A client for ``provider`` ("openai" or "gemini")."""
    if provider == "openai":
        return OpenAIChatClient(model, base_url=base_url, timeout=timeout,
                                max_retries=max_retries, temperature=temperature,
                                max_tokens=max_tokens)
    if provider == "gemini":
        return GeminiClient(model, base_url=base_url, timeout=timeout, attempts=max_retries + 1,
                            temperature=temperature, max_tokens=max_tokens)
    raise ValueError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")


def public_endpoint(url: str | None) -> str | None:
    """``url`` without credentials, query or fragment (safe to store in caches and results)."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _gemini_text(response: Any) -> str:
    """The answer's text parts (thoughts left out); "" for a blocked or empty answer."""
    for candidate in response.candidates or []:
        content = getattr(candidate, "content", None)
        parts = getattr(content, "parts", None) or []
        texts = [p.text for p in parts
                 if getattr(p, "text", None) and not getattr(p, "thought", False)]
        if texts:
            return "".join(texts)
    return ""
