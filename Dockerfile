# Switchyard's container image: the release binary on distroless.
#
#   docker build -t switchyard:0.1.0 .
#
# Both bases are build arguments, so a mirror can stand in for them:
#   docker build --build-arg BUILD_IMAGE=mirror.example.com/rust:1.95-bookworm \
#     --build-arg RUNTIME_IMAGE=mirror.example.com/distroless/cc-debian12:nonroot .
# Where no base can be pulled, deploy/build-image.sh builds the same image
# with podman from a locally built binary and a local stand-in for the
# runtime base (docs/image.md).
#
# The image holds no routes file: in Kubernetes the ConfigMap dev-proxy-routes
# is mounted as a directory at /etc/switchyard (deploy/kubernetes/). To run
# it elsewhere, mount a directory holding routes.yaml there:
#   docker run -v "$PWD/config:/etc/switchyard:ro" -p 8080:8080 switchyard:0.1.0
# (mount the directory, not the file: a bind-mounted file is pinned to one
# inode and an editor's save-by-rename never reaches the container).

# Rust 1.95, the workspace's declared MSRV (rust-version in Cargo.toml): the
# locked dependency graph (parking_lot 0.13 via pingora-lru) needs 1.95 with
# --locked. bookworm to match the runtime's glibc (distroless debian12): a
# binary built against a newer glibc may not start on an older one.
ARG BUILD_IMAGE=rust:1.95-bookworm
# glibc, libgcc and CA certificates, no shell, no package manager; the
# :nonroot tag runs as uid/gid 65532.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# Build stage: the release binary at /out/switchyard.
FROM ${BUILD_IMAGE} AS build
# pingora-core builds zlib-ng with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts (BuildKit, and buildah/podman) keep the crates.io downloads
# and compiled dependencies between builds. The target dir is a cache, not a
# layer, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchyard \
 && install -D -m 0755 target/release/switchyard /out/switchyard

# Runtime stage.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/switchyard /usr/local/bin/switchyard
USER 65532:65532
# 8080: proxy (--listen). 9901: admin (/health, /ready, /metrics, /routes,
# /reload); it binds 127.0.0.1 unless --admin-listen says otherwise, and the
# Kubernetes manifests set 0.0.0.0:9901 for probes and Prometheus.
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--config", "/etc/switchyard/routes.yaml"]
