"""gpumesh cluster head agent.

Runs on a cluster's head node, inside the cluster's network namespace, as a Ray driver connected to the
head. It submits and follows Ray jobs with Ray's own JobManager (the machinery behind Ray's HTTP job API,
which needs the dashboard we do not run) and reports which nodes are alive.

  python cluster_head.py --address HOST:PORT --work-dir DIR [--connect-timeout-s 60]

Commands, JSON lines on stdin:
  {"op": "submit", "jobId": "job_x", "entrypoint": "python train.py", "workingDirTarGz": base64 | null,
   "runtimeEnv": {...} (optional: Ray's runtime_env, as a Ray job client sent it),
   "packages": [{"uri": "gcs://_ray_pkg_<hash>.zip", "zipBase64": ...}] (optional: what runtimeEnv names),
   "entrypointResources": {"numCpus", "numGpus", "memory", "resources"} (optional)}
  {"op": "stop", "jobId": "job_x"}
Events, JSON lines on stdout:
  {"event": "ready"}
  {"event": "nodes", "alive": ["100.64.0.1", ...]}          after ready, then whenever the set changes
  {"event": "log", "jobId": ..., "text": ...}
  {"event": "job", "jobId": ..., "status": "pending|running|succeeded|failed|stopped", "message": ...,
   "exitCode": int | null}                                   on every status change; logs come first
  {"event": "error", "jobId": ... (optional), "message": ...}  a command failed; the agent keeps running
EOF on stdin: stop following and exit 0. Jobs keep running: Ray owns them (detached supervisor actors).
"""

import argparse
import asyncio
import base64
import binascii
import io
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import threading
from pathlib import Path

# stdout carries only our events. Ray's Python and C++ code may write to fd 1, so events go to a private
# duplicate of it and fd 1 itself (and sys.stdout) point at stderr, before Ray is even imported.
events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

import ray  # noqa: E402
from ray._private.runtime_env.packaging import (  # noqa: E402
    create_package,
    get_uri_for_directory,
    package_exists,
    upload_package_to_gcs,
)
from ray._private import ray_constants  # noqa: E402
from ray._raylet import GcsClient  # noqa: E402
from ray.dashboard.modules.job.job_log_storage_client import JobLogStorageClient  # noqa: E402
from ray.dashboard.modules.job.job_manager import JobManager  # noqa: E402

# Bounds (each belongs in docs/limits.md).
MAX_COMMAND_BYTES = 64 * 1024 * 1024  # one stdin line, the base64 tarball included
MAX_WORKING_DIR_BYTES = 256 * 1024 * 1024  # unpacked; the zip must also fit a 512 MiB GCS message
MAX_WORKING_DIR_MEMBERS = 10_000
MAX_ENTRYPOINT_CHARS = 8192
MAX_LOG_EVENT_CHARS = 64 * 1024
NODES_POLL_S = 0.5
STATUS_POLL_S = 0.5
LOG_TAIL_POLL_S = 0.25
LOG_DRAIN_TIMEOUT_S = 10  # after a job ends, how long its last log lines may take to arrive
STOP_RETRY_S = 0.5
STOP_RETRIES = 20  # the supervisor actor's name may register a moment after submission

# Job ids name a directory and a Ray actor: keep them to plain characters.
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The only package URIs a job may bring: content-addressed zips in this cluster's GCS.
PACKAGE_URI = re.compile(r"^gcs://_ray_pkg_[0-9a-f]{16,64}\.zip$")
ENTRYPOINT_RESOURCES = {"numCpus": "entrypoint_num_cpus", "numGpus": "entrypoint_num_gpus",
                        "memory": "entrypoint_memory", "resources": "entrypoint_resources"}
COMMAND_TOO_LONG = object()


def emit(event):
    events.write(json.dumps(event) + "\n")
    events.flush()


def emit_error(message, job_id=None):
    emit({"event": "error", **({"jobId": job_id} if job_id else {}), "message": message})


