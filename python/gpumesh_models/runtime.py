"""Loads a model directory (README.md format) and runs it: completions, streamed or not, and embeddings.

    model = load_model("python/models/tiny-chat", {"config.json": "<hex>", "model.safetensors": "<hex>"})
    result = model.complete("The Fox", SamplingOptions(max_tokens=40, temperature=0.8, seed=7))
    result.text, result.finish_reason, result.usage.prompt_tokens   # prompt_tokens == 7

Deterministic: the same prompt, options and seed give the same text (on the same torch build and thread
count). Bad input raises InvalidRequestError / ContextLengthExceededError (HTTP 400 for the caller).
"""

import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from torch.nn import functional

from gpumesh_models.artifacts import read_artifacts
from gpumesh_models.char_transformer import CharTransformer, KeyValueCache
from gpumesh_models.chat_template import ChatMessage, render_chat_prompt
from gpumesh_models.errors import ContextLengthExceededError, InvalidRequestError, ModelFormatError
from gpumesh_models.model_format import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, parse_config
from gpumesh_models.stop_sequences import StopSequenceFilter
from gpumesh_models.tokenizer import CharTokenizer

MAX_STOP_SEQUENCES = 8  # a caller's 4 (OpenAI's limit) plus a chat template's up to 4
MAX_STOP_SEQUENCE_CHARS = 64
MAX_TEMPERATURE = 2.0  # OpenAI's range is [0, 2]
MAX_EMBEDDING_INPUTS = 64
LOADABLE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

FinishReason = str  # "stop" (end of text or a stop sequence) | "length" (max_tokens reached)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    """A piece of a streamed completion."""

    text: str


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    seed: int  # the seed used (drawn at random when none was given)


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage  # completion_tokens is 0


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


class LoadedModel:
    def __init__(self, config: ModelConfig, network: CharTransformer, artifact_sha256: dict[str, str]):
        self.config = config
        self.network = network
        self.tokenizer = CharTokenizer.for_config(config)
        self.artifact_sha256 = artifact_sha256
        self.window_slide = max(1, config.context_length // 4)

    # --- prompts and tokens ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return self.tokenizer.count(text)

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> str:
        return render_chat_prompt(self.config.chat_template, messages)

    def _prompt_ids(self, prompt: str, param: str) -> list[int]:
        token_ids = self.tokenizer.encode(prompt)
        if len(token_ids) > self.config.context_length:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.config.context_length} tokens. However, your "
                f"{param} resulted in {len(token_ids)} tokens. Please reduce the length of the {param}.",
                param=param,
            )
        return token_ids

    def _check_options(self, options: SamplingOptions) -> None:
        if not 1 <= options.max_tokens <= self.config.max_output_tokens:
            message = f"max_tokens must be between 1 and {self.config.max_output_tokens} for this model"
            raise InvalidRequestError(message, param="max_tokens")
        if not 0.0 <= options.temperature <= MAX_TEMPERATURE:
            raise InvalidRequestError(
                f"temperature must be between 0 and {MAX_TEMPERATURE:g}", param="temperature"
            )
        if not 0.0 < options.top_p <= 1.0:
            raise InvalidRequestError("top_p must be greater than 0 and at most 1", param="top_p")
        if options.seed is not None and not -(2**63) <= options.seed < 2**64:  # what torch's generator takes
            raise InvalidRequestError("seed must be a 64-bit integer", param="seed")
        if len(options.stop) > MAX_STOP_SEQUENCES or not all(
            0 < len(sequence) <= MAX_STOP_SEQUENCE_CHARS for sequence in options.stop
        ):
            limits = f"{MAX_STOP_SEQUENCES} strings of 1 to {MAX_STOP_SEQUENCE_CHARS} characters"
            message = f"stop must be up to {limits}"
            raise InvalidRequestError(message, param="stop")

    # --- completions ----------------------------------------------------------------------------------

    def start_completion(
        self, prompt: str, options: SamplingOptions, prompt_param: str = "prompt"
    ) -> Iterator[TextDelta | Completion]:
        """Checks the request now (raising before anything is generated), then returns a stream of TextDelta
        pieces ending with one Completion that holds the whole text, the finish reason and the usage."""
        self._check_options(options)
        prompt_ids = self._prompt_ids(prompt, prompt_param)
        seed = options.seed if options.seed is not None else secrets.randbits(63)
        return self._generate(prompt_ids, options, seed)

    def complete(self, prompt: str, options: SamplingOptions, prompt_param: str = "prompt") -> Completion:
        for event in self.start_completion(prompt, options, prompt_param):
            if isinstance(event, Completion):
                return event
        raise AssertionError("a completion stream ended without its Completion")

    def _generate(
        self, prompt_ids: list[int], options: SamplingOptions, seed: int
    ) -> Iterator[TextDelta | Completion]:
        generator = torch.Generator().manual_seed(seed)
        stop_filter = StopSequenceFilter(options.stop)
        # An empty prompt starts the model where a new document would start: after an end-of-text token.
        sequence = list(prompt_ids) or [self.tokenizer.end_of_text_id]
        completion_tokens = 0
        finish_reason = "length"
        with torch.inference_mode():
            logits, cache = self._next_logits(sequence, None)
            while completion_tokens < options.max_tokens:
                token_id = self._sample(logits, options, generator)
                completion_tokens += 1
                if token_id == self.tokenizer.end_of_text_id:
                    finish_reason = "stop"
                    break
                released = stop_filter.push(self.tokenizer.decode_one(token_id))
                if released:
                    yield TextDelta(released)
                if stop_filter.stopped:
                    finish_reason = "stop"
                    break
                sequence.append(token_id)
                if completion_tokens < options.max_tokens:
                    logits, cache = self._next_logits(sequence, cache)
        rest = stop_filter.flush()
        if rest:
            yield TextDelta(rest)
        usage = Usage(prompt_tokens=len(prompt_ids), completion_tokens=completion_tokens)
        yield Completion(text=stop_filter.text, finish_reason=finish_reason, usage=usage, seed=seed)

    def _next_logits(
        self, sequence: list[int], cache: KeyValueCache | None
    ) -> tuple[torch.Tensor, KeyValueCache | None]:
        """Logits for the token after sequence. cache, when given, holds the keys and values of the tokens
        just before sequence's last one (a suffix of sequence[:-1])."""
        context_length = self.config.context_length
        cached = 0 if cache is None else cache[0][0].shape[2]
        if cache is not None and cached < context_length:
            hidden, cache = self.network.hidden_states(torch.tensor([sequence[-1:]]), cache)
        else:
            # First call, or the context is full: start afresh from the last tokens. Past the context the
            # window slides a quarter of it at a time: the model always sees the last 3/4 to all of a context,
            # and a full recomputation happens once every context_length / 4 tokens, not for every token.
            window = context_length if len(sequence) <= context_length else context_length - self.window_slide
            hidden, cache = self.network.hidden_states(torch.tensor([sequence[-window:]]))
        return self.network.logits(hidden[0, -1]), cache

    def _sample(self, logits: torch.Tensor, options: SamplingOptions, generator: torch.Generator) -> int:
        logits = logits.clone()
        logits[self.tokenizer.unknown_id] = float("-inf")  # <unk> stands for text the model never saw
        if options.temperature == 0.0:
            return int(torch.argmax(logits))
        probabilities = functional.softmax(logits / options.temperature, dim=-1)
        if options.top_p < 1.0:
            sorted_probabilities, order = torch.sort(probabilities, descending=True)
            # Keep the most likely tokens until their mass reaches top_p (always at least the first).
            outside = torch.cumsum(sorted_probabilities, dim=0) - sorted_probabilities >= options.top_p
            sorted_probabilities[outside] = 0.0
            probabilities = torch.zeros_like(probabilities).scatter(0, order, sorted_probabilities)
        return int(torch.multinomial(probabilities, 1, generator=generator))

    # --- embeddings -----------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """One vector per text: the mean of the final hidden states over its tokens, L2-normalised."""
        if not 1 <= len(texts) <= MAX_EMBEDDING_INPUTS:
            raise InvalidRequestError(f"input must hold 1 to {MAX_EMBEDDING_INPUTS} texts", param="input")
        token_lists = []
        for text in texts:
            if not text:
                raise InvalidRequestError("input texts must not be empty", param="input")
            token_lists.append(self._prompt_ids(text, "input"))
        vectors = []
        with torch.inference_mode():
            for token_ids in token_lists:
                hidden, _ = self.network.hidden_states(torch.tensor([token_ids]))
                mean = hidden[0].mean(dim=0)
                vectors.append((mean / mean.norm().clamp_min(1e-12)).tolist())
        usage = Usage(prompt_tokens=sum(len(ids) for ids in token_lists), completion_tokens=0)
        return Embeddings(vectors=vectors, usage=usage)


