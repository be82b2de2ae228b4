#!/usr/bin/env bash
# Fetches the intake app's browser libraries listed in web/vendor/packages.txt from the npm
# registry, checks each tarball against its pinned integrity hash, and copies the listed files to
# web/vendor/<name>/ (flat: the file's own name). With --check, fetches into a temporary folder
# instead and fails when a committed file differs from the registry's: what is served is exactly
# the published package. Needs npm (Node.js) and network access to the npm registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-write}
list=web/vendor/packages.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
while read -r name version integrity files; do
    case "$name" in ''|'#'*) continue ;; esac
    (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
    tarball="$work/$name-$version.tgz"
    actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [ "$actual" != "$integrity" ]; then
        echo "vendor: $name@$version: the tarball's hash $actual is not the pinned $integrity" >&2
        exit 1
    fi
    mkdir -p "$work/$name"
    tar -xzf "$tarball" -C "$work/$name"
    for file in $files; do
        target="web/vendor/$name/$(basename "$file")"
        if [ "$mode" = --check ]; then
            if ! cmp -s "$work/$name/$file" "$target"; then
                echo "vendor: $target is not $name@$version's $file (run scripts/web/vendor.sh)" >&2
                status=1
            fi
        else
            mkdir -p "web/vendor/$name"
            cp "$work/$name/$file" "$target"
        fi
    done
done <"$list"
[ "$mode" = --check ] && [ "$status" = 0 ] && echo "vendor: every file in web/vendor is its package's published file" >&2
exit $status
