"""Runs one model from gpumesh's model store behind Ray Serve, as a child process of the worker.

  .venv/bin/python python/gpumesh_models/serve_model.py --model-dir DIR \\
      (--expected-sha256 config.json=HEX --expected-sha256 model.safetensors=HEX
       | --expected-sha256-file FILE | --skip-hash-check) \\
      [--host 127.0.0.1] [--port 8000 | 0] [--num-replicas 1 | --min-replicas 1 --max-replicas 4] \\
      [--replica-num-cpus 1] [--max-ongoing-requests 4] [--served-model-name NAME] \\
      [--ray-address ADDR | --num-cpus N --object-store-memory-bytes B --ray-temp-dir DIR \\
       --node-ip-address 127.0.0.1] \\
      [--stop-on-stdin-eof]

stdout carries only these lines, each a word and a JSON object:
  GPUMESH-SERVE-READY {"host", "port", "url", "model", "version", "sha256", "startupSeconds", "pid"}
      once the application is running and GET /health answers through Serve's HTTP proxy
  GPUMESH-SERVE-FAILED {"code", "message"}     startup failed (code: artifact_hash_mismatch,
                                               model_format_invalid, invalid_arguments, startup_timeout,
                                               startup_failed); the process exits 1
  GPUMESH-SERVE-STOPPED {}                     after a clean shutdown; the process exits 0
Logs (Ray's included) go to stderr. SIGTERM or SIGINT (or stdin's EOF with --stop-on-stdin-eof) shuts down:
without --ray-address the process started its own Ray instance and stops all of it (serve.shutdown,
ray.shutdown); with one it deletes only its application and disconnects.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

# startupSeconds counts from here, imports (Ray, torch, FastAPI: seconds on a busy machine) included.
PROCESS_STARTED = time.monotonic()

# stdout carries only our status lines. Ray's Python and C++ code may write to fd 1, so the lines go to a
# private duplicate of it and fd 1 itself (and sys.stdout) point at stderr, before Ray is even imported.
status_stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

# Run as a script: make the package importable here (Ray workers get it by value, see below).
PYTHON_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PYTHON_DIR))

import ray  # noqa: E402
from ray import serve  # noqa: E402

import gpumesh_models  # noqa: E402
from gpumesh_models.artifacts import check_expected_sha256, parse_sha256_file, read_artifacts  # noqa: E402
from gpumesh_models.errors import ModelError  # noqa: E402
from gpumesh_models.model_format import CONFIG_FILE, parse_config  # noqa: E402
from gpumesh_models.serve_app import ServeAppOptions, build_app  # noqa: E402

READY_POLL_S = 0.2
SHUTDOWN_TIMEOUT_S = 60  # then the process exits anyway, rather than hang the worker's stop
HEALTH_REQUEST_TIMEOUT_S = 5
# After ray.shutdown(), how long the processes of our Ray instance get to exit before they are killed. Ray
# 2.58's runtime env agent notices its raylet is gone, logs that it is exiting, and then hangs.
LEFTOVER_GRACE_S = 3.0


class StopRequested(Exception):
    """SIGTERM/SIGINT arrived before the application was ready: abandon startup, then clean up."""


def emit(word: str, payload: dict[str, Any]) -> None:
    status_stream.write(f"{word} {json.dumps(payload)}\n")
    status_stream.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", required=True, type=Path)
    hashes = parser.add_mutually_exclusive_group(required=True)
    hashes.add_argument(
        "--expected-sha256", action="append", metavar="FILE=HEX", help="repeat for each artifact"
    )
    hashes.add_argument(
        "--expected-sha256-file", type=Path, help="sha256sum output, names relative to --model-dir"
    )
    hashes.add_argument("--skip-hash-check", action="store_true", help="development only")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=8000, help="0 picks a free port (reported in the ready line)"
    )
    parser.add_argument("--num-replicas", type=int, default=1)
    parser.add_argument(
        "--min-replicas", type=int, help="with --max-replicas: autoscale instead of --num-replicas"
    )
    parser.add_argument("--max-replicas", type=int)
    parser.add_argument("--target-ongoing-requests", type=float, default=2.0)
    parser.add_argument("--replica-num-cpus", type=float, default=1.0)
    parser.add_argument("--max-ongoing-requests", type=int, default=4)
    parser.add_argument("--served-model-name")
    parser.add_argument("--app-name", default="gpumesh-model")
    parser.add_argument("--ray-address", help="connect to this Ray instance instead of starting one")
    parser.add_argument("--num-cpus", type=int, help="CPUs the started Ray instance offers (default: all)")
    parser.add_argument("--object-store-memory-bytes", type=int, default=128 * 1024 * 1024)
    parser.add_argument("--ray-temp-dir", help="the started Ray instance's temp dir (default Ray's)")
    parser.add_argument(
        "--node-ip-address",
        default="127.0.0.1",
        help="address the started Ray instance's own services bind to (default: loopback only)",
    )
    parser.add_argument("--ready-timeout-s", type=float, default=300)
    parser.add_argument("--stop-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    if (args.min_replicas is None) != (args.max_replicas is None):
        parser.error("--min-replicas and --max-replicas go together")
    if (
        args.min_replicas is not None
        and not 0 <= args.min_replicas <= args.max_replicas
        or args.num_replicas < 1
    ):
        parser.error("need 0 <= --min-replicas <= --max-replicas, and --num-replicas >= 1")
    return args


def expected_sha256_from(args: argparse.Namespace) -> dict[str, str] | None:
    if args.skip_hash_check:
        return None
    if args.expected_sha256_file is not None:
        return parse_sha256_file(args.expected_sha256_file.read_text(encoding="utf-8"))
    expected = {}
    for item in args.expected_sha256:
        name, separator, digest = item.partition("=")
        if not separator:
            raise ValueError(f"--expected-sha256 {item!r} is not FILE=HEX")
        expected[name] = digest
    return expected


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_health(url: str) -> None:
    """Serve reports the application running before its HTTP proxy may route to it: wait for a real answer.
    (The startup timer in main() bounds the wait.)"""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=HEALTH_REQUEST_TIMEOUT_S) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(READY_POLL_S)


def descendant_processes() -> dict[int, int]:
    """PID -> start time (clock ticks after boot) of every process below this one, from /proc."""
    children: dict[int, list[int]] = {}
    start_times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name in (...) may hold spaces
        children.setdefault(int(fields[1]), []).append(int(entry))
        start_times[int(entry)] = int(fields[19])
    found: dict[int, int] = {}
    pending = [os.getpid()]
    while pending:
        for child in children.get(pending.pop(), []):
            found[child] = start_times[child]
            pending.append(child)
    return found


def start_time_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def kill_leftovers(processes: dict[int, int]) -> None:
    """SIGKILLs those of processes (taken before ray.shutdown) still running after a grace period. The start
    time check makes sure a PID reused since is left alone."""
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    alive = dict(processes)
    while alive and time.monotonic() < deadline:
        alive = {pid: start for pid, start in alive.items() if start_time_of(pid) == start}
        time.sleep(0.1)
    for pid, start in alive.items():
        if start_time_of(pid) == start:
            print(f"serve_model: killing leftover Ray process {pid}", file=sys.stderr)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main() -> int:
    args = parse_args()
    stop = threading.Event()
    ready = threading.Event()
    startup_timed_out = threading.Event()

    def on_signal(signal_number: int, _frame: Any) -> None:
        stop.set()
        if not ready.is_set():
            raise StopRequested()

    def install_signal_handlers() -> None:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    install_signal_handlers()
    if args.stop_on_stdin_eof:

        def watch_stdin() -> None:
            while sys.stdin.buffer.read(65536):
                pass
            stop.set()
            os.kill(os.getpid(), signal.SIGTERM)  # wakes the main thread wherever it is

        threading.Thread(target=watch_stdin, daemon=True, name="stdin-eof").start()

    try:
        expected = expected_sha256_from(args)
        if expected is not None:
            expected = check_expected_sha256(expected)
    except (OSError, ValueError) as error:
        emit("GPUMESH-SERVE-FAILED", {"code": "invalid_arguments", "message": str(error)})
        return 1

    def on_startup_timeout() -> None:
        # serve.run waits as long as the replicas take (forever, if they cannot be scheduled): interrupt it.
        if not ready.is_set():
            startup_timed_out.set()
            os.kill(os.getpid(), signal.SIGTERM)

    startup_timer = threading.Timer(args.ready_timeout_s, on_startup_timeout)
    startup_timer.daemon = True
    startup_timer.start()

    started_ray = False
    serve_started = False
    try:
        # Check the artifacts here first: a bad hash is refused before any of Ray starts.
        blobs, sums = read_artifacts(args.model_dir, expected)
        config = parse_config(json.loads(blobs[CONFIG_FILE]))
        del blobs

        # Replicas need this package but may not have python/ on their path (or even this checkout, with
        # --ray-address): ship its code with the application instead.
        ray.cloudpickle.register_pickle_by_value(gpumesh_models)
        phases = {"imports and checks": time.monotonic() - PROCESS_STARTED}
        phase_started = time.monotonic()
        if args.ray_address:
            ray.init(address=args.ray_address, include_dashboard=False)
        else:
            # "local": always a fresh instance of our own, never one some other process started here.
            started_ray = True  # before ray.init: a signal during it must still clean up what it started
            ray.init(
                address="local",
                num_cpus=args.num_cpus,
                object_store_memory=args.object_store_memory_bytes,
                include_dashboard=False,
                _temp_dir=args.ray_temp_dir,
                _node_ip_address=args.node_ip_address,
            )
        # ray.init replaces our SIGTERM handler with one that calls sys.exit: put ours back.
        install_signal_handlers()
        phases["ray.init"] = time.monotonic() - phase_started
        port = free_port(args.host) if args.port == 0 else args.port
        phase_started = time.monotonic()
        serve.start(http_options={"host": args.host, "port": port})
        serve_started = True
        phases["serve.start"] = time.monotonic() - phase_started
        options = ServeAppOptions(
            model_dir=str(args.model_dir.resolve()),
            expected_sha256=sums if expected is not None else None,
            served_model_name=args.served_model_name,
            num_replicas=args.num_replicas,
            autoscaling=None if args.min_replicas is None else (args.min_replicas, args.max_replicas),
            target_ongoing_requests=args.target_ongoing_requests,
            replica_num_cpus=args.replica_num_cpus,
            max_ongoing_requests=args.max_ongoing_requests,
        )
        # blocking=False: serve.run returns once the application is running, so we can say so; this process
        # then blocks below until it is told to stop.
        phase_started = time.monotonic()
        serve.run(build_app(options), name=args.app_name, route_prefix="/", blocking=False)
        phases["serve.run"] = time.monotonic() - phase_started
        url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{port}"
        phase_started = time.monotonic()
        wait_for_health(url + "/health")
        phases["first /health"] = time.monotonic() - phase_started
        print(
            "serve_model: startup " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()), file=sys.stderr
        )
        ready.set()
        startup_timer.cancel()
        emit(
            "GPUMESH-SERVE-READY",
            {
                "host": args.host,
                "port": port,
                "url": url,
                "model": args.served_model_name or config.name,
                "version": config.version,
                "sha256": sums,
                "startupSeconds": round(time.monotonic() - PROCESS_STARTED, 2),
                "pid": os.getpid(),
            },
        )
        while not stop.wait(timeout=1.0):
            pass
        return 0
    except StopRequested:
        if startup_timed_out.is_set():
            message = f"not ready within --ready-timeout-s {args.ready_timeout_s:g} s"
            emit("GPUMESH-SERVE-FAILED", {"code": "startup_timeout", "message": message})
            return 1
        return 0
    except ModelError as error:
        emit("GPUMESH-SERVE-FAILED", {"code": error.code, "message": error.message})
        return 1
    except Exception as error:  # anything else at startup: report it in one line, details on stderr
        print(f"serve_model: startup failed: {error!r}", file=sys.stderr)
        emit("GPUMESH-SERVE-FAILED", {"code": "startup_failed", "message": str(error) or repr(error)})
        return 1
    finally:
        ready.set()  # a second signal during shutdown must not raise StopRequested into the cleanup
        watchdog = threading.Timer(SHUTDOWN_TIMEOUT_S, lambda: os._exit(2))
        watchdog.daemon = True
        watchdog.start()
        ray_processes = descendant_processes() if started_ray and os.path.isdir("/proc") else {}
        if serve_started:
            try:
                if started_ray:
                    serve.shutdown()
                else:
                    serve.delete(args.app_name)  # other applications on that instance are not ours
            except Exception as error:
                print(f"serve_model: Serve shutdown failed: {error!r}", file=sys.stderr)
        if ray.is_initialized():
            ray.shutdown()
        kill_leftovers(ray_processes)
        if stop.is_set() and not startup_timed_out.is_set():
            emit("GPUMESH-SERVE-STOPPED", {})


if __name__ == "__main__":
    sys.exit(main())
