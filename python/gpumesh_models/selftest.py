"""Quick self-test of the model runtime (no Ray): loads a model, checks token counting, hash refusal, the
key/value cache, determinism, streaming, stop sequences, the context limit and embeddings. A few seconds
on one core.

  .venv/bin/python python/gpumesh_models/selftest.py [--model-dir python/models/tiny-chat]

Prints one JSON line: {"ok": true, "checks": N, "seconds": S, "sample": "..."} and exits 0, or
{"ok": false, "error": "..."} and exits 1.
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from gpumesh_models.artifacts import parse_sha256_file  # noqa: E402
from gpumesh_models.chat_template import ChatMessage  # noqa: E402
from gpumesh_models.errors import (  # noqa: E402
    ArtifactHashMismatchError,
    ContextLengthExceededError,
    InvalidRequestError,
)
from gpumesh_models.runtime import LoadedModel, SamplingOptions, TextDelta, load_model  # noqa: E402

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "tiny-chat"


def expect_error(error_type: type, action: Callable[[], object]) -> Exception:
    try:
        action()
    except error_type as error:
        return error
    raise AssertionError(f"expected {error_type.__name__}")


def check_tokens(model: LoadedModel) -> None:
    assert model.count_tokens("Hello, world!") == 13, "13 vocabulary characters are 13 tokens"
    assert model.count_tokens("") == 0
    # A tab and an accented letter are outside the vocabulary: one <unk> token each.
    token_ids = model.tokenizer.encode("caf\u00e9\t!")
    assert len(token_ids) == 6 and token_ids[3] == token_ids[4] == model.tokenizer.unknown_id, token_ids
    prompt = model.chat_prompt([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    assert prompt == "System: Be brief.\nUser: Hi\nAssistant:", repr(prompt)
    assert model.count_tokens(prompt) == 37


def check_hash_refusal(model_dir: Path, sums: dict[str, str]) -> None:
    wrong = dict(sums, **{"model.safetensors": "0" * 64})
    error = expect_error(ArtifactHashMismatchError, lambda: load_model(model_dir, wrong))
    assert error.code == "artifact_hash_mismatch" and "model.safetensors" in error.message, error.message
    expect_error(ValueError, lambda: load_model(model_dir, {"config.json": sums["config.json"]}))


def check_cache(model: LoadedModel) -> None:
    """Generation feeds one token at a time through the key/value cache: it must match a full pass."""
    token_ids = torch.tensor([model.tokenizer.encode("Slow but steady wins the race.")])
    with torch.inference_mode():
        full, _ = model.network.hidden_states(token_ids)
        prefix, cache = model.network.hidden_states(token_ids[:, :10])
        steps = [prefix]
        for position in range(10, token_ids.shape[1]):
            step, cache = model.network.hidden_states(token_ids[:, position : position + 1], cache)
            steps.append(step)
    assert torch.allclose(full, torch.cat(steps, dim=1), atol=1e-4), (
        "cached decoding differs from a full pass"
    )


def check_generation(model: LoadedModel) -> str:
    options = SamplingOptions(max_tokens=48, temperature=0.8, seed=7)
    first = model.complete("The Fox", options)
    again = model.complete("The Fox", options)
    assert first == again, "the same seed must give the same completion"
    assert first.usage.prompt_tokens == 7 and 1 <= first.usage.completion_tokens <= 48, first.usage
    assert first.finish_reason in ("stop", "length")
    assert first.finish_reason == "stop" or first.usage.completion_tokens == 48

    events = list(model.start_completion("The Fox", options))
    streamed = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert streamed == first.text and events[-1] == first, "a stream must return what complete() returns"

    # A stop sequence made of the completion's own first two characters ends it at once.
    stop = first.text[:2]
    if len(stop) == 2:
        stopped = model.complete(
            "The Fox", SamplingOptions(max_tokens=48, temperature=0.8, seed=7, stop=(stop,))
        )
        assert stopped.text == "" and stopped.finish_reason == "stop", stopped

    greedy = SamplingOptions(max_tokens=16, temperature=0.0)
    assert model.complete("Once upon a time", greedy).text == model.complete("Once upon a time", greedy).text

    too_long = "a" * (model.config.context_length + 1)
    error = expect_error(ContextLengthExceededError, lambda: model.complete(too_long, greedy))
    assert error.code == "context_length_exceeded" and error.param == "prompt"
    full = model.complete("a" * model.config.context_length, SamplingOptions(max_tokens=2, seed=1))
    assert full.usage.prompt_tokens == model.config.context_length, "a prompt may fill the whole context"
    expect_error(InvalidRequestError, lambda: model.complete("x", SamplingOptions(max_tokens=0)))
    expect_error(
        InvalidRequestError, lambda: model.complete("x", SamplingOptions(max_tokens=4, temperature=3.0))
    )
    return first.text


def check_embeddings(model: LoadedModel) -> None:
    embeddings = model.embed(["The Fox and the Grapes", "Sonnet 18"])
    assert embeddings.usage.prompt_tokens == 22 + 9 and embeddings.usage.completion_tokens == 0
    assert len(embeddings.vectors) == 2
    for vector in embeddings.vectors:
        assert len(vector) == model.config.embedding_dimensions
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    expect_error(InvalidRequestError, lambda: model.embed([""]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--expected-sha256-file", type=Path, help="default: <model-dir>.sha256")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        sums_file = args.expected_sha256_file or args.model_dir.parent / (args.model_dir.name + ".sha256")
        sums = parse_sha256_file(sums_file.read_text(encoding="utf-8"))
        model = load_model(args.model_dir, sums)
        check_tokens(model)
        check_hash_refusal(args.model_dir, sums)
        check_cache(model)
        sample = check_generation(model)
        check_embeddings(model)
    except Exception as error:
        print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}))
        return 1
    print(
        json.dumps(
            {"ok": True, "checks": 5, "seconds": round(time.perf_counter() - started, 2), "sample": sample}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
