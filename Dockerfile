# The leadrouter image: the `leadrouter` console script, running `leadrouter worker` by default.
# Build from the repo root:  docker build -t leadrouter:0.1.0 .
# The Helm chart (helm/leadrouter) runs it as `worker` and as `topics apply`; it mounts the
# config at LEADROUTER_CONFIG_DIR and the local state at LEADROUTER_DATA_DIR.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/leadrouter
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY workers/ workers/
COPY topics/ topics/
# Every dependency has a binary wheel for Linux: no compiler in the image. The lock pins them.
RUN /opt/leadrouter/bin/pip install --only-binary=:all: -c constraints.txt . \
 && /opt/leadrouter/bin/leadrouter --help >/dev/null

FROM ${PYTHON_IMAGE}
# A fixed numeric user: the chart's podSecurityContext runs as 10001:10001 too.
RUN groupadd --system --gid 10001 leadrouter \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/leadrouter --no-create-home \
      --shell /usr/sbin/nologin leadrouter \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/leadrouter
COPY --from=build /opt/leadrouter /opt/leadrouter
# The repo's default config; the Helm chart mounts its ConfigMap over this directory.
COPY config/ /etc/leadrouter/
ENV PATH=/opt/leadrouter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADROUTER_CONFIG_DIR=/etc/leadrouter \
    LEADROUTER_DATA_DIR=/var/lib/leadrouter \
    LEADROUTER_METRICS_HOST=0.0.0.0 \
    LEADROUTER_METRICS_PORT=9464
USER 10001:10001
WORKDIR /var/lib/leadrouter
EXPOSE 9464
# Exec form: leadrouter is PID 1 and gets SIGTERM itself, finishes its batch and commits.
ENTRYPOINT ["leadrouter"]
CMD ["worker"]
