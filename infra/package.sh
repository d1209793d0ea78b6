#!/usr/bin/env bash
# Builds the Lambda's deployment package: skald-lambda for Linux on arm64 (Graviton), as the
# `bootstrap` executable the provided.al2023 runtime starts, zipped.
#
#   infra/package.sh            -> $CARGO_TARGET_DIR/lambda/skald-lambda/bootstrap.zip
#
# It installs what it needs the first time, from PyPI into a venv beside the build output
# ($CARGO_TARGET_DIR/lambda-venv, else target/lambda-venv): cargo-lambda, and ziglang, which
# cargo-lambda uses as the cross linker (through cargo-zigbuild) so no aarch64 gcc is needed. It
# also adds the rustup target aarch64-unknown-linux-gnu when it is missing. A release build of
# the AWS SDK set takes 10 to 15 minutes on two cores the first time; seconds after that.
#
# Not run by CI: CI checks the template and the code, not the release artifact.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.14.1

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
venv="$target_dir/lambda-venv"
marker="$venv/.skald-lambda-$CARGO_LAMBDA_VERSION-$ZIGLANG_VERSION"

if [ ! -f "$marker" ]; then
    echo "== installing cargo-lambda $CARGO_LAMBDA_VERSION and ziglang $ZIGLANG_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
    touch "$marker"
fi
# cargo-lambda finds zig on PATH, or as the `ziglang` module of the python it is run beside.
export PATH="$venv/bin:$PATH"

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    echo "== adding the rustup target aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
fi

echo "== building skald-lambda for arm64 (release)"
cargo lambda build --release --arm64 --package skald-handlers --bin skald-lambda --output-format zip \
    --lambda-dir "$target_dir/lambda"

zip="$target_dir/lambda/skald-lambda/bootstrap.zip"
ls -l "$zip"
echo "upload it with: aws s3 cp $zip s3://YOUR-BUCKET/skald/skald-lambda-\$(git rev-parse --short HEAD).zip"
