# Serin's container image: ghcr.io/serin-dev/serin:<Cargo version>.
# tests/packaging.rs checks that the user, entrypoint and default command agree with deploy/ and
# charts/serin.

# The builder matches Cargo.toml's rust-version.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
# The embedded API server crate is a workspace member (the demo and `serin cluster` use it).
COPY crates ./crates
# The demo embeds examples/demo/*.yaml.
COPY examples ./examples
RUN cargo build --release --locked --bin serin

# glibc and libgcc, no shell, no package manager; runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/serin /serin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/serin"]
CMD ["controller"]
