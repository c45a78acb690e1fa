# Baton: `baton serve` as a non-root user, state on a volume at /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    BATON_DATABASE_URL=sqlite:////data/baton.db

RUN useradd --create-home --uid 10001 baton \
    && mkdir -p /data \
    && chown baton:baton /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY agents ./agents
COPY storage ./storage
COPY bot ./bot
RUN pip install --no-cache-dir .
# Agents, playbooks and MCP servers as files (BATON_CONFIG_DIR is relative to /app).
COPY config ./config

USER 10001
VOLUME ["/data"]
EXPOSE 3000
ENTRYPOINT ["baton"]
CMD ["serve"]
