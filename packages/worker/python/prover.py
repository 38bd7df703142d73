"""gpumesh proof-of-compute prover.

Reads JSON lines on stdin, answers JSON lines on stdout:
  {"seedWordA": u32, "seedWordB": u32, "n": N}   ->  {"root": hex, "computeMs": x, "backend": "..."}
  {"rows": [i, ...]}                              ->  {"rows": [{"row": i, "values": base64(int32 LE), "proof": [hex, ...]}]}
It holds C = A·B between the two, and exits when stdin closes.

The matrices and the Merkle tree follow packages/verification/src/matrix.ts and merkle.ts exactly:
  mix32(x) = lowbias32; entry(seed, n, r, c) = (mix32(seed ^ mix32(r*n + c)) mod 7) - 3
  leaf(i) = sha256(0x00 | u32le(i) | row as int32 LE); node(l, r) = sha256(0x01 | l | r); odd nodes carry up.
Entries are in [-3, 3], so every partial sum is an integer below 2^24 and fp32 arithmetic is exact.
"""

import base64
import hashlib
import json
import struct
import sys
import time

import numpy as np

MASK = 0xFFFFFFFF


def mix32_numpy(x):
    x = x.astype(np.uint32, copy=False)
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    x = x ^ (x >> np.uint32(16))
    return x


def matrix_numpy(seed_word, n, rows=None):
    """Rows [start, stop) of the n×n matrix for seed_word, as float32."""
    start, stop = rows if rows else (0, n)
    index = (np.arange(start * n, stop * n, dtype=np.uint64) & MASK).astype(np.uint32)
    values = (mix32_numpy(np.uint32(seed_word) ^ mix32_numpy(index)) % np.uint32(7)).astype(np.int8) - 3
    return values.reshape(stop - start, n).astype(np.float32)


def mix32_torch(x):
    # int64 arithmetic masked to 32 bits: torch has no general uint32 multiply
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK
    x = x ^ (x >> 16)
    return x


def product_torch(torch, device, seed_a, seed_b, n):
    def matrix(seed_word):
        out = torch.empty((n, n), dtype=torch.float32, device=device)
        block = max(1, (1 << 24) // n)
        for start in range(0, n, block):
            stop = min(n, start + block)
            index = torch.arange(start * n, stop * n, dtype=torch.int64, device=device) & MASK
            values = (mix32_torch(seed_word ^ mix32_torch(index)) % 7) - 3
            out[start:stop] = values.reshape(stop - start, n).to(torch.float32)
        return out

    a = matrix(seed_a)
    b = matrix(seed_b)
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    c = torch.matmul(a, b)
    torch.cuda.synchronize(device)
    compute_ms = (time.perf_counter() - started) * 1000
    return c.round().to(torch.int32).cpu().numpy(), compute_ms


def product_numpy(seed_a, seed_b, n):
    a = matrix_numpy(seed_a, n)
    b = matrix_numpy(seed_b, n)
    started = time.perf_counter()
    c = a @ b
    compute_ms = (time.perf_counter() - started) * 1000
    return np.rint(c).astype(np.int32), compute_ms


def compute_product(seed_a, seed_b, n, device_request):
    if device_request != "cpu":
        try:
            import torch  # noqa: PLC0415 (optional dependency, present on GPU machines)

            if torch.cuda.is_available():
                torch.backends.cuda.matmul.allow_tf32 = True  # inputs in [-3, 3] are exact in tf32
                device = torch.device(device_request if device_request.startswith("cuda") else "cuda:0")
                c, compute_ms = product_torch(torch, device, seed_a, seed_b, n)
                return c, compute_ms, f"torch-{device}"
        except ImportError:
            pass
    c, compute_ms = product_numpy(seed_a, seed_b, n)
    return c, compute_ms, "numpy-cpu"


def leaf_hash(index, row):
    return hashlib.sha256(b"\x00" + struct.pack("<I", index) + row.astype("<i4", copy=False).tobytes()).digest()


def build_tree(leaves):
    levels = [leaves]
    while len(levels[-1]) > 1:
        level = levels[-1]
        nxt = []
        for i in range(0, len(level), 2):
            if i + 1 < len(level):
                nxt.append(hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest())
            else:
                nxt.append(level[i])
        levels.append(nxt)
    return levels


def proof_for(levels, index):
    proof = []
    position = index
    for depth in range(len(levels) - 1):
        level = levels[depth]
        sibling = position ^ 1
        if sibling < len(level):
            proof.append(level[sibling].hex())
        position >>= 1
    return proof


def answer(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    device_request = sys.argv[1] if len(sys.argv) > 1 else "auto"
    product = None
    levels = None
    for line in sys.stdin:
        request = json.loads(line)
        if "n" in request:
            n = int(request["n"])
            started = time.perf_counter()
            cpu_started = time.process_time()
            product, compute_ms, backend = compute_product(int(request["seedWordA"]), int(request["seedWordB"]), n, device_request)
            levels = build_tree([leaf_hash(i, product[i]) for i in range(n)])
            answer(
                {
                    "root": levels[-1][0].hex(),
                    "computeMs": compute_ms,
                    "totalMs": (time.perf_counter() - started) * 1000,
                    "cpuMs": (time.process_time() - cpu_started) * 1000,
                    "backend": backend,
                }
            )
        elif "rows" in request:
            if product is None:
                answer({"error": "no product computed yet"})
                continue
            rows = []
            for row in request["rows"]:
                values = product[int(row)].astype("<i4", copy=False).tobytes()
                rows.append({"row": int(row), "values": base64.b64encode(values).decode(), "proof": proof_for(levels, int(row))})
            answer({"rows": rows})


if __name__ == "__main__":
    main()
