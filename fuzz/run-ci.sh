#!/usr/bin/env bash
# Short coverage-guided fuzzing run of every target, for CI: `fuzz/run-ci.sh [SECONDS_PER_TARGET]`
# (default 20). Installs cargo-fuzz if it is missing, builds every target once, runs each one for
# the given time on a temporary copy of its seed corpus (the repository is never modified), and
# fails if any target crashes, panics, times out or runs out of memory. Prints, per target:
# executions, coverage (cov = edges, ft = features), corpus size before/after, and findings.
#
# Stable toolchain only: cargo-fuzz passes a few -Z flags, which `RUSTC_BOOTSTRAP=1` allows on
# stable rustc. It is set for the fuzz build command alone, which uses its own target dir
# (fuzz/target), so the workspace build, its cache and the plugin hashes are untouched.
set -euo pipefail

SECS="${1:-20}"
FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
TRIPLE="x86_64-unknown-linux-gnu"
BIN="$FUZZ_DIR/target/$TRIPLE/release"
TARGETS=(cose_envelope receipt ledger_entry checkpoint_note ledger_replay snp_evidence node_attestation jwt http_request route_bodies analytics_sql)
CARGO_FUZZ_VERSION="0.13.2"
SNP_FIXTURES="$ROOT/../shared/fixtures/snp"

started=$(date +%s)
stamp() { echo "[fuzz $(( $(date +%s) - started ))s] $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    stamp "installing cargo-fuzz $CARGO_FUZZ_VERSION (about 35 s)"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

stamp "building ${#TARGETS[@]} targets and the seed generator (cold: about 2-3 min on 2 cores)"
cd "$FUZZ_DIR"
# --sanitizer none: Rust code here is memory-safe (unsafe_code is denied); ASan would halve the
# executions for little gain. -a keeps debug assertions and overflow checks on.
CARGO_TARGET_DIR="$FUZZ_DIR/target" RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a --sanitizer none

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cgs-fuzz-ci.XXXXXX")"
# ledger_replay writes its ledger.redb under /dev/shm/cgs-fuzz-ledger-<pid>.
trap 'rm -rf "$WORK" /dev/shm/cgs-fuzz-ledger-*' EXIT

EXTRA_SNP=""
if [ -d "$SNP_FIXTURES" ]; then
    # Real SEV-SNP evidence (read-only, never copied into the repository): turned into evidence
    # JSON and raw-report inputs in a temporary directory, passed as an extra corpus.
    "$BIN/seed" --snp-fixtures "$SNP_FIXTURES" "$WORK/snp-fixtures" >/dev/null
    EXTRA_SNP="$WORK/snp-fixtures"
fi

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    corpus="$WORK/$t/corpus"
    art="$WORK/$t/artifacts/"
    mkdir -p "$corpus" "$art"
    cp "$FUZZ_DIR/corpus/$t/"* "$corpus/"
    before=$(find "$corpus" -type f | wc -l)
    extra=()
    if [ "$t" = snp_evidence ] && [ -n "$EXTRA_SNP" ]; then extra=("$EXTRA_SNP"); fi
    stamp "running $t for ${SECS}s"
    set +e
    "$BIN/$t" "$corpus" "${extra[@]}" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art" >"$WORK/$t/log" 2>&1
    rc=$?
    set -e
    log="$WORK/$t/log"
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
    after=$(find "$corpus" -type f | wc -l)
    findings=$(find "$art" -type f | wc -l)
    line=$(printf '%-16s execs %9s  cov %5s  ft %6s  corpus %4s -> %4s  findings %s' \
        "$t" "$execs" "$cov" "$ft" "$before" "$after" "$findings")
    summary+=("$line")
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        failed+=("$t")
        echo "---- $t FAILED (exit $rc); the end of its log:"
        grep -v '^#[0-9]' "$log" | tail -40
        for f in "$art"*; do
            [ -f "$f" ] || continue
            echo "---- finding $(basename "$f") (base64; save it and run: fuzz/target/$TRIPLE/release/$t FILE)"
            base64 -w0 "$f" | head -c 8192
            echo
        done
    fi
done

echo
echo "fuzzing summary (${SECS}s per target, $(( $(date +%s) - started ))s in all):"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
