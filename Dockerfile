# The project's own ranking server, CPU only: `reranktune serve` (ONNX Runtime) on an export folder.
#
#   docker build -t reranktune-serve .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/models/onnx:/models/onnx:ro" reranktune-serve
#
# Inside the container the server must bind 0.0.0.0: Docker forwards the published port to the
# container's own network interface, which a server on 127.0.0.1 never sees. Exposure to the outside
# is decided by `-p`: `127.0.0.1:8000:8000` keeps it on this machine (the API has no authentication).
# Extra arguments go to `reranktune serve`, e.g. `... reranktune-serve --max-batch 64 --model-name my-reranker`.
FROM python:3.11-slim

# torch==2.13.0 in constraints/cpu.txt is a CPU build; point pip at PyTorch's CPU wheel index here
# (--build-arg PIP_EXTRA_INDEX_URL=...) so that a CUDA build is not pulled in its place.
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
COPY pyproject.toml README.md ./
COPY constraints/ constraints/
COPY src/ src/
RUN pip install -c constraints/cpu.txt . && useradd --uid 10001 --no-create-home reranktune

USER reranktune
EXPOSE 8000
HEALTHCHECK --interval=10s --start-period=60s CMD python -c "import sys, urllib.request; \
sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v1/health/ready', timeout=3).status != 200)"
# --params /dev/null: no params.yaml in the image; flags and built-in defaults only
ENTRYPOINT ["reranktune", "serve", "--params", "/dev/null", "--host", "0.0.0.0", "--port", "8000", \
            "--model-dir", "/models/onnx"]
