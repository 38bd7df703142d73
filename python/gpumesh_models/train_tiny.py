"""Trains tiny-chat, gpumesh's own small character-level model, on the public-domain corpus beside this file.

  .venv/bin/python python/gpumesh_models/train_tiny.py --out python/models/tiny-chat [--steps 1500] [--seed 1]

Writes <out>/config.json and <out>/model.safetensors (the format in README.md) and <out>.sha256 (their
SHA-256 sums, `sha256sum -c` format, names relative to <out>). CPU only, one thread: it is meant to run
beside other work (run it under `nice`). Seeded: the same seed, steps and torch build give the same bytes.
Progress goes to stderr; the last stdout line is a JSON summary.
"""

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script (python python/gpumesh_models/train_tiny.py): make the package importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.nn import functional  # noqa: E402

from gpumesh_models.char_transformer import CharTransformer  # noqa: E402
from gpumesh_models.model_format import (  # noqa: E402
    ARTIFACT_FILES,
    CONFIG_FILE,
    END_OF_TEXT_TOKEN,
    FORMAT_VERSION,
    UNKNOWN_TOKEN,
    WEIGHTS_FILE,
    parse_config,
)
from gpumesh_models.tokenizer import CharTokenizer  # noqa: E402

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
# Newline plus printable ASCII: every character of the corpus, and of most English prompts, is one token.
CHARACTERS = "\n" + "".join(chr(code) for code in range(32, 127))
# Two blank lines end one document (a fable, a poem, a speech); the model learns <eot> there.
DOCUMENT_SEPARATOR = "\n\n\n"
VALIDATION_FRACTION = 0.05
# printWidth in .prettierrc.json: config.json is written the way prettier would format it, so
# `npm run check` (prettier --check .) passes without rewriting it and changing its hash.
JSON_LINE_WIDTH = 110


def base_config(name: str, version: str) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "name": name,
        "version": version,
        "description": "gpumesh's own tiny character-level model, trained on public-domain English text",
        "tasks": ["chat", "completion", "embeddings"],
        "architecture": "char-transformer",
        "hyperparameters": {"layers": 4, "d_model": 128, "heads": 4, "d_ff": 512},
        "vocabulary": {"special_tokens": [UNKNOWN_TOKEN, END_OF_TEXT_TOKEN], "characters": CHARACTERS},
        "context_length": 256,
        "max_output_tokens": 512,
        "chat_template": {
            "turn": "{role}: {content}\n",
            "role_names": {"system": "System", "user": "User", "assistant": "Assistant"},
            "generation_prompt": "Assistant:",
            "stop": ["\nUser:"],
        },
        "license": "Apache-2.0",
    }


def load_documents(corpus_dir: Path) -> list[str]:
    documents = []
    for path in sorted(corpus_dir.glob("*.txt")):
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        documents.extend(part.strip("\n") for part in text.split(DOCUMENT_SEPARATOR) if part.strip())
    return documents


def token_stream(documents: list[str], tokenizer: CharTokenizer, seed: int) -> torch.Tensor:
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
    tokens: list[int] = []
    for index in order:
        tokens.extend(tokenizer.encode(documents[index]))
        tokens.append(tokenizer.end_of_text_id)
    return torch.tensor(tokens, dtype=torch.long)


def sample_batch(
    tokens: torch.Tensor, batch_size: int, context_length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, len(tokens) - context_length - 1, (batch_size,), generator=generator)
    inputs = torch.stack([tokens[start : start + context_length] for start in starts.tolist()])
    targets = torch.stack([tokens[start + 1 : start + context_length + 1] for start in starts.tolist()])
    return inputs, targets


