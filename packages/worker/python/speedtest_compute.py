"""gpumesh compute speedtest: prints one JSON object on stdout.

With torch and CUDA: per GPU, dense matmul TFLOPS at fp32, tf32, fp16 and bf16 (where the card supports
them), device-to-device copy bandwidth and free VRAM. Otherwise the same on the CPU with numpy (fp32 and fp64
matmul, np.copyto bandwidth, available RAM), sized to finish in a few seconds on two cores.

Output: {"backend": "torch-cuda" | "numpy-cpu", "python": "3.11.7", "devices": [...], "durationMs": ...}
Each device: {"index", "kind": "gpu" | "cpu", "name", "matmulTflops": {precision: tflops}, "matmulSize",
"memoryBandwidthGBps", "usableMemoryMiB"}. Copy bandwidth counts the bytes read plus the bytes written.
On failure: {"error": "..."} on stdout and exit status 2.
"""

import json
import os
import platform
import sys
import time

MIB = 1024 * 1024


def timed_repeats(run, sync, min_seconds, max_repeats):
    """Median seconds of one run(): one warm-up, then repeats until min_seconds or max_repeats."""
    run()
    sync()
    samples = []
    started = time.perf_counter()
    while len(samples) < max_repeats and (len(samples) < 3 or time.perf_counter() - started < min_seconds):
        begin = time.perf_counter()
        run()
        sync()
        samples.append(time.perf_counter() - begin)
    samples.sort()
    return samples[len(samples) // 2]


def torch_cuda_devices(torch):
    devices = []
    for index in range(torch.cuda.device_count()):
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        props = torch.cuda.get_device_properties(index)
        major = props.major

        def sync():
            torch.cuda.synchronize(device)

        size = 8192
        batch = 10
        flops = 2.0 * size**3
        tflops = {}
        precisions = [("fp32", torch.float32, False), ("fp16", torch.float16, None)]
        if major >= 8:
            precisions.append(("tf32", torch.float32, True))
            precisions.append(("bf16", torch.bfloat16, None))
        previous_tf32 = torch.backends.cuda.matmul.allow_tf32
        for name, dtype, allow_tf32 in precisions:
            if allow_tf32 is not None:
                torch.backends.cuda.matmul.allow_tf32 = allow_tf32
            try:
                a = torch.randn(size, size, device=device, dtype=dtype)
                b = torch.randn(size, size, device=device, dtype=dtype)
                c = torch.empty(size, size, device=device, dtype=dtype)

                # several products between synchronisations, so the sync's own cost is spread thin
                def run():
                    for _ in range(batch):
                        torch.matmul(a, b, out=c)

                seconds = timed_repeats(run, sync, 1.0, 20)
                tflops[name] = round(batch * flops / seconds / 1e12, 3)
                del a, b, c
            except RuntimeError:
                # out of memory or an unsupported kernel: leave the precision out
                pass
            finally:
                torch.backends.cuda.matmul.allow_tf32 = previous_tf32
        torch.cuda.empty_cache()

        free_bytes, _total = torch.cuda.mem_get_info(device)
        copy_bytes = min(1024 * MIB, free_bytes // 4)
        source = torch.empty(copy_bytes, dtype=torch.uint8, device=device)
        target = torch.empty_like(source)
        seconds = timed_repeats(lambda: target.copy_(source), sync, 0.5, 50)
        bandwidth = 2.0 * copy_bytes / seconds / 1e9
        del source, target
        torch.cuda.empty_cache()
        free_bytes, _total = torch.cuda.mem_get_info(device)

        devices.append(
            {
                "index": index,
                "kind": "gpu",
                "name": props.name,
                "matmulTflops": tflops,
                "matmulSize": size,
                "memoryBandwidthGBps": round(bandwidth, 1),
                "usableMemoryMiB": int(free_bytes // MIB),
                "computeCapability": f"{props.major}.{props.minor}",
                "totalMemoryMiB": int(props.total_memory // MIB),
            }
        )
    return devices


def available_ram_bytes():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def cpu_name():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def numpy_cpu_devices(np):
    def sync():
        pass

    rng = np.random.default_rng(0)
    size = 1024
    flops = 2.0 * size**3
    tflops = {}
    for name, dtype in (("fp32", np.float32), ("fp64", np.float64)):
        a = rng.standard_normal((size, size)).astype(dtype)
        b = rng.standard_normal((size, size)).astype(dtype)
        out = np.empty((size, size), dtype=dtype)
        seconds = timed_repeats(lambda: np.matmul(a, b, out=out), sync, 0.6, 40)
        tflops[name] = round(flops / seconds / 1e12, 6)

    copy_bytes = min(256 * MIB, max(16 * MIB, available_ram_bytes() // 8))
    source = np.ones(copy_bytes, dtype=np.uint8)
    target = np.empty_like(source)
    seconds = timed_repeats(lambda: np.copyto(target, source), sync, 0.6, 20)
    bandwidth = 2.0 * copy_bytes / seconds / 1e9
    del source, target

    return [
        {
            "index": 0,
            "kind": "cpu",
            "name": cpu_name(),
            "matmulTflops": tflops,
            "matmulSize": size,
            "memoryBandwidthGBps": round(bandwidth, 2),
            "usableMemoryMiB": int(available_ram_bytes() // MIB),
            "logicalCpus": os.cpu_count() or 1,
        }
    ]


def main():
    started = time.perf_counter()
    result = {"python": platform.python_version()}
    torch = None
    if os.environ.get("GPUMESH_SPEEDTEST_FORCE_CPU") != "1":
        try:
            import torch as torch_module

            if torch_module.cuda.is_available() and torch_module.cuda.device_count() > 0:
                torch = torch_module
        except ImportError:
            torch = None
    if torch is not None:
        result["backend"] = "torch-cuda"
        result["torch"] = torch.__version__
        result["devices"] = torch_cuda_devices(torch)
    else:
        try:
            import numpy as np
        except ImportError:
            print(json.dumps({"error": "neither torch with CUDA nor numpy can be imported by " + sys.executable}))
            return 2
        result["backend"] = "numpy-cpu"
        result["numpy"] = np.__version__
        result["devices"] = numpy_cpu_devices(np)
    result["durationMs"] = round((time.perf_counter() - started) * 1000, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # report, never a bare traceback: the caller parses stdout
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(2)
