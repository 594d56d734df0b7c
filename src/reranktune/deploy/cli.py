"""``reranktune serve`` and ``reranktune deploy``: flags over the ``deploy`` section of
params.yaml."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from reranktune.io import InputError
from reranktune.params import DeployParams, load_section

_D = DeployParams()

SERVE_EPILOG = f"""\
API (NVIDIA NIM's ranking contract):
  POST /v1/ranking       {{"model": "{_D.model_name}", "query": {{"text": "..."}},
                          "passages": [{{"text": "..."}}, ...], "truncate": "NONE" | "END"}}
                         -> {{"rankings": [{{"index": 0, "logit": 1.7}}, ...]}}, highest logit first
  GET  /v1/models        the served model id (--model-name)
  GET  /v1/health/live   200 once the process listens
  GET  /v1/health/ready  200 once the model has loaded, 503 before
  GET  /openapi.json     the schema (/docs and /redoc too with --docs)

truncate NONE (the default) answers 400 when a query + passage is over the model's
max_length (reranktune.json); END cuts the passage's end instead. Before any of it, a
query or passage over max_length x 16 characters is cut there (END) or refused with
400 (NONE), unread. Malformed bodies get 422, unknown model ids 404, too many passages
or bytes 413, all as JSON.

Limits on what one request can cost (JSON {{"detail": ...}} answers):
  --max-tokens-per-request  the tokens the model would read: for each passage, its
                            query + passage pair up to max_length, summed. Counted
                            before any model work; over it: 413 ({_D.max_tokens_per_request})
  --request-timeout-s       counted from when the body has been read; not scored by
                            then: 503, and its unscored pairs are dropped \
({_D.request_timeout_s:g} s)
  A client that disconnects stops its request: passages are encoded and scored
  --max-batch at a time, and what is left is dropped at the next step.

Time limits on a connection (deploy keys; past one: 408 and the connection closes):
  headers_timeout_s     a request's headers, from its first byte ({_D.headers_timeout_s:g} s)
  body_timeout_s        its body, from the end of its headers ({_D.body_timeout_s:g} s)
  keep_alive_timeout_s  idle between requests, then closed without a 408 \
({_D.keep_alive_timeout_s:g} s)

Every flag defaults to the `deploy` section of --params, then to the value shown.
The server binds 127.0.0.1: only this machine can reach it. Use --host 0.0.0.0
inside a container (the Dockerfile does) or behind a firewall; the API has no
authentication (neither has NIM): for other machines, put a gateway that checks an
API key in front (docs/serving.md). SIGINT/SIGTERM stop it after in-flight requests finish.

Example:  reranktune serve                       # models/onnx on 127.0.0.1:8000
          reranktune serve --engine torch --model-dir models/reranker --port 8080
"""

DEPLOY_EPILOG = """\
runtime local  starts `reranktune serve` detached, with its pid and log in
               deploy.state_dir (.cache/deploy/serve.pid, serve.log), and returns
               once /v1/health/ready answers. `reranktune deploy --stop` stops it.
runtime nim    runs NVIDIA's reranking container (deploy.nim.image) through Docker:
               deploy.model_dir mounted read-only and named by NIM_CUSTOM_MODEL,
               port 8000 published on deploy.host:deploy.port (127.0.0.1:8000),
               all GPUs (deploy.nim.gpus), NGC_API_KEY taken from the environment
               (export it first; it is never logged). Readiness is polled every
               deploy.nim.poll_interval_s up to deploy.ready_timeout_s. Needs Docker
               with the NVIDIA Container Toolkit, a GPU and an NGC key.
"""


def _params(args: argparse.Namespace) -> DeployParams:
    base = load_section("deploy", args.params)
    overrides = {
        k: v for k, v in vars(args).items() if k in DeployParams.model_fields and v is not None
    }
    try:
        return DeployParams.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        errors = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise InputError(errors) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        default="params.yaml",
        help="params file whose `deploy` section gives the defaults (default: params.yaml)",
    )
    parser.add_argument(
        "--model-dir",
        help=f"folder to serve: the export stage's ONNX folder, or a Hugging Face "
        f"model folder with --engine torch (default: {_D.model_dir}; "
        "models/reranker with --engine torch)",
    )
    parser.add_argument("--host", help=f"interface to bind (default: {_D.host}, this machine only)")
    parser.add_argument("--port", type=int, help=f"TCP port (default: {_D.port})")


def add_serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a reranker over the NIM ranking API (POST /v1/ranking)",
        description="Serve an exported reranker over HTTP with NVIDIA NIM's ranking API.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--engine",
        choices=["export", "torch"],
        help="export: an export folder's default variant, the fastest its gate accepted "
        "(ONNX Runtime, or PyTorch bf16 on a CPU with AMX); torch: PyTorch on a model folder "
        f"(default: {_D.engine})",
    )
    p.add_argument(
        "--corpus",
        help="a BEIR corpus.jsonl of the passages clients will send: the prior embeds them "
        "before the server reports ready, so they cost the cross-encoder alone "
        f"(default: {_D.corpus or 'none, each passage is embedded when first seen'})",
    )
    p.add_argument(
        "--model-name",
        help=f"model id clients send and /v1/models lists (default: {_D.model_name})",
    )
    p.add_argument(
        "--max-batch", type=int, help=f"pairs per forward pass (default: {_D.max_batch})"
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        help="how long the batcher waits for more requests before running "
        f"a batch that is not full (default: {_D.max_wait_ms:g})",
    )
    p.add_argument(
        "--batching",
        dest="batching",
        action="store_const",
        const=True,
        help="gather the pairs of concurrent requests into shared forward passes "
        f"(default: {_D.batching})",
    )
    p.add_argument(
        "--no-batching",
        dest="batching",
        action="store_const",
        const=False,
        help="score each request on its own, without gathering concurrent requests",
    )
    p.add_argument(
        "--max-passages",
        type=int,
        help=f"passages per request; more is a 413 (default: {_D.max_passages})",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        help=f"request body size; more is a 413 (default: {_D.max_body_bytes})",
    )
    p.add_argument(
        "--max-tokens-per-request",
        type=int,
        help=f"token budget of one request (query + passage per passage, each up to the model's "
        "max_length, summed); more is a 413 before any model work "
        f"(default: {_D.max_tokens_per_request})",
    )
    p.add_argument(
        "--request-timeout-s",
        type=float,
        help="seconds a request may take once read; then 503 and its unscored pairs are dropped "
        f"(default: {_D.request_timeout_s:g})",
    )
    p.add_argument(
        "--docs",
        action="store_const",
        const=True,
        help="serve /docs (Swagger UI) and /redoc; their pages load scripts from a CDN, so they "
        "need a browser with internet access (default: off; /openapi.json is always served)",
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads for the engine, 0 for all cores (default: 0)"
    )
    p.add_argument("--device", help="torch engine only: cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="torch engine only: run the model folder's own Python code (off unless asked)",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> None:
    from reranktune.serve.app import ServeSettings, run_server

    params = _params(args)
    if params.engine == "torch" and args.model_dir is None and params.model_dir == _D.model_dir:
        params.model_dir = (
            "models/reranker"  # the ONNX folder cannot feed PyTorch; finetune's output can
        )
    settings = ServeSettings(
        **params.model_dump(), device=args.device, trust_remote_code=args.trust_remote_code
    )
    run_server(settings)


def add_deploy_parser(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="start the ranking API in the background (local) or as NVIDIA's NIM container",
        description="Start the ranking API and wait until /v1/health/ready answers.",
        epilog=DEPLOY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--runtime",
        choices=["local", "nim"],
        help=f"where it runs (default: deploy.runtime, {_D.runtime})",
    )
    p.add_argument(
        "--stop", action="store_true", help="stop what `reranktune deploy` started, then exit"
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="nim: replace an existing container of the same name (only one reranktune started)",
    )
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="nim: keep a container that failed to become ready, for `docker logs`",
    )
    p.set_defaults(func=_deploy)


def _deploy(args: argparse.Namespace) -> None:
    params = _params(args)
    if params.runtime == "local":
        from reranktune.deploy.local import start_local, stop_local

        if args.stop:
            pid = stop_local(params)
            print(f"stopped pid {pid}" if pid else "no server was running")
            return
        deployment = start_local(params, args.params)
        print(
            f"ready: {deployment.url}/v1/ranking (pid {deployment.pid}, log {deployment.log_file})"
        )
        return
    from reranktune.deploy.nim import launch_nim, stop_nim

    if args.stop:
        print("container removed" if stop_nim(params) else "no container to stop")
        return
    nim = launch_nim(params, replace=args.replace, keep_failed=args.keep_failed)
    print(f"ready: {nim.url}/v1/ranking (container {nim.name})")
