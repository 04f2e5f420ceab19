# The durable-streams-server container: one static binary on an empty base.
#
#   docker build -t durable-streams .
#   mkdir -p data && sudo chown 65532:65532 data     # or: docker run --user "$(id -u):$(id -g)" ...
#   docker run -d -p 4437:4437 -v "$(pwd)/data:/data" --name durable-streams durable-streams
#
# Streams are stored in /data/streams (data_dir), Caddy's own state (autosaved
# config, certificates if you turn on HTTPS) in /data/caddy. The server runs as
# uid/gid 65532, which must be able to write /data: a host directory that
# Docker creates for -v is owned by root, so chown it to 65532:65532 first, or
# run with --user set to the directory's owner (any uid works: nothing in the
# image depends on the user's name or home directory).

# ---- builder: the static binary and the final image's few files ----------
# The binary is built exactly as `make dist` builds linux_amd64/linux_arm64
# (tools/release/build.sh: cgo with the vendored LMDB and simdjson, static
# glibc/libstdc++, netgo/osusergo, stripped), for the builder's own
# architecture with the image's gcc/g++. What is tested here is that binary
# (make dist, tests/release) in this file's final stage (tests/container,
# with buildah): no registry is reachable to pull the golang image, so this
# stage itself has not been run.
FROM golang:1.26-bookworm AS builder
WORKDIR /build
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN arch=$(go env GOARCH) \
 && CC_LINUX_ARM64=gcc CXX_LINUX_ARM64=g++ \
    tools/release/build.sh "linux_$arch" /rootfs/usr/local/bin/durable-streams-server \
 && if ldd /rootfs/usr/local/bin/durable-streams-server >/dev/null 2>&1; then \
      echo "durable-streams-server is not statically linked" >&2; exit 1; fi \
 && /rootfs/usr/local/bin/durable-streams-server version
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/durable-streams /rootfs/tmp /rootfs-data/data \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && cp packaging/docker/Caddyfile /rootfs/etc/durable-streams/Caddyfile \
 && echo 'root:x:0:0:root:/:/sbin/nologin' > /rootfs/etc/passwd \
 && echo 'durable-streams:x:65532:65532:durable-streams:/data:/sbin/nologin' >> /rootfs/etc/passwd \
 && echo 'root:x:0:' > /rootfs/etc/group \
 && echo 'durable-streams:x:65532:' >> /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp \
 && chmod 0755 /rootfs-data/data

# ---- the image: nothing but the binary, its config and CA certificates -----
FROM scratch
COPY --from=builder /rootfs/ /
# /data is copied as an entry of its parent so that it, not only its content,
# belongs to the user (COPY does not chown a destination that already exists).
COPY --from=builder --chown=65532:65532 /rootfs-data/ /
ENV HOME=/data \
    XDG_DATA_HOME=/data/caddy/data \
    XDG_CONFIG_HOME=/data/caddy/config
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 4437
# No shell in the image: the binary checks its own /health.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/durable-streams-server", "health", "--url", "http://127.0.0.1:4437/health", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/durable-streams-server"]
CMD ["run", "--config", "/etc/durable-streams/Caddyfile"]
