# Multi-stage build: Rust + node build stage, small Debian runtime with ffmpeg.

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cd frontend && npm ci --no-audit --no-fund && npm run build
RUN cargo build --release --locked -p hlsmark

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hlsmark /usr/local/bin/hlsmark
COPY --from=build /src/frontend/dist /usr/share/hlsmark/frontend
ENV HLSMARK_FRONTEND_DIR=/usr/share/hlsmark/frontend HLSMARK_DATA_DIR=/data
VOLUME /data
EXPOSE 5000
CMD ["hlsmark", "run"]