def unpack_working_dir(tarball, destination):
    """Unpacks a tar.gz holding only regular files and directories under relative, '..'-free names.

    Links, devices and the like are refused outright rather than checked (this Python predates
    tarfile's filter='data'), and files are written by hand: nothing is chowned to the archive's owner,
    no mode bits beyond rwx survive, and no path ever passes through a link, so nothing lands outside
    the destination. Every member is checked before anything is written.
    """
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        members = []
        total = 0
        # Member by member, so a bomb is refused before it has all been inflated.
        for member in archive:
            members.append(member)
            if len(members) > MAX_WORKING_DIR_MEMBERS:
                raise ValueError(f"working dir has more than {MAX_WORKING_DIR_MEMBERS} entries")
            parts = Path(member.name).parts
            if member.name.startswith("/") or ".." in parts or "\0" in member.name:
                raise ValueError(f"working dir entry {member.name!r} escapes the working dir")
            if not (member.isfile() or member.isdir()):
                raise ValueError(f"working dir entry {member.name!r} is not a regular file or directory")
            total += member.size
            if total > MAX_WORKING_DIR_BYTES:
                raise ValueError(f"working dir is larger than {MAX_WORKING_DIR_BYTES} bytes unpacked")
        destination.mkdir(mode=0o755)
        for member in members:
            target = destination.joinpath(*Path(member.name).parts)
            if member.isdir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            mode = 0o755 if member.mode & 0o111 else 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with archive.extractfile(member) as source, os.fdopen(os.open(target, flags, mode), "wb") as sink:
                shutil.copyfileobj(source, sink)


def package_working_dir(job_id, tarball, work_dir):
    """Unpacks the job's working dir under work_dir and uploads it to the GCS; returns its package URI."""
    directory = work_dir / job_id
    if directory.exists():
        raise ValueError(f"working dir {directory} already exists")
    try:
        unpack_working_dir(tarball, directory)
        uri = get_uri_for_directory(str(directory), include_gitignore=False)
        package = work_dir / f"{job_id}.zip"
        try:
            create_package(str(directory), package, include_gitignore=False)
            upload_package_to_gcs(uri, package.read_bytes())
        finally:
            package.unlink(missing_ok=True)
        return uri
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def upload_packages(packages):
    """Puts a Ray submission's packages into the GCS under the URIs its runtime_env names, as Ray's dashboard
    does on upload. A package already there (same content hash) is left as it is."""
    for package in packages:
        uri = package.get("uri") if isinstance(package, dict) else None
        data = package.get("zipBase64") if isinstance(package, dict) else None
        if not isinstance(uri, str) or not PACKAGE_URI.match(uri) or not isinstance(data, str):
            raise ValueError("packages must be objects with a gcs://_ray_pkg_<hash>.zip uri and zipBase64")
        if package_exists(uri):
            continue
        try:
            upload_package_to_gcs(uri, base64.b64decode(data, validate=True))
        except binascii.Error as error:
            raise ValueError(f"package {uri} is not base64: {error}") from None


def describe(error):
    return f"{type(error).__name__}: {error}"


