"""Expected failures, each with a stable code that callers branch on (never on the message text).

The HTTP layer maps them onto OpenAI's error shape: `code` becomes error.code, `param` error.param.
"""


class ModelError(Exception):
    """Base class: something a caller can be told about, as opposed to a bug."""

    code = "model_error"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class ModelFormatError(ModelError):
    """The model directory does not follow the format in README.md (missing file, bad config, bad tensors)."""

    code = "model_format_invalid"


class ArtifactHashMismatchError(ModelError):
    """An artifact's SHA-256 differs from the expected one: the model is refused, nothing of it is loaded."""

    code = "artifact_hash_mismatch"


class InvalidRequestError(ModelError):
    """Bad input from the caller (HTTP 400)."""

    code = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (or an embeddings input) has more tokens than the model's context holds (HTTP 400).

    The code is OpenAI's own for this case, so OpenAI clients recognise it.
    """

    code = "context_length_exceeded"
