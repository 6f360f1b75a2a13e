#!/usr/bin/env bash
# Builds sdk-docs/example the way a third-party plugin author does: against the plugin SDK as
# `cmake --install --component plugin-sdk` lays it out, never against this source tree. Then checks
# what the hub will check (exported entry point, ABI, name), signs the plugin with the installed
# helm-plugin tool, verifies the signature, checks that a changed manifest or an untrusted key
# does not verify, and finally lets helm_add_plugin(SIGN_KEY) sign at build time and checks that
# the `cmake --install`ed plugin directory still verifies.
#
#   out_of_tree_build.sh SOURCE_DIR BUILD_DIR
#
# SOURCE_DIR is the Helm Hub repository, BUILD_DIR a build tree of it in which the helm-plugin
# target has been built (the test builds it there if it is missing). Everything else happens in
# a temporary directory that is removed on exit; HELM_SDK_TEST_KEEP_TMP=1 keeps it for debugging.
set -euo pipefail

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if [[ $# -ne 2 ]]; then
  echo "usage: $0 SOURCE_DIR BUILD_DIR" >&2
  exit 2
fi
source_dir=$(cd "$1" && pwd) || fail "source directory $1 does not exist"
build_dir=$(cd "$2" && pwd) || fail "build directory $2 does not exist"
example_dir="$source_dir/sdk-docs/example"
[[ -f "$example_dir/CMakeLists.txt" ]] || fail "$example_dir/CMakeLists.txt is missing"
[[ -f "$build_dir/CMakeCache.txt" ]] || fail "$build_dir is not a configured CMake build tree"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/helm-sdk-oot.XXXXXX")
cleanup() {
  if [[ "${HELM_SDK_TEST_KEEP_TMP:-0}" == 1 ]]; then
    echo "kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

prefix="$tmp/prefix"
example_build="$tmp/example-build"
log="$tmp/step.log"

# Runs a command quietly; on failure prints its output and fails with `what`.
step() {
  local what=$1
  shift
  echo "--- $what"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "$what: \`$*\` exited non-zero (output above)"
  fi
}

# 1. Install the SDK alone. The install script copies the helm-plugin binary from the build tree,
#    so build that target first when the tree does not have it yet.
echo "--- installing component plugin-sdk of $build_dir into $prefix"
if ! cmake --install "$build_dir" --component plugin-sdk --prefix "$prefix" >"$log" 2>&1; then
  echo "install failed; building the SDK targets in $build_dir and retrying" >&2
  step "building target helm-plugin in $build_dir" \
    cmake --build "$build_dir" --target helm-plugin
  step "installing component plugin-sdk" \
    cmake --install "$build_dir" --component plugin-sdk --prefix "$prefix"
fi
for file in include/helm/plugin_abi.h include/helm/plugin.hpp \
            lib/cmake/HelmPluginSDK/HelmPluginSDKConfig.cmake; do
  [[ -f "$prefix/$file" ]] || fail "the plugin-sdk install lacks $file"
done
tool="$prefix/bin/helm-plugin"
[[ -x "$tool" ]] || fail "the plugin-sdk install lacks an executable bin/helm-plugin"

# 2. Configure and build the example against the installed SDK only.
generator_args=()
if command -v ninja >/dev/null 2>&1; then
  generator_args=(-G Ninja)
fi
launcher_args=()
if command -v ccache >/dev/null 2>&1; then
  launcher_args=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
step "configuring sdk-docs/example against the installed SDK" \
  cmake -S "$example_dir" -B "$example_build" "${generator_args[@]}" "${launcher_args[@]}" \
        -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo
# The example must have found the installed package, not some other copy.
grep -q "^HelmPluginSDK_DIR:PATH=$prefix/" "$example_build/CMakeCache.txt" ||
  fail "the example found HelmPluginSDK somewhere other than $prefix: $(grep '^HelmPluginSDK_DIR' "$example_build/CMakeCache.txt")"
step "building sdk-docs/example" cmake --build "$example_build"

plugin_dir="$example_build/plugins/example-greet"
library="$plugin_dir/example-greet.so"
manifest="$plugin_dir/manifest.json"
[[ -f "$library" ]] || fail "the build did not produce $library"
[[ -f "$manifest" ]] || fail "the build did not copy manifest.json into $plugin_dir"
cmp -s "$manifest" "$example_dir/manifest.json" ||
  fail "$manifest differs from $example_dir/manifest.json"
[[ ! -e "$plugin_dir/signature" ]] || fail "an unsigned build left a signature in $plugin_dir"

# 3. The library exports helm_plugin_entry, and nothing of the SDK, of nlohmann/json or of the
#    plugin itself. (Instantiations of std:: templates keep default visibility under
#    -fvisibility=hidden, so a few of those are exported too; they are not checked here.)
if command -v nm >/dev/null 2>&1 && command -v c++filt >/dev/null 2>&1; then
  exports=$(nm -D --defined-only "$library" | awk '{print $3}')
  grep -qx helm_plugin_entry <<<"$exports" || fail "$library does not export helm_plugin_entry"
  leaked=$(grep -vx helm_plugin_entry <<<"$exports" | c++filt |
           grep -E 'helm::|nlohmann::|anonymous namespace|GreetPlugin' || true)
  [[ -z "$leaked" ]] || fail "$library exports symbols that should be hidden: $leaked"
else
  echo "nm or c++filt not found; skipping the exported-symbol check"
fi

# The entry point answers as the hub will read it: ABI major 1 and the manifest's name.
if command -v python3 >/dev/null 2>&1; then
  step "loading $library and calling helm_plugin_entry" python3 - "$library" <<'PY'
import ctypes, os, sys

class EntryHead(ctypes.Structure):
    _fields_ = [("abi_major", ctypes.c_uint16), ("abi_minor", ctypes.c_uint16),
                ("struct_size", ctypes.c_uint32), ("name", ctypes.c_char_p)]

library = ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_LOCAL)
entry = library.helm_plugin_entry
entry.restype = ctypes.POINTER(EntryHead)
head = entry().contents
minimum = 8 + 9 * ctypes.sizeof(ctypes.c_void_p)  # HELM_PLUGIN_V1_0_SIZE
if head.abi_major != 1 or head.name != b"example-greet" or head.struct_size < minimum:
    sys.exit("helm_plugin_entry() reports ABI %d.%d, struct_size %d, name %r; expected 1.x, >= %d, "
             "b'example-greet'" % (head.abi_major, head.abi_minor, head.struct_size, head.name,
                                   minimum))
PY
fi

# 4. Sign with a fresh publisher key, verify, and check that tampering is caught.
step "helm-plugin keygen" "$tool" keygen --out "$tmp/publisher"
[[ "$(stat -c %a "$tmp/publisher.key")" == 600 ]] || fail "publisher.key is not mode 0600"
step "helm-plugin sign" "$tool" sign --key "$tmp/publisher.key" --manifest "$manifest" \
  --library "$library" --out "$plugin_dir/signature"
step "helm-plugin verify" "$tool" verify --pub "$tmp/publisher.pub" --manifest "$manifest" \
  --library "$library" --sig "$plugin_dir/signature"

cp "$manifest" "$tmp/tampered.json"
sed -i 's/"version": "0.1.0"/"version": "0.1.1"/' "$tmp/tampered.json"
cmp -s "$manifest" "$tmp/tampered.json" && fail "could not make a tampered copy of the manifest"
if "$tool" verify --pub "$tmp/publisher.pub" --manifest "$tmp/tampered.json" \
     --library "$library" --sig "$plugin_dir/signature" >"$log" 2>&1; then
  fail "helm-plugin verify accepted a manifest changed after signing"
fi
step "helm-plugin keygen (a key nobody trusts)" "$tool" keygen --out "$tmp/stranger"
if "$tool" verify --pub "$tmp/stranger.pub" --manifest "$manifest" \
     --library "$library" --sig "$plugin_dir/signature" >"$log" 2>&1; then
  fail "helm-plugin verify accepted a signature by a key that was not given as trusted"
fi

# 5. The directory holds exactly what the hub loads.
contents=$(find "$plugin_dir" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ')
[[ "$contents" == "example-greet.so manifest.json signature " ]] ||
  fail "$plugin_dir holds \"$contents\", expected example-greet.so manifest.json signature"

# 6. helm_add_plugin(SIGN_KEY) signs at build time with the installed tool, and `cmake --install`
#    lays out a plugin directory whose signature still verifies.
rm -f "$plugin_dir/signature"
step "configuring sdk-docs/example with EXAMPLE_GREET_SIGN_KEY" \
  cmake -S "$example_dir" -B "$example_build" -DEXAMPLE_GREET_SIGN_KEY="$tmp/publisher.key"
step "building sdk-docs/example signed" cmake --build "$example_build"
[[ -f "$plugin_dir/signature" ]] || fail "helm_add_plugin(SIGN_KEY) did not write $plugin_dir/signature"
step "cmake --install of the example" cmake --install "$example_build" --prefix "$tmp/hub"
installed="$tmp/hub/plugins/example-greet"
step "helm-plugin verify of the installed plugin" "$tool" verify --pub "$tmp/publisher.pub" \
  --manifest "$installed/manifest.json" --library "$installed/example-greet.so" \
  --sig "$installed/signature"

echo "OK: sdk-docs/example built against the installed SDK, signed and verified ($plugin_dir)"
