# syntax=docker/dockerfile:1
# token-server in a container: a release build, run as an unprivileged user, data in /data.
#
#   docker build -t token-server .
#   docker run -d -p 6409:6409 -p 8409:8409 -v token-server-data:/data \
#       -e TOKEN_SERVER_PASSWORD=change-me token-server
#
# Every setting can be passed as TOKEN_SERVER_* (docs/OPERATIONS.md) or as flags after the
# image name. Without a password, protected mode refuses clients from outside the container.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin token-server \
    && cp target/release/token-server /usr/local/bin/token-server

FROM debian:bookworm-slim
# curl is for the health check only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin token-server \
    && mkdir -p /data \
    && chown token-server:token-server /data
COPY --from=build /usr/local/bin/token-server /usr/local/bin/token-server
USER token-server
VOLUME /data
EXPOSE 6409 8409
ENV TOKEN_SERVER_BIND=0.0.0.0 \
    TOKEN_SERVER_DIR=/data \
    TOKEN_SERVER_LOG_FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8409/ready || exit 1
# SIGTERM: stop accepting, finish in-flight commands, sync the logs, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["token-server"]
