# Sourced (not run) by a device call's script at the root of the checkout the device tool copies
# (the call scripts under benchmarks/results/), with the packs it carries in .carry/:
#   source launch/device_call.sh NAME PACK:DIR [PACK:DIR ...]
# - $O = /tmp/NAME, tarred into $OUT/NAME.tar.xz when the script exits (what comes back);
# - the /work links that binaries built here expect (/work/bld, /work/main: this checkout;
#   /work/shared: .carry/shared, the fixtures copied from ../shared), where no such directory is;
# - each .carry/PACK.tar.xz (launch/device_pack.sh) unpacked under /tmp/DIR (its build/ and lib/);
#   LD_LIBRARY_PATH gets the first one's lib/;
# - el MESSAGE: MESSAGE after the seconds since sourcing;
#   row FILE TAG: each `tidal bench` row of FILE as context, policy, granularity, ms, floor and
#   multiple of the floor.
[[ $# -ge 2 ]] || { echo "usage: source launch/device_call.sh NAME PACK:DIR ..." >&2; return 2; }
set -u
O=/tmp/$1
shift
mkdir -p "$O"
trap 'tar -C "$O" -cJf "$OUT/$(basename "$O").tar.xz" .' EXIT
mkdir -p /work
link() {  # a link at $2 to $1, unless $2 is a real directory (a development machine's tree)
  if [[ -d $2 && ! -L $2 ]]; then return 0; fi
  ln -sfn "$1" "$2"
}
link "$PWD" /work/bld
link "$PWD" /work/main
link "$PWD/.carry/shared" /work/shared
first_lib=""
for spec in "$@"; do
  pack=${spec%%:*}
  dir=/tmp/${spec#*:}
  rm -rf "$dir" && mkdir -p "$dir"
  if ! tar -xJf ".carry/$pack.tar.xz" -C "$dir"; then
    echo "device_call: cannot unpack .carry/$pack.tar.xz" >&2
    exit 1
  fi
  [[ -n $first_lib ]] || first_lib=$dir/lib
done
export LD_LIBRARY_PATH=$first_lib:${LD_LIBRARY_PATH:-}
device_call_t0=$(date +%s)
el() { echo "[$(($(date +%s) - device_call_t0)) s] $*"; }
row() {  # the device's name is several words: the preset is the field before context and batch
  grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{
    p = 2; while (p < NF - 2 && !($(p + 1) ~ /^[0-9]+$/ && $(p + 2) ~ /^[0-9]+$/)) ++p
    printf "%-14s %s %s %s %s ms=%s floor=%s x=%.3f\n", t, $p, $(p + 1), $(p + 3), $(p + 4),
      $(p + 7), $(NF - 5), $(p + 7) / $(NF - 5)
  }'
}
