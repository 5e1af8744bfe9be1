#!/usr/bin/env bash
# Lavapipe (Mesa's software Vulkan driver) for Dawn's Vulkan backend, without installing anything:
# Mesa 25 from Debian's <codename>-backports (Debian 12's own Mesa 22 is too old for Dawn) and the
# libraries this machine lacks for it are downloaded with apt-get into private apt folders and
# unpacked into a cache folder. Writes <cache>/env.json and <cache>/env.sh (VK_DRIVER_FILES and
# LD_LIBRARY_PATH), then checks that Dawn finds the adapter.
#
#   tools/lavapipe/setup.sh [cache-dir]      (default: <repo>/.cache/lavapipe)
#   source <cache-dir>/env.sh                (then node finds "llvmpipe" through WebGPU)
#
# Idempotent: a stamp records what was unpacked, and a second run only rewrites the env files and
# re-checks the adapter (offline). Only Debian x86_64 with apt-get; elsewhere it exits 0 saying why.
# LAVAPIPE_MIRROR overrides the Debian mirror (default: the system's, else deb.debian.org);
# LAVAPIPE_DPKG_STATUS computes what to download against another dpkg status file (testing).
set -euo pipefail

SETUP_VERSION=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

say() { echo "lavapipe: $*"; }
skip() {
  echo "lavapipe setup skipped: $*"
  exit 0
}
fail() {
  echo "lavapipe setup failed: $*" >&2
  exit 1
}

[ "$(uname -s)" = Linux ] || skip "not Linux ($(uname -s))"
case "$(uname -m)" in x86_64 | amd64) ;; *) skip "not x86_64 ($(uname -m))" ;; esac
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (install a Vulkan driver with your package manager)"
command -v dpkg-deb >/dev/null 2>&1 || skip "no dpkg-deb"
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || skip "dpkg architecture is not amd64"
os_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-}")
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
[ "$os_id" = debian ] && [ -n "$codename" ] ||
  skip "not Debian (${os_id:-unknown}); install a recent Mesa's Vulkan drivers (Mesa 25 works) from your distribution"

cache=${1:-$repo/.cache/lavapipe}
mkdir -p "$cache" || fail "cannot create $cache"
cache=$(cd "$cache" && pwd)
libdir=$cache/root/usr/lib/x86_64-linux-gnu
icd=$cache/lvp_icd.json
stamp=$cache/stamp

if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.lock"
  flock 9
fi

json_string() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

# env.json (LD_LIBRARY_PATH: the cache's lib folder before the caller's own value) and env.sh;
# sets ld_path to that LD_LIBRARY_PATH.
write_env() {
  local driver=$1 existing="" part
  local -a parts
  IFS=: read -r -a parts <<<"${LD_LIBRARY_PATH:-}"
  for part in "${parts[@]}"; do
    [ -n "$part" ] && [ "$part" != "$libdir" ] && existing=${existing:+$existing:}$part
  done
  ld_path=$libdir${existing:+:$existing}
  {
    printf '{\n  "VK_DRIVER_FILES": %s,\n' "$(json_string "$driver")"
    printf '  "LD_LIBRARY_PATH": %s\n}\n' "$(json_string "$ld_path")"
  } >"$cache/env.json.tmp"
  mv "$cache/env.json.tmp" "$cache/env.json"
  {
    echo "# Lavapipe for WebGPU (Dawn on Vulkan), from tools/lavapipe/setup.sh."
    printf "export VK_DRIVER_FILES='%s'\n" "$driver"
    printf 'case ":${LD_LIBRARY_PATH-}:" in *":%s:"*) ;; *) export LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac\n' "$libdir" "$libdir"
  } >"$cache/env.sh"
}

# Ask Dawn (the webgpu package the WebGPU backend uses) for an adapter with this environment.
verify() {
  local driver=$1 status=0
  if ! command -v node >/dev/null 2>&1; then
    say "check skipped: no node"
    return 0
  fi
  VK_DRIVER_FILES=$driver LD_LIBRARY_PATH=$ld_path node "$here/verify.mjs" "$repo" 2>"$cache/verify.log" ||
    status=$?
  case $status in
  0) return 0 ;;
  2) say "check skipped: the webgpu package is not installed yet (pnpm install)" ;;
  *)
    tail -n 20 "$cache/verify.log" >&2
    fail "Dawn found no Vulkan adapter with $cache/env.sh"
    ;;
  esac
}

if [ -f "$stamp" ] && grep -qx "setup=$SETUP_VERSION" "$stamp"; then
  driver=$(sed -n 's/^driver=//p' "$stamp")
  if [ -f "$driver" ]; then
    say "cached: $(sed -n 's/^mesa=//p' "$stamp") in $cache"
    write_env "$driver"
    verify "$driver"
    exit 0
  fi
fi

# --- download and unpack ---
rm -rf "$stamp" "$cache/root" "$cache/apt" "$cache/debs" "$icd"
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/parts" "$cache/debs"

mirror=${LAVAPIPE_MIRROR:-}
if [ -z "$mirror" ]; then
  # The system's Debian mirror (deb822 "URIs:" or one-line "deb URI suite ..."), not its security one.
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -oE '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+/debian/?([[:space:]]|$)' |
    grep -oE '[a-z]+://[^[:space:]]+' | head -n 1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
