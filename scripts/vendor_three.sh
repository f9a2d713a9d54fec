#!/usr/bin/env bash
# Copy the parts of three.js the web viewer uses from node_modules (package.json pins the version)
# into unreal_bridge/viewer/vendor, so the viewer ships inside the Python package and works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules/three
dst=unreal_bridge/viewer/vendor/three
[ -d "$src" ] || { echo "run npm install first" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$dst/build" "$dst/examples/jsm/loaders" "$dst/examples/jsm/utils"
cp "$src/LICENSE" "$dst/"
cp "$src/build/three.module.js" "$src/build/three.core.js" "$dst/build/"
cp "$src/examples/jsm/loaders/GLTFLoader.js" "$dst/examples/jsm/loaders/"
cp "$src/examples/jsm/utils/BufferGeometryUtils.js" "$src/examples/jsm/utils/SkeletonUtils.js" "$dst/examples/jsm/utils/"
node -e "console.log(require('./$src/package.json').version)" > "$dst/VERSION"
echo "vendored three $(cat "$dst/VERSION") into $dst"