class Agent:
    def __init__(self, jobs, work_dir):
        self.jobs = jobs
        self.work_dir = work_dir
        self.submissions = {}  # jobId -> task preparing and submitting it
        self.tasks = set()

    def spawn(self, coroutine):
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def handle(self, line):
        if line is COMMAND_TOO_LONG:
            return emit_error(f"command longer than {MAX_COMMAND_BYTES} bytes")
        try:
            command = json.loads(line)
        except ValueError as error:
            return emit_error(f"command is not JSON: {error}")
        if not isinstance(command, dict):
            return emit_error("command is not a JSON object")
        job_id = command.get("jobId")
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            return emit_error("jobId must match [A-Za-z0-9_-]{1,64}")
        op = command.get("op")
        if op == "submit":
            entrypoint = command.get("entrypoint")
            tarball = command.get("workingDirTarGz")
            if not isinstance(entrypoint, str) or not 0 < len(entrypoint) <= MAX_ENTRYPOINT_CHARS:
                message = f"entrypoint must be a string of 1 to {MAX_ENTRYPOINT_CHARS} characters"
                return emit_error(message, job_id)
            if tarball is not None and not isinstance(tarball, str):
                return emit_error("workingDirTarGz must be base64 or null", job_id)
            runtime_env = command.get("runtimeEnv", {})
            packages = command.get("packages", [])
            resources = command.get("entrypointResources", {})
            if not isinstance(runtime_env, dict) or not isinstance(packages, list):
                return emit_error("runtimeEnv must be an object and packages a list", job_id)
            if not isinstance(resources, dict) or not set(resources) <= set(ENTRYPOINT_RESOURCES):
                return emit_error(f"entrypointResources may hold only {sorted(ENTRYPOINT_RESOURCES)}", job_id)
            if job_id in self.submissions:
                return emit_error("job already submitted", job_id)
            ray_submission = {
                "runtime_env": runtime_env,
                "packages": packages,
                "resources": {ENTRYPOINT_RESOURCES[key]: value for key, value in resources.items()},
            }
            self.submissions[job_id] = self.spawn(self.submit(job_id, entrypoint, tarball, ray_submission))
        elif op == "stop":
            self.spawn(self.stop(job_id))
        else:
            emit_error(f"unknown op {op!r}", job_id)

    async def submit(self, job_id, entrypoint, tarball, ray_submission):
        try:
            # A Ray job client's runtime_env goes to Ray as sent (the coordinator checked its keys): Ray itself
            # sets up env_vars, working_dir, py_modules and pip (a virtualenv of its own per requirement set,
            # kept in this node's temp dir and reused by the next job with the same requirements).
            runtime_env = dict(ray_submission["runtime_env"])
            if ray_submission["packages"]:
                await asyncio.to_thread(upload_packages, ray_submission["packages"])
            if tarball is not None:
                try:
                    data = base64.b64decode(tarball, validate=True)
                except binascii.Error as error:
                    raise ValueError(f"workingDirTarGz is not base64: {error}") from None
                # Unpacking, zipping and uploading block: off the loop, so other jobs' events keep flowing.
                uri = await asyncio.to_thread(package_working_dir, job_id, data, self.work_dir)
                runtime_env["working_dir"] = uri
            await self.jobs.submit_job(
                entrypoint=entrypoint,
                submission_id=job_id,
                runtime_env=runtime_env,
                **ray_submission["resources"],
            )
        except Exception as error:
            emit_error(f"submit failed: {describe(error)}", job_id)
            del self.submissions[job_id]  # the caller may try again under the same id
            return False
        self.spawn(self.follow(job_id))
        return True

    async def follow(self, job_id):
        ended = asyncio.Event()
        logs = asyncio.create_task(self.stream_logs(job_id, ended))
        reported = None
        try:
            while True:
                info = await self.jobs.get_job_info(job_id)
                if info is not None and info.status != reported:
                    if info.status.is_terminal():
                        # Whoever sees the job end should already hold all of its output.
                        ended.set()
                        try:
                            await asyncio.wait_for(logs, LOG_DRAIN_TIMEOUT_S)
                        except asyncio.TimeoutError:
                            pass
                    reported = info.status
                    emit(
                        {
                            "event": "job",
                            "jobId": job_id,
                            "status": info.status.value.lower(),
                            "message": info.message or "",
                            "exitCode": info.driver_exit_code,
                        }
                    )
                    if info.status.is_terminal():
                        return
                await asyncio.sleep(STATUS_POLL_S)
        except Exception as error:
            emit_error(f"lost track of the job: {describe(error)}", job_id)
        finally:
            logs.cancel()

    async def stream_logs(self, job_id, ended):
        """Follows the job's log file until the job has ended and the file holds nothing more.

        Our own tail rather than JobManager.tail_job_logs: that one rests over a second at every quiet
        moment, and twice more after the job ends, which would hold back each job's final status.
        """
        path = JobLogStorageClient().get_log_file_path(job_id)
        log = None
        try:
            while True:
                # Noted before reading: a read that starts after the job ended finds all it wrote.
                was_ended = ended.is_set()
                if log is None and os.path.exists(path):
                    log = open(path, encoding="utf-8", errors="replace", newline="")
                # Everything written since the last read, in one event (up to the bound): lines batch up.
                text = log.read(MAX_LOG_EVENT_CHARS) if log else ""
                if text:
                    emit({"event": "log", "jobId": job_id, "text": text})
                    await asyncio.sleep(0)
                elif was_ended:
                    return
                else:
                    await asyncio.sleep(LOG_TAIL_POLL_S)
        except Exception as error:
            emit_error(f"lost the job's logs: {describe(error)}", job_id)
        finally:
            if log is not None:
                log.close()

    async def stop(self, job_id):
        submission = self.submissions.get(job_id)
        if submission is not None and not await asyncio.shield(submission):
            return  # its submission failed and said so
        try:
            for _ in range(STOP_RETRIES):
                if self.jobs.stop_job(job_id):
                    return
                info = await self.jobs.get_job_info(job_id)
                if info is None:
                    return emit_error("unknown job", job_id)
                if info.status.is_terminal():
                    return emit_error(f"job already {info.status.value.lower()}", job_id)
                await asyncio.sleep(STOP_RETRY_S)
            emit_error("job has no supervisor to stop", job_id)
        except Exception as error:
            emit_error(f"stop failed: {describe(error)}", job_id)


