"""Figures for the model runtime on one CPU thread (no Ray): load time and generation speed.

  .venv/bin/python python/gpumesh_models/bench_runtime.py [--model-dir python/models/tiny-chat] [--runs 5]

Prints one JSON line: loadMsP50 (hash check included), tokensPerSecondP50 for a 200-token completion that
stays within the context and for a 512-token one that slides past it, and embedMsP50 for a 100-character
text.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from gpumesh_models.artifacts import parse_sha256_file  # noqa: E402
from gpumesh_models.runtime import SamplingOptions, load_model  # noqa: E402

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "tiny-chat"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sums = parse_sha256_file(args.model_dir.parent.joinpath(args.model_dir.name + ".sha256").read_text())

    load_ms = []
    for _ in range(args.runs):
        started = time.perf_counter()
        model = load_model(args.model_dir, sums)
        load_ms.append((time.perf_counter() - started) * 1000)

    def tokens_per_second(max_tokens: int) -> float:
        rates = []
        for run in range(args.runs):
            options = SamplingOptions(max_tokens=max_tokens, temperature=1.0, seed=run)
            started = time.perf_counter()
            completion = model.complete("", options)  # an empty prompt: the whole budget is generated text
            rates.append(completion.usage.completion_tokens / (time.perf_counter() - started))
        return statistics.median(rates)

    embed_ms = []
    text = "The North Wind and the Sun disputed as to which was the most powerful, and agreed that he..."[
        :100
    ]
    for _ in range(args.runs):
        started = time.perf_counter()
        model.embed([text])
        embed_ms.append((time.perf_counter() - started) * 1000)

    figures = {
        "loadMsP50": round(statistics.median(load_ms), 1),
        "tokensPerSecondP50Within256": round(tokens_per_second(200)),
        "tokensPerSecondP50Sliding512": round(tokens_per_second(model.config.max_output_tokens)),
        "embedMsP50": round(statistics.median(embed_ms), 1),
        "weightsBytes": (args.model_dir / "model.safetensors").stat().st_size,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
