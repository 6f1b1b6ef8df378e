# The hmsim image: the `hmsim` binary alone, for `hmsim explore` shards on Kubernetes
# (deploy/k8s/explore-job.yaml) or any container runner.
#   docker build -t hmsim:latest .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p sim --locked && cp target/release/hmsim /usr/local/bin/hmsim

FROM debian:bookworm-slim
COPY --from=build /usr/local/bin/hmsim /usr/local/bin/hmsim
# `hmsim explore` starts one `hmsim run` per seed: the binary finds itself.
WORKDIR /work
ENTRYPOINT ["hmsim"]
CMD ["--help"]