def load_model(model_dir: str | Path, expected_sha256: dict[str, str] | None) -> LoadedModel:
    """Loads model_dir after checking every artifact's SHA-256 (ArtifactHashMismatchError on a mismatch).

    expected_sha256: {"config.json": hex, "model.safetensors": hex}; None skips the check (development only).
    """
    blobs, artifact_sha256 = read_artifacts(Path(model_dir), expected_sha256)
    try:
        raw_config = json.loads(blobs[CONFIG_FILE].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{CONFIG_FILE} is not JSON: {error}") from error
    config = parse_config(raw_config)
    try:
        tensors = load_safetensors(blobs[WEIGHTS_FILE])
    except Exception as error:  # safetensors raises its own error types for a corrupt file
        raise ModelFormatError(f"{WEIGHTS_FILE} is not a valid safetensors file: {error}") from error

    network = CharTransformer(config.hyperparameters, config.vocabulary_size, config.context_length)
    expected_shapes = {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}
    actual_shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if expected_shapes != actual_shapes:
        missing = sorted(set(expected_shapes) - set(actual_shapes))[:5]
        unexpected = sorted(set(actual_shapes) - set(expected_shapes))[:5]
        wrong = sorted(
            n for n in set(expected_shapes) & set(actual_shapes) if expected_shapes[n] != actual_shapes[n]
        )
        raise ModelFormatError(
            f"{WEIGHTS_FILE} does not match config.json's {config.architecture}: "
            f"missing {missing}, unexpected {unexpected}, wrong shape {wrong[:5]}"
        )
    if any(tensor.dtype not in LOADABLE_DTYPES for tensor in tensors.values()):
        raise ModelFormatError(f"{WEIGHTS_FILE} tensors must be F32, F16 or BF16")
    network.load_state_dict({name: tensor.to(torch.float32) for name, tensor in tensors.items()}, strict=True)
    network.eval()
    return LoadedModel(config, network, artifact_sha256)
