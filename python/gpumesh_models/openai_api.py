"""OpenAI's HTTP API over a LoadedModel: request bodies checked, responses and stream chunks shaped. Pure:
the caller (serve_app.py) reads the clock, mints ids and does the HTTP.

Supported: POST /v1/completions, /v1/chat/completions, /v1/embeddings, each as OpenAI documents them, with
n=1 only. Options this runtime cannot honour (logprobs, echo, tools, penalties, ...) are refused with a 400
rather than silently ignored.
"""

import base64
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gpumesh_models.chat_template import ChatMessage
from gpumesh_models.errors import InvalidRequestError, ModelError
from gpumesh_models.runtime import Completion, LoadedModel, SamplingOptions, TextDelta, Usage

MAX_MESSAGES = 64
MAX_CALLER_STOP_SEQUENCES = 4  # OpenAI's limit; a chat template may add its own on top
MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
DEFAULT_CHAT_MAX_TOKENS = 256
# OpenAI's "developer" role is the newer name of "system".
ROLE_ALIASES = {"developer": "system"}
# Options with no effect here, and the values that mean "off": anything else is refused.
UNSUPPORTED_UNLESS_DEFAULT = {
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none", "auto"),
    "function_call": (None, "none", "auto"),
}


class ApiError(Exception):
    """An error answer: HTTP status plus OpenAI's {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}

    @classmethod
    def bad_request(cls, message: str, param: str | None = None, code: str | None = None) -> "ApiError":
        return cls(400, message, "invalid_request_error", param, code)

    @classmethod
    def from_model_error(cls, error: ModelError) -> "ApiError":
        if isinstance(error, InvalidRequestError):
            # A plain bad value has no code (as at OpenAI); the specific cases keep theirs.
            code = None if type(error) is InvalidRequestError else error.code
            return cls.bad_request(error.message, error.param, code)
        # Anything else from the model (it should not happen once loaded) is the server's fault.
        return cls(500, error.message, "server_error", error.param, error.code)


@dataclass(frozen=True)
class ResponseIdentity:
    """What the edge supplies for one response: its id ("cmpl-..." / "chatcmpl-...") and Unix time."""

    id: str
    created: int


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str
    prompt_param: str
    options: SamplingOptions
    stream: bool
    include_usage: bool  # stream_options.include_usage: one last chunk carries the usage


# --- request checking ---------------------------------------------------------------------------------


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_REQUEST_BYTES:
        raise ApiError(413, f"request body is larger than {MAX_REQUEST_BYTES} bytes", "invalid_request_error")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError.bad_request(f"request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise ApiError.bad_request("request body must be a JSON object")
    return body


def check_model_name(body: dict[str, Any], accepted_names: frozenset[str]) -> None:
    name = body.get("model")
    if name is None:
        return  # one model per deployment: naming it is optional
    if not isinstance(name, str):
        raise ApiError.bad_request("model must be a string", "model")
    if name not in accepted_names:
        raise ApiError(
            404,
            f"The model {name!r} does not exist here; this server runs {sorted(accepted_names)}",
            "invalid_request_error",
            "model",
            "model_not_found",
        )


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError.bad_request(f"{key} must be a number", key)
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError.bad_request(f"{key} must be an integer", key)
    return value


def _boolean(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError.bad_request(f"{key} must be a boolean", key)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if (
        isinstance(stop, list)
        and len(stop) <= MAX_CALLER_STOP_SEQUENCES
        and all(isinstance(s, str) for s in stop)
    ):
        return tuple(stop)
    message = f"stop must be a string or an array of up to {MAX_CALLER_STOP_SEQUENCES} strings"
    raise ApiError.bad_request(message, "stop")


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, defaults in UNSUPPORTED_UNLESS_DEFAULT.items():
        if key in body and not any(
            body[key] == default and type(body[key]) is type(default) for default in defaults
        ):
            raise ApiError.bad_request(
                f"{key} is not supported by this model server", key, "unsupported_parameter"
            )
    n = _integer(body, "n", 1)
    if n != 1:
        raise ApiError.bad_request("only n=1 is supported", "n", "unsupported_parameter")
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise ApiError.bad_request(
            'only response_format {"type": "text"} is supported', "response_format", "unsupported_parameter"
        )


def _sampling_options(
    body: dict[str, Any], default_max_tokens: int, max_tokens_key: str = "max_tokens"
) -> SamplingOptions:
    max_tokens = _integer(body, max_tokens_key, None)
    if max_tokens is None:
        max_tokens = default_max_tokens
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
        seed=_integer(body, "seed", None),
        stop=_stop(body),
    )


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _boolean(body, "stream")
    stream_options = body.get("stream_options")
    if stream_options is None:
        return stream, False
    if not stream or not isinstance(stream_options, dict):
        raise ApiError.bad_request(
            "stream_options is an object, allowed only with stream: true", "stream_options"
        )
    include_usage = stream_options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise ApiError.bad_request("stream_options.include_usage must be a boolean", "stream_options")
    return stream, include_usage


def parse_completion_request(body: dict[str, Any], model: LoadedModel) -> CompletionRequest:
    _refuse_unsupported(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # OpenAI accepts a batch of prompts; a batch of one is the same request
    if not isinstance(prompt, str):
        raise ApiError.bad_request(
            "prompt must be a string (token arrays and batches are not supported)", "prompt"
        )
    stream, include_usage = _stream_flags(body)
    default_max_tokens = min(DEFAULT_COMPLETION_MAX_TOKENS, model.config.max_output_tokens)
    return CompletionRequest(
        prompt, "prompt", _sampling_options(body, default_max_tokens), stream, include_usage
    )


def _message_content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # The parts form: [{"type": "text", "text": "..."}, ...]; only text parts are possible here.
        if all(
            isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            for part in content
        ):
            return "".join(part["text"] for part in content)
        raise ApiError.bad_request("only text content parts are supported", f"messages[{index}].content")
    raise ApiError.bad_request(
        "content must be a string or an array of text parts", f"messages[{index}].content"
    )


def parse_chat_messages(body: dict[str, Any]) -> list[ChatMessage]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise ApiError.bad_request(f"messages must be an array of 1 to {MAX_MESSAGES} messages", "messages")
    parsed = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiError.bad_request("each message must be an object", f"messages[{index}]")
        role = ROLE_ALIASES.get(message.get("role"), message.get("role"))
        if role not in ("system", "user", "assistant"):
            raise ApiError.bad_request(
                "role must be system, developer, user or assistant (tools are not supported)",
                f"messages[{index}].role",
            )
        parsed.append(ChatMessage(role=role, content=_message_content(message, index)))
    return parsed


def parse_chat_request(body: dict[str, Any], model: LoadedModel) -> CompletionRequest:
    _refuse_unsupported(body)
    messages = parse_chat_messages(body)
    stream, include_usage = _stream_flags(body)
    # max_completion_tokens is OpenAI's newer name for max_tokens in chat.
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    options = _sampling_options(body, min(DEFAULT_CHAT_MAX_TOKENS, model.config.max_output_tokens), key)
    # The template's own stop sequences (the start of a new "User:" turn) apply on top of the caller's.
    stop = tuple(s for s in model.config.chat_template.stop if s not in options.stop) + options.stop
    options = SamplingOptions(options.max_tokens, options.temperature, options.top_p, options.seed, stop)
    return CompletionRequest(model.chat_prompt(messages), "messages", options, stream, include_usage)


def parse_embeddings_input(body: dict[str, Any]) -> tuple[list[str], str]:
    """The texts to embed and the encoding format ("float" or "base64")."""
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise ApiError.bad_request(
            "input must be a string or an array of strings (token arrays are not supported)", "input"
        )
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise ApiError.bad_request("encoding_format must be float or base64", "encoding_format")
    if body.get("dimensions") is not None:
        raise ApiError.bad_request(
            "dimensions is not supported by this model", "dimensions", "unsupported_parameter"
        )
    return texts, encoding_format


# --- responses ----------------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_body(identity: ResponseIdentity, model_name: str, completion: Completion) -> dict[str, Any]:
    return {
        "id": identity.id,
        "object": "text_completion",
        "created": identity.created,
        "model": model_name,
        "choices": [
            {"text": completion.text, "index": 0, "logprobs": None, "finish_reason": completion.finish_reason}
        ],
        "usage": usage_body(completion.usage),
    }


def chat_body(identity: ResponseIdentity, model_name: str, completion: Completion) -> dict[str, Any]:
    return {
        "id": identity.id,
        "object": "chat.completion",
        "created": identity.created,
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_body(completion.usage),
    }


def embeddings_body(
    model_name: str, vectors: list[list[float]], usage: Usage, encoding_format: str
) -> dict[str, Any]:
    def encode(vector: list[float]) -> list[float] | str:
        if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        return vector

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(vectors)
        ],
        "model": model_name,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
    }


def server_sent_events(
    events: Iterator[TextDelta | Completion],
    identity: ResponseIdentity,
    model_name: str,
    chat: bool,
    include_usage: bool,
) -> Iterator[str]:
    """OpenAI's stream: one `data: {chunk}` event per piece of text, then the finish reason, then (with
    include_usage) a chunk with empty choices and the usage, then `data: [DONE]`."""
    object_name = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict[str, Any]], usage: Usage | None = None) -> str:
        body: dict[str, Any] = {
            "id": identity.id,
            "object": object_name,
            "created": identity.created,
            "model": model_name,
            "choices": choices,
        }
        if include_usage:
            body["usage"] = None if usage is None else usage_body(usage)
        return f"data: {json.dumps(body)}\n\n"

    def choice(text: str | None, finish_reason: str | None, role: str | None = None) -> dict[str, Any]:
        if not chat:
            return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish_reason}
        delta: dict[str, Any] = {}
        if role is not None:
            delta["role"] = role
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    if chat:
        yield chunk([choice("", None, role="assistant")])
    try:
        for event in events:
            if isinstance(event, TextDelta):
                yield chunk([choice(event.text, None)])
            else:
                yield chunk([choice(None if chat else "", event.finish_reason)])
                if include_usage:
                    yield chunk([], event.usage)
    except Exception as error:  # a bug mid-stream: the status line is long gone, so say so in the stream
        yield f"data: {json.dumps(ApiError(500, f'generation failed: {error}', 'server_error').body)}\n\n"
    yield "data: [DONE]\n\n"
