"""The model directory format (README.md, "Model directory format"): config.json parsed and checked.

Pure: takes the parsed JSON, returns a ModelConfig or raises ModelFormatError naming the field.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpumesh_models.errors import ModelFormatError

FORMAT_VERSION = "gpumesh-model/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Every file of a model directory, in the order they are hashed and listed.
ARTIFACT_FILES = (CONFIG_FILE, WEIGHTS_FILE)

TASKS = ("chat", "completion", "embeddings")
ARCHITECTURES = ("char-transformer",)
UNKNOWN_TOKEN = "<unk>"
END_OF_TEXT_TOKEN = "<eot>"
CHAT_ROLES = ("system", "user", "assistant")

# Bounds on what a config may ask for, so a hostile or corrupt config cannot make a replica allocate
# without limit before a single request arrives.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_WEIGHTS_BYTES = 2 * 1024 * 1024 * 1024
MAX_VOCABULARY_SIZE = 65_536
MAX_CONTEXT_LENGTH = 65_536
MAX_OUTPUT_TOKENS = 65_536
MAX_LAYERS = 128
MAX_D_MODEL = 16_384
MAX_CHAT_TEMPLATE_CHARS = 1024
MAX_CHAT_STOP_SEQUENCES = 4

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")


@dataclass(frozen=True)
class Hyperparameters:
    layers: int
    d_model: int
    heads: int
    d_ff: int


@dataclass(frozen=True)
class ChatTemplate:
    """How OpenAI-style messages become one prompt string (see chat_template.py)."""

    turn: str  # holds "{role}" and "{content}"
    role_names: Mapping[str, str]  # OpenAI role -> the name written into the prompt
    generation_prompt: str  # appended after the last message; the model continues from here
    stop: tuple[str, ...]  # stop sequences every chat completion gets, on top of the caller's


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: str
    tasks: tuple[str, ...]
    architecture: str
    hyperparameters: Hyperparameters
    special_tokens: tuple[str, ...]
    characters: str
    context_length: int
    max_output_tokens: int
    license: str
    chat_template: ChatTemplate

    @property
    def vocabulary_size(self) -> int:
        return len(self.special_tokens) + len(self.characters)

    @property
    def embedding_dimensions(self) -> int:
        return self.hyperparameters.d_model


def _field(container: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = container.get(key)
    # bool is an int in Python; a config saying `"layers": true` is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelFormatError(f"{CONFIG_FILE}: {where}{key} must be a {kind.__name__}", param=where + key)
    return value


def _bounded_int(container: Mapping[str, Any], key: str, maximum: int, where: str = "") -> int:
    value = _field(container, key, int, where)
    if not 1 <= value <= maximum:
        raise ModelFormatError(f"{CONFIG_FILE}: {where}{key} must be in [1, {maximum}]", param=where + key)
    return value


def _parse_hyperparameters(raw: Mapping[str, Any]) -> Hyperparameters:
    section = _field(raw, "hyperparameters", dict, "")
    where = "hyperparameters."
    hyperparameters = Hyperparameters(
        layers=_bounded_int(section, "layers", MAX_LAYERS, where),
        d_model=_bounded_int(section, "d_model", MAX_D_MODEL, where),
        heads=_bounded_int(section, "heads", MAX_D_MODEL, where),
        d_ff=_bounded_int(section, "d_ff", 4 * MAX_D_MODEL, where),
    )
    if hyperparameters.d_model % hyperparameters.heads != 0:
        raise ModelFormatError(f"{CONFIG_FILE}: d_model must be a multiple of heads", param=where + "heads")
    return hyperparameters


def _parse_vocabulary(raw: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    section = _field(raw, "vocabulary", dict, "")
    special_tokens = _field(section, "special_tokens", list, "vocabulary.")
    characters = _field(section, "characters", str, "vocabulary.")
    if not all(isinstance(token, str) and len(token) > 1 for token in special_tokens):
        # Longer than one character, so a special token can never be mistaken for a character of text.
        raise ModelFormatError(f"{CONFIG_FILE}: vocabulary.special_tokens must be strings of 2+ characters")
    for required in (UNKNOWN_TOKEN, END_OF_TEXT_TOKEN):
        if required not in special_tokens:
            raise ModelFormatError(f"{CONFIG_FILE}: vocabulary.special_tokens must include {required}")
    if len(set(special_tokens)) != len(special_tokens) or len(set(characters)) != len(characters):
        raise ModelFormatError(f"{CONFIG_FILE}: vocabulary has duplicate entries")
    if not 0 < len(special_tokens) + len(characters) <= MAX_VOCABULARY_SIZE:
        raise ModelFormatError(f"{CONFIG_FILE}: vocabulary must hold 1 to {MAX_VOCABULARY_SIZE} tokens")
    return tuple(special_tokens), characters


def _parse_chat_template(raw: Mapping[str, Any]) -> ChatTemplate:
    section = _field(raw, "chat_template", dict, "")
    where = "chat_template."
    turn = _field(section, "turn", str, where)
    generation_prompt = _field(section, "generation_prompt", str, where)
    role_names = _field(section, "role_names", dict, where)
    stop = _field(section, "stop", list, where)
    if "{role}" not in turn or "{content}" not in turn or len(turn) > MAX_CHAT_TEMPLATE_CHARS:
        raise ModelFormatError(f"{CONFIG_FILE}: chat_template.turn must hold {{role}} and {{content}}")
    if sorted(role_names) != sorted(CHAT_ROLES) or not all(isinstance(v, str) for v in role_names.values()):
        raise ModelFormatError(
            f"{CONFIG_FILE}: chat_template.role_names must name exactly {list(CHAT_ROLES)}"
        )
    if len(stop) > MAX_CHAT_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in stop):
        raise ModelFormatError(f"{CONFIG_FILE}: chat_template.stop must be up to 4 non-empty strings")
    return ChatTemplate(
        turn=turn, role_names=dict(role_names), generation_prompt=generation_prompt, stop=tuple(stop)
    )


def parse_config(raw: Any) -> ModelConfig:
    """Checks a parsed config.json; raises ModelFormatError naming the first bad field."""
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{CONFIG_FILE} must hold a JSON object")
    if raw.get("format") != FORMAT_VERSION:
        raise ModelFormatError(f"{CONFIG_FILE}: format must be {FORMAT_VERSION!r}", param="format")
    name = _field(raw, "name", str, "")
    version = _field(raw, "version", str, "")
    if not NAME.match(name):
        raise ModelFormatError(f"{CONFIG_FILE}: name must match {NAME.pattern}", param="name")
    if not VERSION.match(version):
        raise ModelFormatError(f"{CONFIG_FILE}: version must match {VERSION.pattern}", param="version")
    tasks = _field(raw, "tasks", list, "")
    if not tasks or not all(task in TASKS for task in tasks) or len(set(tasks)) != len(tasks):
        raise ModelFormatError(
            f"{CONFIG_FILE}: tasks must be a non-empty subset of {list(TASKS)}", param="tasks"
        )
    architecture = _field(raw, "architecture", str, "")
    if architecture not in ARCHITECTURES:
        supported = list(ARCHITECTURES)
        message = f"{CONFIG_FILE}: architecture {architecture!r} is not supported (supported: {supported})"
        raise ModelFormatError(message, param="architecture")
    special_tokens, characters = _parse_vocabulary(raw)
    license_name = _field(raw, "license", str, "")
    if not license_name:
        raise ModelFormatError(f"{CONFIG_FILE}: license must name the weights' license", param="license")
    return ModelConfig(
        name=name,
        version=version,
        tasks=tuple(tasks),
        architecture=architecture,
        hyperparameters=_parse_hyperparameters(raw),
        special_tokens=special_tokens,
        characters=characters,
        context_length=_bounded_int(raw, "context_length", MAX_CONTEXT_LENGTH),
        max_output_tokens=_bounded_int(raw, "max_output_tokens", MAX_OUTPUT_TOKENS),
        license=license_name,
        chat_template=_parse_chat_template(raw),
    )
