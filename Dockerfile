# The tenantwatch image: the `tenantwatch` CLI (workers, writer, migrations, generator, report).
# Wheels are built in a first stage (compilers stay out of the runtime image).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY agents ./agents
COPY pipeline ./pipeline
COPY dashboards ./dashboards
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TW_DATA_DIR=/var/lib/tenantwatch \
    TW_CACHE_DIR=/var/lib/tenantwatch/cache
RUN useradd --system --uid 10001 --home-dir /var/lib/tenantwatch tenantwatch \
    && mkdir -p /var/lib/tenantwatch/cache \
    && chown -R tenantwatch /var/lib/tenantwatch
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels tenantwatch && rm -rf /wheels
USER tenantwatch
WORKDIR /var/lib/tenantwatch
ENTRYPOINT ["tenantwatch"]
CMD ["--help"]