mirror=${mirror%/}
signed=""
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
printf 'deb %s%s %s-backports main\ndeb %s%s %s main\n' "$signed" "$mirror" "$codename" "$signed" "$mirror" "$codename" \
  >"$apt_dir/etc/sources.list"

apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/etc/parts"
  -o "Dir::Etc::Preferences=$apt_dir/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$apt_dir/etc/parts"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Debug::NoLocking=1"
  -o "Acquire::Languages=none"
)
[ -n "${LAVAPIPE_DPKG_STATUS:-}" ] && apt_opts+=(-o "Dir::State::status=$LAVAPIPE_DPKG_STATUS")
# As root apt downloads as the _apt user, who cannot write to a private folder.
[ "$(id -u)" = 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")

say "apt-get update ($mirror $codename-backports, $codename) into $apt_dir"
if ! out=$(apt-get "${apt_opts[@]}" -o APT::Update::Error-Mode=any update -qq 2>&1); then
  echo "$out" | tail -n 5 >&2
  [ "$(id -u)" = 0 ] ||
    fail "apt-get update into private folders failed as a non-root user (if the errors above are about permissions, run as root)"
  fail "apt-get update failed"
fi

# What this machine lacks for mesa-vulkan-drivers from backports: "'URI' name_version_arch.deb size hash".
if ! uris=$(apt-get "${apt_opts[@]}" -t "$codename-backports" install --no-install-recommends --print-uris -qq -y \
  mesa-vulkan-drivers libvulkan1 2>&1); then
  echo "$uris" | tail -n 5 >&2
  fail "apt-get could not resolve mesa-vulkan-drivers from $codename-backports"
fi
mapfile -t wanted < <(echo "$uris" | awk '/^'"'"'/ { print $2 }' | while read -r file; do
  name=${file%%_*}
  version=${file#*_}
  version=${version%_*}
  printf '%s=%b\n' "$name" "${version//%/\\x}"
done)

# Never the core libraries (the system's own must be used: every Debian has them, so apt lists them
# only when backports wants a newer one): the C and C++ runtimes, zlib and the rest of the base
# system's libraries, and Essential or Priority: required packages; nor -dev/-common/-data/-doc
# packages (headers and data files lavapipe does not load).
core=" libc6 libc-bin libgcc-s1 libstdc++6 zlib1g libcrypt1 libtinfo6 libzstd1 liblzma5 libbz2-1.0 "
core+=" liblz4-1 libselinux1 libpcre2-8-0 libsystemd0 libudev1 libgcrypt20 libgpg-error0 "
if [ "${#wanted[@]}" -gt 0 ]; then
  core+=$(apt-cache "${apt_opts[@]}" show "${wanted[@]}" 2>/dev/null | awk '
    /^Package: / { name = $2 }
    /^Priority: required/ || /^Essential: yes/ { printf " %s ", name }')
fi
download=()
skipped=()
for pv in "${wanted[@]}"; do
  name=${pv%%=*}
  if [[ $core == *" $name "* || $name =~ ^gcc-[0-9]+-base$ || $name =~ -(dev|common|data|doc)$ ]]; then
    skipped+=("$name")
  else
    download+=("$pv")
  fi
done
[ "${#skipped[@]}" -eq 0 ] || say "not unpacking: ${skipped[*]}"

mesa=""
for pv in "${download[@]}"; do
  [ "${pv%%=*}" = mesa-vulkan-drivers ] && mesa=${pv#*=}
done

if [ "${#download[@]}" -gt 0 ]; then
  say "downloading ${#download[@]} packages: ${download[*]%%=*}"
  if ! out=$(cd "$cache/debs" && apt-get "${apt_opts[@]}" download -qq "${download[@]}" 2>&1); then
    echo "$out" | tail -n 5 >&2
    fail "apt-get download failed"
  fi
  say "unpacking into $cache/root"
  for deb in "$cache"/debs/*.deb; do
    dpkg-deb -x "$deb" "$cache/root" || fail "could not unpack $(basename "$deb")"
  done
fi

if [ -n "$mesa" ]; then
  source_icd=$(ls "$cache"/root/usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -n 1 || true)
  [ -n "$source_icd" ] || fail "mesa-vulkan-drivers $mesa has no lvp_icd*.json"
  # library_path is "libvulkan_lvp.so" (or the system path): point it at the unpacked library.
  lib=$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$source_icd")
  lib=$libdir/$(basename "$lib")
  [ -f "$lib" ] || fail "$lib is missing"
  sed 's#"library_path": *"[^"]*"#"library_path": "'"$lib"'"#' "$source_icd" >"$icd"
  driver=$icd
else
  # The system already has mesa-vulkan-drivers at the backports version.
  mesa=$(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  driver=$(dpkg -L mesa-vulkan-drivers 2>/dev/null | grep -E '/icd\.d/lvp_icd[^/]*\.json$' | head -n 1 || true)
  [ -n "$driver" ] && [ -f "$driver" ] || fail "apt-get lists no mesa-vulkan-drivers to download, and none is installed"
  mesa="$mesa (installed)"
fi

rm -rf "$cache/debs" "$apt_dir"
printf 'setup=%s\nmesa=%s\ndriver=%s\n' "$SETUP_VERSION" "$mesa" "$driver" >"$stamp"
say "mesa-vulkan-drivers $mesa ready"
write_env "$driver"
verify "$driver"
