"""A tiny client for OpenAI-compatible chat endpoints (``POST {base}/chat/completions``), stdlib only.

Used by the chat rephraser (``prefalign.shifts.rephrase``) and the gpt-score judge
(``prefalign.evaluation.judge``). The base URL, model and key come from arguments or from the
environment variables ``PREFALIGN_API_BASE``, ``PREFALIGN_API_MODEL`` and ``PREFALIGN_API_KEY``.
``PREFALIGN_API_BASE`` may be given as ``https://api.openai.com/v1`` (the usual form), as a bare
host (``http://localhost:8000``, to which ``/v1`` is added) or as the full
``.../chat/completions`` URL. The key is optional (local servers often need none) and never
appears in error messages.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from ..errors import ConfigError, UserError

ENV_BASE, ENV_MODEL, ENV_KEY = "PREFALIGN_API_BASE", "PREFALIGN_API_MODEL", "PREFALIGN_API_KEY"
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(UserError):
    """The chat endpoint could not be reached or gave an answer we cannot use."""


@dataclass
class ChatEndpoint:
    """One OpenAI-compatible chat model: ``chat(messages) -> str`` with timeouts and retries."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 2  # extra attempts after the first, on network errors, timeouts, 429 and 5xx
    backoff: float = 1.0  # seconds before the first retry, doubled each time

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.base_url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"the chat endpoint base URL must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ConfigError(f"the chat endpoint needs a model name (set {ENV_MODEL})")
        if not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {self.retries!r}")

    @classmethod
    def from_env(
        cls, base_url: str | None = None, model: str | None = None, api_key: str | None = None, **kwargs
    ) -> ChatEndpoint:
        """An endpoint from the arguments, falling back to the PREFALIGN_API_* environment variables."""
        base_url = base_url or os.environ.get(ENV_BASE)
        model = model or os.environ.get(ENV_MODEL)
        api_key = api_key or os.environ.get(ENV_KEY) or None
        if not base_url:
            raise ConfigError(
                f"no chat endpoint: set {ENV_BASE} (e.g. https://api.openai.com/v1) and {ENV_MODEL}, "
                "or use the offline rule-based rephraser / judge"
            )
        if not model:
            raise ConfigError(f"no chat model: set {ENV_MODEL} (e.g. gpt-3.5-turbo) as well as {ENV_BASE}")
        return cls(base_url=base_url, model=model, api_key=api_key, **kwargs)

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        if urllib.parse.urlparse(base).path in ("", "/"):
            base += "/v1"
        return base + "/chat/completions"

    def describe(self) -> str:
        """``model @ host`` for cards and reports (never the key)."""
        return f"{self.model} @ {urllib.parse.urlparse(self.base_url).netloc}"

    def chat(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int | None = None) -> str:
        """The assistant's reply text for ``messages``; EndpointError (one line) when that fails."""
        body = {"model": self.model, "messages": messages, "temperature": temperature}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay, last = self.backoff, ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as e:
                detail = _snippet(e.read())
                last = f"HTTP {e.code} {e.reason}{': ' + detail if detail else ''}"
                if e.code in _RETRY_STATUS:
                    continue
                raise EndpointError(f"chat endpoint {self.url} refused the request: {last}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                continue
            return _reply_text(raw, self.url)
        raise EndpointError(f"chat endpoint {self.url} failed after {self.retries + 1} attempts; last error: {last}")


def _reply_text(raw: bytes, url: str) -> str:
    """``choices[0].message.content`` of a chat completion response."""
    try:
        payload = json.loads(raw.decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise EndpointError(
            f"chat endpoint {url} gave a response that is not a chat completion: {_snippet(raw)}"
        ) from None
    if not isinstance(content, str) or not content.strip():
        raise EndpointError(f"chat endpoint {url} returned an empty message")
    return content


def _snippet(raw: bytes, limit: int = 200) -> str:
    """The first ``limit`` characters of a response body on one line."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")
