#!/usr/bin/env bash
# The accuracy commands end to end on the embedded model, on the CPU, at short contexts (a few
# seconds each in a Release build; ctest label `accuracy`, left out of the sanitizer run).
#   accuracy_smoke.sh TIDAL SHARED_DIR MODE    MODE: niah | ppl | calibrate
# niah: full and the calibrated layers (model/tidal-tiny-16k/tidal_policy.json) both retrieve
# every needle at 256 tokens, and --resume of the finished JSON runs nothing and prints the same
# rows. ppl: a short stream; budgets covering it must equal full (the command's #wrong control).
# calibrate: a two-candidate sweep chooses and prints its layers.
set -euo pipefail
tidal=$1 shared=$2 mode=$3
text=$shared/text/austen/persuasion.txt
if [[ ! -f $text ]]; then echo "SKIP: $text is absent"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--device cpu --threads 2 --haystack "$text")
case $mode in
  niah)
    args=("${common[@]}" --lengths 256 --depths 20,80 --needles 1 --policy full,tidal
          --layers calibrated --budget 32 --min-accuracy 100)
    "$tidal" niah "${args[@]}" --json "$work/niah.json" --png-dir "$work/png" > "$work/first.txt"
    test -s "$work/png/niah_full.png"
    grep -E '^ +(full|tidal) ' "$work/first.txt"
    # A finished run resumed: nothing left to run, the same rows.
    "$tidal" niah "${args[@]}" --resume "$work/niah.json" > "$work/second.txt" 2> "$work/err.txt"
    if grep -q 'runs' "$work/err.txt"; then echo "resume ran cases again"; exit 1; fi
    diff <(grep -E '^ +(full|tidal) ' "$work/first.txt") <(grep -E '^ +(full|tidal) ' "$work/second.txt")
    echo "niah: full and calibrated tidal retrieve every needle; resume reran nothing"
    ;;
  ppl)
    "$tidal" ppl --device cpu --threads 2 --text "$text" --tokens 80 --policy full,tidal,quest \
      --budget 16,128 --layers calibrated --json "$work/ppl.json" > "$work/ppl.txt"
    cat "$work/ppl.txt"
    grep -qE '^ +full .* 1\.0000 ' "$work/ppl.txt"
    echo "ppl: the streams ran; budgets covering the stream equal full"
    ;;
  calibrate)
    "$tidal" calibrate "${common[@]}" --lengths 256 --depths 50 --needles 1 --budget 32 \
      --first-layers 2,5 --max-reselect 0 --ppl-tokens 48 --dry-run > "$work/cal.txt"
    cat "$work/cal.txt"
    grep -q '^# chosen: sparse_start ' "$work/cal.txt"
    ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
