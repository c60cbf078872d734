# webhook-gateway container image: the package and its built-in providers, nothing else.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/webhook-gateway --create-home gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /var/lib/webhook-gateway
# The config is mounted here (ConfigMap); secrets come from the environment or ${file:...}.
ENV WEBHOOK_GATEWAY_CONFIG=/etc/webhook-gateway/config.yaml \
    PYTHONUNBUFFERED=1
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["webhook-gateway"]
CMD ["run"]
