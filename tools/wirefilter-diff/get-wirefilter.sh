#!/bin/sh
# Puts Cloudflare's wirefilter (engine 0.7.0, the commit below) in ./wirefilter, where
# Cargo.toml expects it. crates.io only has 0.6.1, so it comes from GitHub:
#   ./get-wirefilter.sh                 clones github.com/cloudflare/wirefilter
#   ./get-wirefilter.sh /path/to/repo   takes it from a local clone (or bare git dir)
set -eu
COMMIT=af1a1e960a8fdc44a1a154553470dfbb286afbe8
cd "$(dirname "$0")"
rm -rf wirefilter
mkdir wirefilter
if [ $# -ge 1 ]; then
    git --git-dir="$(git -C "$1" rev-parse --git-dir 2>/dev/null | sed "s|^\.git$|$1/.git|;s|^\.$|$1|")" \
        archive "$COMMIT" | tar -x -C wirefilter
else
    git clone --quiet https://github.com/cloudflare/wirefilter wirefilter
    git -C wirefilter checkout --quiet "$COMMIT"
fi
echo "wirefilter $COMMIT in $(pwd)/wirefilter"