def learning_rate_at(step: int, steps: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def mean_loss(model: CharTransformer, tokens: torch.Tensor, context_length: int) -> float:
    """Loss over consecutive, non-overlapping windows of tokens (all of it, no sampling)."""
    model.eval()
    windows = (len(tokens) - 1) // context_length
    inputs = tokens[: windows * context_length].view(windows, context_length)
    targets = tokens[1 : windows * context_length + 1].view(windows, context_length)
    losses = []
    for start in range(0, windows, 16):
        logits = model(inputs[start : start + 16])
        losses.append(
            functional.cross_entropy(
                logits.flatten(0, 1), targets[start : start + 16].flatten(), reduction="sum"
            )
        )
    model.train()
    return float(torch.stack(losses).sum() / targets.numel())


def format_json(value: Any, indent: int = 0) -> str:
    """JSON as prettier prints it: objects one key a line, arrays on one line when they fit."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}  {json.dumps(key)}: {format_json(item, indent + 2)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        inline = "[" + ", ".join(format_json(item, indent + 2) for item in value) + "]"
        if len(pad) + len(inline) + 40 <= JSON_LINE_WIDTH or not value:
            return inline
        return (
            "[\n" + ",\n".join(f"{pad}  {format_json(item, indent + 2)}" for item in value) + "\n" + pad + "]"
        )
    return json.dumps(value)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--name", default="tiny-chat")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args()

    # One thread and deterministic kernels: reruns give the same weights, and training leaves the other core
    # (and whatever runs beside it) alone.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)

    config_json = base_config(args.name, args.version)
    config = parse_config(config_json)
    tokenizer = CharTokenizer.for_config(config)
    documents = load_documents(CORPUS_DIR)
    unknown = set().union(*(tokenizer.unknown_characters(document) for document in documents))
    if unknown:
        sys.exit(f"corpus has characters outside the vocabulary: {sorted(unknown)!r}")
    tokens = token_stream(documents, tokenizer, args.seed)
    split = int(len(tokens) * (1 - VALIDATION_FRACTION))
    train_tokens, validation_tokens = tokens[:split], tokens[split:]

    model = CharTransformer(
        config.hyperparameters, config.vocabulary_size, config.context_length, args.dropout
    )
    # Weight decay on matrices only; biases, norms and embeddings (tied to the output) are left alone.
    decayed = [p for n, p in model.named_parameters() if p.dim() == 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": args.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(0.9, 0.99),
    )
    batches = torch.Generator().manual_seed(args.seed + 1)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"train_tiny: {len(documents)} documents, {len(train_tokens)} training and {len(validation_tokens)} "
        f"validation tokens, {parameters} parameters, "
        f"{args.steps} steps of {args.batch_size}x{config.context_length}",
        file=sys.stderr,
    )

    started = time.perf_counter()
    recent_losses: list[float] = []
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, args.steps, args.learning_rate, args.warmup_steps)
        inputs, targets = sample_batch(train_tokens, args.batch_size, config.context_length, batches)
        loss = functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent_losses = (recent_losses + [loss.item()])[-args.log_every :]
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            elapsed = time.perf_counter() - started
            print(
                f"step {step + 1}/{args.steps}  loss {statistics.fmean(recent_losses):.3f}  {elapsed:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    training_seconds = time.perf_counter() - started

    train_loss = mean_loss(model, train_tokens, config.context_length)
    validation_loss = mean_loss(model, validation_tokens, config.context_length)
    config_json["training"] = {
        "corpus": "python/gpumesh_models/corpus (public domain; see its README.md)",
        "corpus_characters": sum(len(document) for document in documents),
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "dropout": args.dropout,
        "parameters": parameters,
        "train_loss": round(train_loss, 4),
        "validation_loss": round(validation_loss, 4),
    }

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(format_json(config_json) + "\n", encoding="utf-8")
    weights = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600; replicas may run as another user
    sums = {name: sha256_of(out / name) for name in ARTIFACT_FILES}
    sums_path = out.parent / (out.name + ".sha256")
    sums_path.write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()), encoding="utf-8")

    summary = {
        "out": str(out),
        "trainingSeconds": round(training_seconds, 1),
        "trainLoss": round(train_loss, 4),
        "validationLoss": round(validation_loss, 4),
        "parameters": parameters,
        "weightsBytes": (out / WEIGHTS_FILE).stat().st_size,
        "sha256": sums,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
