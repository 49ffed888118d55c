# Shared by build.sh, build-lzma.sh and build-zstd.sh (sourced, POSIX sh):
# the build tools and one pinned Debian source package, fetched through a
# private apt source list so the machine's own apt configuration is neither
# needed nor changed.
#
# The caller sets WORK (its work directory) and defines log().

# Installs emscripten and dpkg-dev, plus any package named for a missing
# command given as "command:package" (patch:patch), and sets EMCC_VERSION.
debian_build_tools() {
  need=""
  command -v emcc >/dev/null 2>&1 || need="$need emscripten"
  command -v dpkg-source >/dev/null 2>&1 || need="$need dpkg-dev"
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
  done
  if [ -n "$need" ]; then
    log "installing$need"
    apt-get update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need
  fi
  # Debian's emcc runs its optimizer with the system node modules.
  export NODE_PATH=/usr/share/nodejs
  EMCC_VERSION=$(emcc --version 2>/dev/null | sed -n 1p)
}

# debian_source PACKAGE REVISION SUITE DSC SHA256 ORIG SHA256 DEBIAN SHA256
# Leaves the three files, checked against the pinned SHA-256s, in
# $WORK/download, which becomes the current directory. apt-get also checks
# them against the signed Release file; the pins fix the exact inputs.
debian_source() {
  pkg=$1 revision=$2 suite=$3 dsc=$4 sha_dsc=$5 orig=$6 sha_orig=$7 debian=$8 sha_debian=$9
  mkdir -p "$WORK/apt/lists/partial" "$WORK/download"

  # The mirror of the machine's own apt sources: first Debian archive URI
  # (not the security archive) in sources.list or sources.list.d.
  mirror=$(
    {
      cat /etc/apt/sources.list 2>/dev/null || true
      for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && cat "$f"
      done
    } | awk '
      /^[ \t]*#/ { next }
      /^URIs:/ { for (i = 2; i <= NF; i++) print $i }
      /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }
    ' | grep '/debian/*$' | grep -v -- '-security' | head -n 1
  )
  mirror=${mirror:-http://deb.debian.org/debian}
  mirror=${mirror%/}
  log "source mirror: $mirror"
  printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$mirror" "$suite" >"$WORK/apt/sources.list"
  apt_opts="-o Dir::Etc::SourceList=$WORK/apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$WORK/apt/lists"

  cd "$WORK/download"
  if ! debian_check "$dsc" "$sha_dsc" || ! debian_check "$orig" "$sha_orig" || ! debian_check "$debian" "$sha_debian"; then
    log "fetching $pkg=$revision from $suite"
    # shellcheck disable=SC2086
    apt-get $apt_opts update
    # The archive may have no .asc for the orig tarball; apt reports it and
    # exits non-zero, the files themselves are checked just below.
    # shellcheck disable=SC2086
    apt-get $apt_opts source --download-only "$pkg=$revision" || true
  fi
  debian_check "$dsc" "$sha_dsc" || { log "bad or missing .dsc"; exit 1; }
  debian_check "$orig" "$sha_orig" || { log "bad or missing orig tarball"; exit 1; }
  debian_check "$debian" "$sha_debian" || { log "bad or missing debian tarball"; exit 1; }
}

debian_check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
