#!/usr/bin/env bash
# logits_dump on stories260K: after BOS its first logits row begins with the values transformers
# gives (../shared/models/stories260K/logits_after_bos_first5.txt), read back from the .npy, and
# the .json holds the greedy tokens.
#   logits_dump_smoke.sh LOGITS_DUMP MODEL_DIR
set -euo pipefail
bin=$1 model=$2
if [[ ! -f $model/config.json ]]; then echo "SKIP: $model is absent"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 1 > "$work/ids"
"$bin" --model "$model" --prompt-ids-file "$work/ids" --steps 4 --out "$work/dump"
grep -q '"tokens":\[' "$work/dump.json"
head -c 6 "$work/dump.npy" | od -c | grep -q 'N   U   M   P   Y'
# The header's length is the little-endian u16 at byte 8; the data follows it.
len=$(od -A n -t u2 -j 8 -N 2 "$work/dump.npy" | tr -d ' ')
read -r -a got <<< "$(od -A n -t f4 -j $((10 + len)) -N 20 "$work/dump.npy" | tr -s " \n" "  ")"
want=(-6.22291 8.40434 -6.22374 -6.22254 -6.22195)
for i in 0 1 2 3 4; do
  awk -v g="${got[$i]}" -v w="${want[$i]}" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= 1e-4) }' ||
    { echo "logit $i: got ${got[$i]}, want ${want[$i]}"; exit 1; }
done
echo "logits_dump: first row matches transformers (${got[*]})"
