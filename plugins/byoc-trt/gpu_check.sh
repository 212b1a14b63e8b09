#!/usr/bin/env bash
# For a maintainer with an NVIDIA GPU: one command that installs byoc-trt with its
# GPU extra into a fresh virtual environment, runs the GPU tests, and prints a
# pass/fail table. Exits non-zero if TensorRT is unusable or any test fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet "$root[test]" "$root/plugins/byoc-ref" "$here[gpu,test]"
"$py" - <<'PY'
import sys
from byoc_trt import TrtBackend
reason = TrtBackend.available()
print("TensorRT backend:", "available" if reason is None else f"UNAVAILABLE: {reason}")
sys.exit(0 if reason is None else 1)
PY
status=0
"$py" -m pytest "$here/tests" -q -p no:cacheprovider --junitxml="$work/gpu.xml" || status=$?
"$py" - "$work/gpu.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

rows = []
for case in ET.parse(sys.argv[1]).iter("testcase"):
    outcome = "PASS"
    for child in case:
        if child.tag in ("failure", "error"):
            outcome = "FAIL"
        elif child.tag == "skipped":
            outcome = "SKIP"
    rows.append((f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}", outcome))
width = max(len(name) for name, _ in rows)
for name, outcome in rows:
    print(f"{name.ljust(width)}  {outcome}")
counts = {o: sum(1 for _, x in rows if x == o) for o in ("PASS", "FAIL", "SKIP")}
print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
PY
exit "$status"
