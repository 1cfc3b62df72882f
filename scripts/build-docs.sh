#!/usr/bin/env bash
# Builds the tutorial book into docs/book. mdBook only logs a listing it cannot include
# and still exits 0, so this fails on any warning or error it prints and on any
# `{{#include …}}` left unexpanded in the HTML.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MDBOOK="${MDBOOK:-$ROOT/.tools/bin/mdbook}"
[[ -x "$MDBOOK" ]] || "$ROOT/scripts/setup.sh" mdbook
# mdBook includes nothing, silently, for an anchor that does not exist: check them first.
status=0
while IFS= read -r link; do
    chapter="${link%%:*}"
    spec="${link#*\{\{#include }"; spec="${spec%\}\}}"
    file="${spec%%:*}"; anchor=""
    [[ "$spec" == *:* ]] && anchor="${spec#*:}"
    path="$(dirname "$chapter")/$file"
    if [[ ! -f "$path" ]]; then
        echo "build-docs: $chapter includes missing file $file" >&2; status=1
    elif [[ -n "$anchor" && ! "$anchor" =~ ^[0-9:]+$ ]] && ! grep -q "ANCHOR: $anchor\b" "$path"; then
        echo "build-docs: $chapter includes anchor '$anchor' that $file does not have" >&2; status=1
    fi
done < <(grep -o '{{#include [^}]*}}' -r "$ROOT/docs/src" --include='*.md')
[[ $status -eq 0 ]] || exit 1

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$MDBOOK" build "$ROOT/docs" 2>&1 | tee "$log"
if grep -E '\b(ERROR|WARN)\b' "$log" >/dev/null; then
    echo "build-docs: mdBook reported problems (above)" >&2
    exit 1
fi
if grep -rl '{{#' "$ROOT/docs/book" --include='*.html' >/dev/null; then
    echo "build-docs: unexpanded mdBook links in: $(grep -rl '{{#' "$ROOT/docs/book" --include='*.html' | tr '\n' ' ')" >&2
    exit 1
fi
echo "build-docs: book written to docs/book"
