# webhook-gateway container image: the package and its built-in providers, nothing else.
#   docker build -t webhook-gateway .
#   docker run --env-file deploy/.env -v "$PWD/deploy/config.yaml:/etc/webhook-gateway/config.yaml:ro" \
#              -p 8080:8080 webhook-gateway
# Stage 1 builds the wheels of uv.lock's runtime set (build tools stay here); stage 2 installs
# only those wheels. Nothing is fetched but from PyPI.
FROM python:3.11-slim AS build
# uv reads uv.lock (the version the Makefile pins); never a Python of its own.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
# The runtime's locked versions and hashes (no dev group): each download is checked against
# its hash. The gateway's own wheel is built with the locked setuptools.
RUN uv export --frozen --no-dev --no-emit-project --output-file requirements.txt \
    && pip wheel --no-cache-dir --no-deps --require-hashes --wheel-dir /wheels -r requirements.txt \
    && uv build --wheel --out-dir /wheels

FROM python:3.11-slim
# A fixed, unprivileged uid: the Kubernetes securityContext (runAsUser 10001) names the same one.
RUN useradd --system --uid 10001 --home-dir /var/lib/webhook-gateway --create-home gateway \
    && mkdir -p /etc/webhook-gateway/plugins
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels
USER 10001
WORKDIR /var/lib/webhook-gateway
# Mount points: the config (a ConfigMap or a bind mount) and, optionally, third-party providers
# (list /etc/webhook-gateway/plugins under plugins.paths). Built-in providers ship in the wheel.
# Secrets come from the environment or ${file:...}; SQLite data, if used, lives in the workdir.
ENV WEBHOOK_GATEWAY_CONFIG=/etc/webhook-gateway/config.yaml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080 9090
# /healthz on the admin listener answers while the process is alive (readiness, which needs the
# store, is /readyz and belongs to the orchestrator). The image has no curl: Python asks instead.
# The admin listener must be reachable on 127.0.0.1:9090 (its default, or 0.0.0.0:9090).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status != 200)"]
# SIGTERM stops accepting, finishes in-flight requests and deliveries (server.shutdown_timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["webhook-gateway"]
CMD ["run"]
