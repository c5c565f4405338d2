#!/bin/sh
# The fake bootstrap's entry (see fake-bootstrap.mjs): records its pid at once and decides
# whether this start hangs, in sh, so that a slow node start on a busy machine can neither
# be mistaken for a hang nor miscount the starts. `exec` keeps the pid the shim spawned.
dir=$(dirname "$IMGEDGE_CONFIG")
echo "$$" >>"$dir/starts"
starts=$(wc -l <"$dir/starts")
hangs=$(sed -n 's/.*"hang_starts": *\(-\{0,1\}[0-9]*\).*/\1/p' "$IMGEDGE_CONFIG")
hangs=${hangs:-0}
if [ "$hangs" -lt 0 ] || [ "$starts" -le "$hangs" ]; then
  exec sleep 3600 # stuck in "init": never polls
fi
# The shim runs it through a symlink named bootstrap: find the real directory.
exec node "$(dirname "$(readlink -f "$0")")/fake-bootstrap.mjs"
