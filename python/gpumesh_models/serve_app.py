"""The Ray Serve application: one model directory served over OpenAI's HTTP API.

    GET  /health               {"status": "ok", "model", "version", "sha256": {...}, "loadSeconds"}
    GET  /v1/models            OpenAI's model list (this one model)
    POST /v1/completions       OpenAI completions (stream: true -> server-sent events)
    POST /v1/chat/completions  OpenAI chat completions (stream: true -> server-sent events)
    POST /v1/embeddings        OpenAI embeddings

Errors are OpenAI's {"error": {"message", "type", "param", "code"}} with a 4xx status for bad input.
build_app(ServeAppOptions(...)) returns the Serve application; serve_model.py is the process that runs it.
"""

import secrets
import time
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.deployment import Application
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gpumesh_models import openai_api
from gpumesh_models.errors import ModelError
from gpumesh_models.openai_api import ApiError, ResponseIdentity
from gpumesh_models.runtime import LoadedModel, load_model

# Serve retries a failing replica constructor this many times; a model that fails its hash check will fail
# again, so give up early instead of Serve's default of 20 tries.
MAX_CONSTRUCTOR_RETRIES = 2

fastapi_app = FastAPI(title="gpumesh model server", docs_url=None, redoc_url=None, openapi_url=None)


@fastapi_app.exception_handler(ApiError)
async def api_error_handler(_request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse(status_code=error.status, content=error.body)


@fastapi_app.exception_handler(ModelError)
async def model_error_handler(_request: Request, error: ModelError) -> JSONResponse:
    api_error = ApiError.from_model_error(error)
    return JSONResponse(status_code=api_error.status, content=api_error.body)


@fastapi_app.exception_handler(HTTPException)
async def http_error_handler(_request: Request, error: HTTPException) -> JSONResponse:
    # Unknown paths (404) and wrong methods (405) in OpenAI's shape too, not FastAPI's {"detail": ...}.
    body = ApiError(error.status_code, str(error.detail), "invalid_request_error").body
    return JSONResponse(status_code=error.status_code, content=body, headers=getattr(error, "headers", None))


@dataclass(frozen=True)
class ServeAppOptions:
    model_dir: str
    expected_sha256: dict[str, str] | None  # None: no check (development only)
    served_model_name: str | None = None  # the name clients use; default: config.json's name
    num_replicas: int = 1
    autoscaling: tuple[int, int] | None = None  # (min_replicas, max_replicas); replaces num_replicas
    target_ongoing_requests: float = 2.0  # per replica, when autoscaling
    replica_num_cpus: float = 1.0
    max_ongoing_requests: int = 4  # per replica; more wait in Serve's queue
    deployment_name: str = "ModelServer"


def _identity(prefix: str) -> ResponseIdentity:
    return ResponseIdentity(id=f"{prefix}-{secrets.token_hex(12)}", created=int(time.time()))


@serve.deployment(max_constructor_retry_count=MAX_CONSTRUCTOR_RETRIES)
@serve.ingress(fastapi_app)
class ModelServer:
    def __init__(
        self,
        model_dir: str,
        expected_sha256: dict[str, str] | None,
        served_model_name: str | None,
        torch_threads: int,
    ):
        # One replica's share of the machine: torch would otherwise start a thread per core in every replica.
        torch.set_num_threads(torch_threads)
        started = time.perf_counter()
        self.model: LoadedModel = load_model(model_dir, expected_sha256)
        self.load_seconds = time.perf_counter() - started
        self.model_name = served_model_name or self.model.config.name
        self.accepted_names = frozenset({self.model_name, self.model.config.name})

    @fastapi_app.get("/health")
    def health(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "status": "ok",
            "model": self.model_name,
            "version": config.version,
            "tasks": list(config.tasks),
            "contextLength": config.context_length,
            "maxOutputTokens": config.max_output_tokens,
            "sha256": self.model.artifact_sha256,
            "loadSeconds": round(self.load_seconds, 3),
        }

    @fastapi_app.get("/v1/models")
    def models(self) -> dict[str, Any]:
        entry = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "gpumesh"}
        return {"object": "list", "data": [entry]}

    async def _body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > openai_api.MAX_REQUEST_BYTES:
            raise ApiError(
                413,
                f"request body is larger than {openai_api.MAX_REQUEST_BYTES} bytes",
                "invalid_request_error",
            )
        body = openai_api.parse_json_body(await request.body())
        openai_api.check_model_name(body, self.accepted_names)
        return body

    def _require_task(self, task: str) -> None:
        if task not in self.model.config.tasks:
            raise ApiError.bad_request(
                f"model {self.model_name} does not do {task}", "model", "unsupported_task"
            )

    async def _complete(self, request: Request, chat: bool) -> Any:
        body = await self._body(request)
        self._require_task("chat" if chat else "completion")
        parse = openai_api.parse_chat_request if chat else openai_api.parse_completion_request
        parsed = parse(body, self.model)
        identity = _identity("chatcmpl" if chat else "cmpl")
        if parsed.stream:
            # start_completion checks the request before the 200 goes out; the generation itself runs as
            # the response is sent (Starlette iterates a plain generator in its thread pool).
            events = self.model.start_completion(parsed.prompt, parsed.options, parsed.prompt_param)
            stream = openai_api.server_sent_events(
                events, identity, self.model_name, chat, parsed.include_usage
            )
            return StreamingResponse(
                stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        # Generation is CPU work: run it off the event loop so health checks and other requests still flow.
        completion = await run_in_threadpool(
            self.model.complete, parsed.prompt, parsed.options, parsed.prompt_param
        )
        shape = openai_api.chat_body if chat else openai_api.completion_body
        return shape(identity, self.model_name, completion)

    @fastapi_app.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        return await self._complete(request, chat=False)

    @fastapi_app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Any:
        return await self._complete(request, chat=True)

    @fastapi_app.post("/v1/embeddings")
    async def embeddings(self, request: Request) -> Any:
        body = await self._body(request)
        self._require_task("embeddings")
        texts, encoding_format = openai_api.parse_embeddings_input(body)
        embeddings = await run_in_threadpool(self.model.embed, texts)
        return openai_api.embeddings_body(
            self.model_name, embeddings.vectors, embeddings.usage, encoding_format
        )


def build_app(options: ServeAppOptions) -> Application:
    deployment_options: dict[str, Any] = {
        "name": options.deployment_name,
        "ray_actor_options": {"num_cpus": options.replica_num_cpus},
        "max_ongoing_requests": options.max_ongoing_requests,
    }
    if options.autoscaling is not None:
        min_replicas, max_replicas = options.autoscaling
        deployment_options["autoscaling_config"] = {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests,
        }
    else:
        deployment_options["num_replicas"] = options.num_replicas
    torch_threads = max(1, int(options.replica_num_cpus))
    return ModelServer.options(**deployment_options).bind(
        options.model_dir, options.expected_sha256, options.served_model_name, torch_threads
    )


def app_builder(args: dict[str, Any]) -> Application:
    """For Serve's own tooling: `serve run gpumesh_models.serve_app:app_builder model_dir=DIR
    sha256_config=HEX sha256_weights=HEX`. The worker uses serve_model.py instead."""
    expected = {"config.json": args["sha256_config"], "model.safetensors": args["sha256_weights"]}
    return build_app(ServeAppOptions(model_dir=args["model_dir"], expected_sha256=expected))
