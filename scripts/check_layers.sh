#!/usr/bin/env bash
# The dependency rule of docs/ARCHITECTURE.md: a folder may include only itself and the folders
# listed for it below. Reads every #include "..." of src/*/, optim/, losses/ and data/; prints each
# violation as FILE:LINE: FOLDER may not include HEADER, and exits 1 if there is any.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

declare -A allowed=(
  [base]=""
  [optim]="base"
  [losses]="base"
  [data]="base"
  [kernels]="base"
  [model]="base kernels losses"
  [io]="base model data"
  [quant]="base kernels model io"
  [rotation]="base kernels model io quant optim"
  [dist]="base"
  [cli]="base kernels model io quant"
  [train]="base kernels model io quant rotation dist cli optim losses data"
)

# The folder a header belongs to: src/<folder>/x.h -> folder; optim/x.h -> optim.
folder_of() {
  case $1 in
    src/*/*) local rest=${1#src/}; echo "${rest%%/*}" ;;
    */*) echo "${1%%/*}" ;;
    *) echo "" ;;
  esac
}

status=0
checked=0
for dir in "${!allowed[@]}"; do
  path=src/$dir
  [[ $dir == optim || $dir == losses || $dir == data ]] && path=$dir
  [[ -d $path ]] || { echo "check_layers: folder $path is missing (update scripts/check_layers.sh)"; status=1; continue; }
  while IFS=: read -r file line text; do
    header=$(sed -E 's/^[[:space:]]*#include "([^"]+)".*/\1/' <<<"$text")
    dep=$(folder_of "$header")
    checked=$((checked + 1))
    [[ -z $dep || $dep == "$dir" ]] && continue
    if [[ -z ${allowed[$dep]+x} ]]; then
      echo "$file:$line: $dir includes $header from an unknown folder"; status=1; continue
    fi
    if [[ " ${allowed[$dir]} " != *" $dep "* ]]; then
      echo "$file:$line: $dir may not include $header ($dep is not below $dir)"; status=1
    fi
  done < <(grep -Hn '^[[:space:]]*#include "' "$path"/*.h "$path"/*.cpp 2>/dev/null || true)
done
# Every folder of src/ must be in the table above.
for d in src/*/; do
  d=${d#src/}; d=${d%/}
  [[ -n ${allowed[$d]+x} ]] || { echo "check_layers: src/$d is not in the dependency table"; status=1; }
done
((status == 0)) && echo "check_layers: $checked includes follow the dependency rule"
exit $status
