# hlsmark tasks: each is a thin call of the real command.

default:
    @just --list

# Run everything in one process (generator + API + embedded store) on :5000.
run *ARGS:
    ./scripts/run.sh {{ARGS}}

# Run the docker compose stack (redis, generator, api).
up:
    docker compose up --build

# Every gate and every test (installs what is missing).
test:
    ./scripts/test.sh

# Benchmarks (store, generator, API); see README "Performance".
bench:
    ./scripts/bench.sh

# The gates only: formatting, clippy, hakari.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo hakari generate --diff
    cargo hakari manage-deps --dry-run

fmt:
    cargo fmt --all
    cargo hakari generate

# Browser end-to-end tests only.
e2e:
    cargo build -p hlsmark
    cd frontend && npm ci && npm run build && npm run test:browser
