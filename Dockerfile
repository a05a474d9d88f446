# One image for every role: core, facade, node-sim (the command picks).
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY generated ./generated
RUN pip install .
RUN useradd --system --uid 10001 atoma
USER atoma
# 8080: the facade; 50051: the core (gRPC); 9464: the core's /metrics (core.metrics_listen).
EXPOSE 8080 50051 9464
ENTRYPOINT ["atoma-proxy"]
CMD ["serve"]
