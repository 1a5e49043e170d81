# syntax=docker/dockerfile:1
#
# One image for every Promptcards process (command-api, query-api, projector, runner, relay,
# deliverer and the operator CLI): the orchestrator picks the binary, e.g. `docker run IMAGE relay`, compose's
# `command:` or a Kubernetes container's `command:`.
#
#   docker build -t promptcards .
#
# Stages: `chef` (toolchain + build packages + cargo-chef), `planner` (dependency recipe from the
# manifests and Cargo.lock), `builder` (compiles the dependencies in a layer that is only rebuilt
# when a manifest or Cargo.lock changes, then the workspace) and `runtime` (debian slim, no
# compiler, non-root).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- toolchain ----------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS chef
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# rdkafka is built with its `cmake-build` feature: librdkafka is compiled from source and linked
# statically, which needs cmake, a C++ compiler and pkg-config (plus the curl/OpenSSL headers).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        cmake \
        g++ \
        libcurl4-openssl-dev \
        libssl-dev \
        pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# --- dependency recipe: Cargo.toml files + Cargo.lock only ----------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- build ---------------------------------------------------------------------------------------
FROM chef AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only. This layer stays cached until a manifest or Cargo.lock changes, so editing
# the workspace's own code recompiles just the workspace crates.
RUN cargo chef cook --release --locked --bins --recipe-path recipe.json
COPY . .
# Every binary of the workspace. `--locked`: the build uses exactly the committed Cargo.lock.
# The executables cargo reports are collected into /out/bin for the runtime stage.
RUN cargo build --release --locked --bins --message-format=json-render-diagnostics > /tmp/build.json \
    && mkdir -p /out/bin \
    && grep -o '"executable":"[^"]*"' /tmp/build.json | cut -d'"' -f4 | sort -u \
        | xargs -r -I'{}' install -m 0755 '{}' /out/bin/ \
    && ls -l /out/bin \
    && test -x /out/bin/command-api

# --- runtime -------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates for TLS to managed services; zlib is what the binaries link dynamically today
# (librdkafka is static); libssl3/libcurl4 keep the image ready for rdkafka's `ssl`/`curl` features;
# curl serves container health checks (`curl -f http://127.0.0.1:PORT/readyz`).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        curl \
        libcurl4 \
        libssl3 \
        zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 promptcards \
    && useradd --system --uid 10001 --gid promptcards --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin promptcards

COPY --from=builder /out/bin/ /usr/local/bin/

# Inside a container the processes must listen on every interface, not the loopback-only
# development defaults. Each can still be overridden at run time.
ENV COMMAND_API_ADDR=0.0.0.0:8080 \
    QUERY_API_ADDR=0.0.0.0:8081 \
    PROJECTOR_ADDR=0.0.0.0:8082 \
    RUNNER_ADDR=0.0.0.0:8083 \
    RELAY_ADDR=0.0.0.0:8084 \
    DELIVERER_ADDR=0.0.0.0:8085 \
    RUST_LOG=info

EXPOSE 8080 8081 8082 8083 8084 8085

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# No ENTRYPOINT: the command names the process. Default: the command API.
CMD ["command-api"]
