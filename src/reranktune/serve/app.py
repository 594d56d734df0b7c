"""The ranking API: FastAPI app, model loading in the background, and the uvicorn runner.

``/v1/health/live`` answers as soon as the process listens; ``/v1/health/ready``
and ``/v1/ranking`` answer 503 until the model has loaded. Every bad request
gets a 4xx JSON body (``{"detail": ...}``): FastAPI's 422 for a body that does
not match the schema, 400 for a pair over the maximum length with
``truncate: NONE``, 404 for an unknown model id, 413 for too many passages,
bytes or tokens (``max_tokens_per_request``, counted before any model work).

What one request can cost is bounded: each text's characters (cut under
``truncate: END``, 400 under ``NONE``), its tokens, and ``request_timeout_s``
(then 503); its connection has deadlines for the headers and the body (408).
Its passages are encoded ``max_batch`` at a time and scored in batches of at
most ``max_batch`` pairs; a request whose client disconnected or whose deadline
passed stops at the next slice or batch. Without dynamic batching, requests take
the model in turn, in arrival order: under more load than the cores can serve, the
first ones finish within their deadline, rather than all of them sharing the cores
and missing it together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from reranktune.beir_data import read_passages
from reranktune.params import DeployParams
from reranktune.reranker.model import ranked
from reranktune.serve.batching import BatcherStopped, DynamicBatcher, in_request_order, length_order
from reranktune.serve.engines import Encoded, Engine, PairTooLong, load_engine
from reranktune.serve.limits import (
    BodySizeLimit,
    ClientGone,
    bound_texts,
    connection_limits,
    until_done,
)
from reranktune.serve.schema import (
    Error,
    Health,
    ModelCard,
    ModelList,
    Ranking,
    RankingRequest,
    RankingResponse,
)

log = logging.getLogger(__name__)


class ServeSettings(DeployParams):
    """What ``reranktune serve`` runs: ``params.yaml``'s deploy section and two command-line
    choices."""

    device: str | None = None  # torch engine: cpu or cuda (None: cuda when available)
    trust_remote_code: bool = False  # torch engine: run the model folder's own code

    def load(self, corpus: Sequence[str] = ()) -> Engine:
        """The engine, with the prior's embeddings of ``corpus`` (``deploy.corpus``'s passages)
        computed before it answers: those passages then cost the cross-encoder alone."""
        engine = load_engine(
            self.engine,
            self.model_dir,
            self.max_batch,
            self.threads,
            self.device,
            self.trust_remote_code,
        )
        if corpus and engine.prior is not None:
            new = engine.prior.pin_passages(list(corpus))
            log.info("the prior embedded %d passages of %s ahead of requests", new, self.corpus)
        elif corpus:
            log.info("%s: not embedded ahead, the model has no prior", self.corpus)
        return engine

    def connection_limits(self) -> dict:
        return connection_limits(
            self.headers_timeout_s, self.body_timeout_s, self.keep_alive_timeout_s
        )


class _State:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.batcher: DynamicBatcher | None = None
        self.load_error: str | None = None


def _error(status: int, description: str) -> dict:
    return {status: {"model": Error, "description": description}}


def _pair_length(pair: Encoded) -> int:
    return len(pair["input_ids"])


async def _score_alone(engine: Engine, pairs: list[Encoded], size: int) -> list[float]:
    """Without batching: the request's own pairs, ``size`` at a time, so a cancel stops between
    slices."""
    order = length_order(pairs, _pair_length)
    ordered = [pairs[i] for i in order]
    scores: list[float] = []
    for start in range(0, len(ordered), size):
        scores += await run_in_threadpool(engine.score, ordered[start : start + size])
    return in_request_order(scores, order)


def create_app(
    settings: ServeSettings,
    loader: Callable[[], Engine] | None = None,
    on_load_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app; ``loader`` makes the engine (default: ``settings.load``) off the event
    loop."""
    state = _State()
    loader = loader or settings.load
    model_turn = asyncio.Lock()  # without batching: one request's model work at a time, FIFO

    async def load() -> None:
        try:
            engine = await run_in_threadpool(loader)
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", state.load_error)
            if on_load_failure is not None:
                on_load_failure()
            return
        if settings.batching:
            batcher = DynamicBatcher(
                engine.score, settings.max_batch, settings.max_wait_ms / 1000, _pair_length
            )
            await batcher.start()
            state.batcher = batcher
        state.engine = engine
        log.info(
            "ready: %s engine on %s as %r", engine.kind, settings.model_dir, settings.model_name
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = asyncio.create_task(load())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if state.batcher is not None:
                await state.batcher.stop()

    app = FastAPI(
        title="reranktune ranking API",
        version="1",
        description="NIM-compatible reranking: POST a query and passages, "
        "get them back ranked by logit.",
        lifespan=lifespan,
        # Swagger UI and ReDoc pull their scripts from a CDN: off unless asked (deploy.docs);
        # /openapi.json stays
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    def openapi() -> dict:
        """The schema names the one served model id, so generated clients and fuzzers send it."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            request = schema["components"]["schemas"]["RankingRequest"]
            request["properties"]["model"]["enum"] = [settings.model_name]
            for example in request.get("examples", []):
                example["model"] = settings.model_name
        return app.openapi_schema

    app.openapi = openapi
    app.state.serve = state

    def ready_engine() -> Engine:
        if state.engine is None:
            raise HTTPException(
                503,
                state.load_error
                and f"model failed to load: {state.load_error}"
                or "model is loading",
            )
        return state.engine

    @app.get("/v1/health/live", response_model=Health)
    async def live() -> Health:
        return Health(message="Service is live.")

    @app.get(
        "/v1/health/ready", response_model=Health, responses=_error(503, "Model not loaded yet")
    )
    async def ready() -> Health:
        ready_engine()
        return Health(message="Service is ready.")

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=settings.model_name)])

    @app.post(
        "/v1/ranking",
        response_model=RankingResponse,
        responses={
            **_error(400, "A text or pair over the maximum length with truncate NONE"),
            **_error(404, "Unknown model id"),
            **_error(413, "Too many passages, bytes or tokens"),
            **_error(
                503, "Model not loaded yet, or not scored within the server's request timeout"
            ),
        },
    )
    async def ranking(body: RankingRequest, request: Request) -> RankingResponse:
        if body.model != settings.model_name:
            raise HTTPException(
                404,
                f"model {body.model!r} is not served here; GET /v1/models lists "
                f"{settings.model_name!r}",
            )
        if len(body.passages) > settings.max_passages:
            raise HTTPException(
                413,
                f"{len(body.passages)} passages in one request; the limit is "
                f"{settings.max_passages} (split the request)",
            )
        engine = ready_engine()
        started = time.monotonic()
        try:
            scores = await until_done(score(engine, body), request, settings.request_timeout_s)
        except ClientGone:
            log.info(
                "client went away after %.1f s: its %d passages were dropped",
                time.monotonic() - started,
                len(body.passages),
            )
            raise
        return RankingResponse(
            rankings=[Ranking(index=r.index, logit=r.score) for r in ranked(scores)]
        )

    async def score(engine: Engine, body: RankingRequest) -> list[float]:
        """Bound the texts, count the tokens (413 over the budget), encode ``max_batch`` passages
        at a time, score."""
        query, passages = bound_texts(
            body.query.text,
            [p.text for p in body.passages],
            engine.max_length,
            body.truncate == "END",
        )
        tokens = 0
        for start in range(
            0, len(passages), settings.max_batch
        ):  # stops once over: counting costs tokenizing
            tokens += await run_in_threadpool(
                engine.tokens, query, passages[start : start + settings.max_batch]
            )
            if tokens > settings.max_tokens_per_request:
                counted = min(start + settings.max_batch, len(passages))
                raise HTTPException(
                    413,
                    f"{tokens} tokens in the first {counted} of this request's {len(passages)} "
                    f"passages (query + passage, for each passage, up to the model's "
                    f"{engine.max_length}); the limit is {settings.max_tokens_per_request} (the "
                    "server's max_tokens_per_request): send fewer or shorter passages",
                )
        truncate = body.truncate == "END"
        if state.batcher is not None:
            return await state.batcher.submit(await encode(engine, query, passages, truncate))
        async with model_turn:
            pairs = await encode(engine, query, passages, truncate)
            return await _score_alone(engine, pairs, settings.max_batch)

    async def encode(
        engine: Engine, query: str, passages: list[str], truncate: bool
    ) -> list[Encoded]:
        """Token ids and the prior's score per pair, ``max_batch`` passages at a time."""
        pairs: list[Encoded] = []
        for start in range(0, len(passages), settings.max_batch):
            try:
                pairs += await run_in_threadpool(
                    engine.encode, query, passages[start : start + settings.max_batch], truncate
                )
            except PairTooLong as exc:  # its index is within the slice
                raise HTTPException(
                    400, str(PairTooLong(start + exc.index, exc.tokens, exc.max_length))
                ) from None
        return pairs

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # without echoing "input": a lone surrogate in it would make the error itself unencodable
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(ClientGone)
    async def client_gone(_request: Request, _exc: ClientGone) -> Response:
        return Response(
            status_code=499
        )  # nginx's "client closed request"; nobody is there to read it

    @app.exception_handler(BatcherStopped)
    async def shutting_down(_request: Request, exc: BatcherStopped) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    return app


def run_server(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then finishes in-flight requests before exiting."""
    import uvicorn

    from reranktune.serve.engines import check_model_folder

    check_model_folder(
        settings.model_dir, settings.engine
    )  # a wrong folder fails here, not in a log
    corpus = read_passages(settings.corpus) if settings.corpus else []  # a bad file too
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "binding %s: other machines can reach this API, which has no authentication",
            settings.host,
        )
    holder: dict[str, uvicorn.Server] = {}

    def stop() -> None:
        holder["server"].should_exit = True

    app = create_app(settings, lambda: settings.load(corpus), on_load_failure=stop)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=30,
        proxy_headers=False,
        **settings.connection_limits(),
    )
    server = holder["server"] = uvicorn.Server(config)
    server.run()
    if app.state.serve.load_error:
        raise SystemExit(f"error: model failed to load: {app.state.serve.load_error}")
