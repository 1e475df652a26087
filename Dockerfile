# Multi-stage build: Rust + node build stage, small Debian runtime with ffmpeg.

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cd frontend && npm ci --no-audit --no-fund && npm run build
RUN cargo build --release --locked -p hlsmark

FROM debian:bookworm-slim
# WITH_CHROMIUM=true: the image variant for `page:` sources (Debian's chromium and a font;
# chromium alone installs 290 MB, its libraries come on top); the default image has no browser. docker-compose.yml's `page` service builds
# it as hlsmark:page.
ARG WITH_CHROMIUM=false
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg curl ca-certificates \
 && if [ "$WITH_CHROMIUM" = true ]; then \
      apt-get install -y --no-install-recommends chromium fonts-dejavu-core; \
    fi \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hlsmark /usr/local/bin/hlsmark
# A documented multi-stream config: HLSMARK_CONFIG=/usr/share/hlsmark/examples/hlsmark.toml
COPY --from=build /src/examples/hlsmark.toml /usr/share/hlsmark/examples/hlsmark.toml
# The player page is embedded in the binary (built before cargo above).
ENV HLSMARK_DATA_DIR=/data
VOLUME /data
EXPOSE 5000
CMD ["hlsmark", "run"]
