#!/bin/sh
# flaky.sh FAILS [EXIT_CODE]
# Fails the first FAILS attempts of the action (exit EXIT_CODE, default 1), then
# succeeds. redrive sets REDRIVE_ATTEMPT (1 = first try) for every attempt.
fails=${1:-1}
code=${2:-1}
attempt=${REDRIVE_ATTEMPT:-1}
if [ "$attempt" -le "$fails" ]; then
  echo "flaky: simulated failure on attempt $attempt (fails the first $fails)" >&2
  exit "$code"
fi
printf '{"attempt": %s}\n' "$attempt" > "$REDRIVE_OUTPUT_FILE"
echo "flaky: succeeded on attempt $attempt"
