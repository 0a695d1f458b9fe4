#!/usr/bin/env bash
# Refresh the web interface's front-end libraries from the npm registry (no CDN, no build step).
#
# Each package is fetched with `npm pack` at the exact version pinned below; its built files and
# its licence are copied into src/mercure/webgui/static/vendor/, and VENDORED.json records name,
# version, licence and the sha256 of every file (tests/webgui/test_vendored.py checks them).
# Commit what this writes. To upgrade, change a version here, run it, look at the diff, test.
set -euo pipefail
cd "$(dirname "$0")/.."

# package@version  then  file-in-tarball:name-in-vendor ...
PACKAGES=(
  "htmx.org@2.0.11 dist/htmx.min.js:htmx.min.js LICENSE:htmx.LICENSE"
  "@picocss/pico@2.1.1 css/pico.min.css:pico.min.css LICENSE.md:pico.LICENSE"
  "uplot@1.6.32 dist/uPlot.iife.min.js:uPlot.iife.min.js dist/uPlot.min.css:uPlot.min.css LICENSE:uPlot.LICENSE"
)

vendor=src/mercure/webgui/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v npm >/dev/null || { echo "refresh-frontend.sh: npm is needed (apt-get install npm)" >&2; exit 1; }

rm -rf "$vendor"
mkdir -p "$vendor"
manifest="$work/manifest.jsonl"
: > "$manifest"
for entry in "${PACKAGES[@]}"; do
  read -r spec files <<<"$entry"
  name=${spec%@*}
  version=${spec##*@}
  echo "refresh-frontend.sh: $name $version"
  tarball=$(cd "$work" && npm pack --silent "$spec")
  mkdir -p "$work/$name"
  tar -xzf "$work/$tarball" -C "$work/$name"
  licence=$(node -p "require('$work/$name/package/package.json').license")
  for pair in $files; do
    source=${pair%%:*}
    target=${pair##*:}
    cp "$work/$name/package/$source" "$vendor/$target"
    sha=$(sha256sum "$vendor/$target" | cut -d' ' -f1)
    printf '{"package":"%s","version":"%s","licence":"%s","file":"%s","source":"%s","sha256":"%s"}\n' \
      "$name" "$version" "$licence" "$target" "$source" "$sha" >> "$manifest"
  done
done

python3 - "$manifest" "$vendor/VENDORED.json" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
packages = {}
for row in rows:
    package = packages.setdefault(row["package"], {
        "name": row["package"], "version": row["version"], "licence": row["licence"],
        "source": f"npm pack {row['package']}@{row['version']}", "files": {}})
    package["files"][row["file"]] = {"from": row["source"], "sha256": row["sha256"]}
document = {"comment": "Written by scripts/refresh-frontend.sh; do not edit by hand.",
            "packages": list(packages.values())}
with open(sys.argv[2], "w") as handle:
    json.dump(document, handle, indent=2)
    handle.write("\n")
PY
echo "refresh-frontend.sh: wrote $vendor (see VENDORED.json)"
