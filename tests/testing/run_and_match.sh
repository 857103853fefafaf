#!/usr/bin/env bash
# run_and_match.sh REGEX CMD [ARGS...]: runs CMD, echoes its output, and passes only when CMD exits
# 0 and its output has a line matching REGEX (grep -E). A ctest PASS_REGULAR_EXPRESSION alone
# ignores the exit status: a command that prints the expected row and then fails (a #wrong row,
# a sanitizer report) would pass.
set -uo pipefail
regex=${1:?usage: run_and_match.sh REGEX CMD [ARGS...]}
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if ((rc != 0)); then
  echo "run_and_match.sh: the command exited $rc" >&2
  exit 1
fi
if ! grep -Eq -- "$regex" <<<"$out"; then
  echo "run_and_match.sh: no line of the output matches '$regex'" >&2
  exit 1
fi
