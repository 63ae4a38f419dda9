#!/usr/bin/env bash
# Vendor the dashboard's JavaScript from the npm registry at pinned versions, so the
# package serves it (no CDN) and `make test` needs no npm. Run after changing a version
# below, then commit src/lqs/api/static/vendor/. Needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."

# package@version  built file (in the tarball)  licence file (in the tarball)
PACKAGES=(
  "htmx.org@2.0.11 dist/htmx.min.js LICENSE"
  "chart.js@4.6.2 dist/chart.umd.min.js LICENSE.md"
)

vendor_dir=src/lqs/api/static/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$vendor_dir"
mkdir -p "$vendor_dir"
{
  echo "# Vendored by scripts/vendor_js.sh (npm pack); sha256 of each file as committed."
  echo "# package version file sha256"
} >"$work/VERSIONS"

for entry in "${PACKAGES[@]}"; do
  read -r spec built licence <<<"$entry"
  name="${spec%@*}"
  version="${spec##*@}"
  tarball="$(cd "$work" && npm pack --silent "$spec")"
  mkdir -p "$work/$name" "$vendor_dir/$name"
  tar -xzf "$work/$tarball" -C "$work/$name"
  for file in "$built" "$licence"; do
    cp "$work/$name/package/$file" "$vendor_dir/$name/"
    base="$(basename "$file")"
    digest="$(sha256sum "$vendor_dir/$name/$base" | cut -d' ' -f1)"
    echo "$name $version $base $digest" >>"$work/VERSIONS"
  done
done
cp "$work/VERSIONS" "$vendor_dir/VERSIONS"
echo "vendored into $vendor_dir:"
cat "$vendor_dir/VERSIONS"
