#!/bin/sh
# Copy a commit of the engine (default HEAD) plus the current benchmarks/ to a directory, so a benchmark measures
# a fixed version while other people edit the working tree. Results still go to <repo>/benchmarks/results.
#   sh benchmarks/snapshot.sh [commit] [dir]   then   cd <dir> && BENCH_RESULTS_DIR=<repo>/benchmarks/results \
#                                                     /work/main/.venv/bin/python benchmarks/throughput.py
set -e
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=${1:-HEAD}
dir=${2:-/tmp/dwe-bench-snapshot}
rm -rf "$dir" && mkdir -p "$dir"
git -C "$repo" archive "$commit" | tar -x -C "$dir"
rm -rf "$dir/benchmarks" && cp -r "$repo/benchmarks" "$dir/benchmarks" && rm -rf "$dir/benchmarks/results"
git -C "$repo" rev-parse --short "$commit" > "$dir/.snapshot-commit"
echo "$dir (engine at $(cat "$dir/.snapshot-commit"))"