async def watch_nodes():
    alive = None
    while True:
        try:
            # ray.nodes() is a blocking GCS call: off the loop, so a slow GCS stalls no job events.
            nodes = await asyncio.to_thread(ray.nodes)
            now = sorted({node["NodeManagerAddress"] for node in nodes if node["Alive"]})
            if now != alive:
                alive = now
                emit({"event": "nodes", "alive": now})
        except Exception as error:
            emit_error(f"listing nodes failed: {describe(error)}")
        await asyncio.sleep(NODES_POLL_S)


def read_commands(loop, queue):
    """Feeds stdin lines to the loop from a thread (blocking reads, bounded lines); None marks EOF."""
    stdin = sys.stdin.buffer
    while line := stdin.readline(MAX_COMMAND_BYTES + 1):
        if len(line) > MAX_COMMAND_BYTES and not line.endswith(b"\n"):
            # Skip the rest of the oversized line, so the next command still parses.
            while (rest := stdin.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                pass
            line = COMMAND_TOO_LONG
        loop.call_soon_threadsafe(queue.put_nowait, line)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def record_head_node(gcs):
    """Tells Ray's job machinery which node is the head, as Ray's dashboard would (it does not run here).

    Without it JobManager places a job's supervisor, and so its driver, on any node; the driver's log file is
    then on that node, where this agent does not read it.
    """
    head_node_id = ray._private.worker._global_node.node_id
    await gcs.async_internal_kv_put(
        ray_constants.KV_HEAD_NODE_ID_KEY,
        head_node_id.encode(),
        overwrite=True,
        namespace=ray_constants.KV_NAMESPACE_JOB,
        timeout=30,
    )


async def serve(address, work_dir):
    gcs = GcsClient(address=address)
    await record_head_node(gcs)
    # Constructed inside the loop: JobManager starts background tasks (it re-follows unfinished jobs).
    jobs = JobManager(gcs, ray._private.worker._global_node.get_logs_dir_path())
    agent = Agent(jobs, work_dir)
    emit({"event": "ready"})
    agent.spawn(watch_nodes())
    queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    threading.Thread(target=read_commands, args=(loop, queue), daemon=True).start()
    while (line := await queue.get()) is not None:
        agent.handle(line)
    # Exit at once, not through asyncio.run's cleanup (which waits for threads, maybe on a slow GCS) nor
    # ray.shutdown(): the jobs are Ray's (detached supervisors), and the GCS notices this driver's exit
    # from its closed connection.
    events.flush()
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the head's GCS, HOST:PORT")
    parser.add_argument("--work-dir", required=True, type=Path, help="where jobs' working dirs are unpacked")
    parser.add_argument("--connect-timeout-s", type=float, default=60)
    args = parser.parse_args()
    host = args.address.rpartition(":")[0]
    args.work_dir.mkdir(parents=True, exist_ok=True)

    # ray.init has no deadline of its own for an unreachable head; give up on ours.
    def give_up():
        emit_error(f"could not connect to Ray at {args.address} within {args.connect_timeout_s} s")
        os._exit(1)

    watchdog = threading.Timer(args.connect_timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        # This agent runs on the head node, so its node address is the head's. Task output stays in Ray's
        # log files (log_to_driver=False); only job logs travel, as events.
        ray.init(
            address=args.address, _node_ip_address=host, logging_level=logging.ERROR, log_to_driver=False
        )
    except Exception as error:
        emit_error(f"could not connect to Ray at {args.address}: {describe(error)}")
        sys.exit(1)
    finally:
        watchdog.cancel()
    asyncio.run(serve(args.address, args.work_dir))


if __name__ == "__main__":
    main()
