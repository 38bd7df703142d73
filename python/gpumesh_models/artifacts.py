"""Reads a model directory's artifacts and checks them against expected SHA-256 hashes.

Each file is read once into memory and hashed, and the same bytes are parsed afterwards, so a file swapped
on disk between the check and the load cannot slip through.
"""

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from gpumesh_models.errors import ArtifactHashMismatchError, ModelFormatError
from gpumesh_models.model_format import ARTIFACT_FILES, CONFIG_FILE, MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_BYTES_BY_ARTIFACT = {CONFIG_FILE: MAX_CONFIG_BYTES}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_expected_sha256(expected_sha256: Mapping[str, str]) -> dict[str, str]:
    """Normalises (lowercase) and checks the expected hashes: exactly one 64-hex-digit hash per artifact.

    Raises ValueError: a wrong expectation is the caller's bug, not a property of the model.
    """
    unknown = sorted(set(expected_sha256) - set(ARTIFACT_FILES))
    missing = [name for name in ARTIFACT_FILES if name not in expected_sha256]
    if unknown:
        raise ValueError(
            f"expected SHA-256 given for unknown artifacts {unknown}; artifacts are {list(ARTIFACT_FILES)}"
        )
    if missing:
        raise ValueError(f"no expected SHA-256 for {missing}: every artifact must be verified")
    normalised = {name: digest.strip().lower() for name, digest in expected_sha256.items()}
    for name, digest in normalised.items():
        if not SHA256_HEX.match(digest):
            raise ValueError(f"expected SHA-256 of {name} is not 64 hex digits: {digest!r}")
    return normalised


def read_artifacts(
    model_dir: Path, expected_sha256: Mapping[str, str] | None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every artifact's bytes and SHA-256; with expected_sha256, refuses (ArtifactHashMismatchError) any that
    differ.

    expected_sha256=None skips the check: for development only, never for a model from the store.
    """
    expected = None if expected_sha256 is None else check_expected_sha256(expected_sha256)
    blobs = {}
    sums = {}
    for name in ARTIFACT_FILES:
        path = model_dir / name
        if not path.is_file():
            raise ModelFormatError(f"{path} is missing: a model directory holds {list(ARTIFACT_FILES)}")
        limit = MAX_BYTES_BY_ARTIFACT.get(name, MAX_WEIGHTS_BYTES)
        if path.stat().st_size > limit:
            raise ModelFormatError(f"{path} is larger than {limit} bytes")
        data = path.read_bytes()
        actual = sha256_hex(data)
        if expected is not None and actual != expected[name]:
            raise ArtifactHashMismatchError(
                f"{path}: SHA-256 is {actual}, expected {expected[name]}; refusing to load the model"
            )
        blobs[name] = data
        sums[name] = actual
    return blobs, sums


def parse_sha256_file(text: str) -> dict[str, str]:
    """Parses `sha256sum` output ("<hex>  <name>" lines, names relative to the model directory)."""
    sums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"line {number} is not '<sha256>  <file>': {line!r}")
        digest, name = parts[0], parts[1].strip().lstrip("*")  # '*' marks binary mode in sha256sum output
        sums[Path(name).name] = digest
    return sums
