#!/bin/sh
# Builds libzstd (compression and decompression, single-threaded) from
# Debian's libzstd source package to WebAssembly, with the piimg entry points
# (zstd/piimg_zstd.c), into ../dist/zstd.wasm, and writes
# ../dist/zstd.manifest.json.
#
# Run on Debian (bookworm or later) as root: it installs emscripten and
# dpkg-dev when missing. Rerunnable; the output is byte-for-byte the same for
# the same inputs. Work files go to build/work/ (git-ignored) or $WORK.
#
#   sudo packages/wasm/build/build-zstd.sh
set -eu

ZSTD_VERSION=1.5.7+dfsg
DEBIAN_REVISION=1.5.7+dfsg-1
SUITE=trixie
# Checksums of the source package files; apt-get also checks them against
# the signed Release file, these pin the exact inputs of the build.
SHA256_ORIG=0c092ef267edce57ba7f3f2645c861f72eaf5e76273c6c3632869423464b90a5
SHA256_DEBIAN=5e88424d919941291f79e1bfada6cb1a6f748671d9de7d4b7d931f361f183a15
SHA256_DSC=8f6ab97fa772d921334e50fa5756a0951e23c718dc913e43a228f28c1a23adf9

HERE=$(cd "$(dirname "$0")" && pwd)
PKG=$(cd "$HERE/.." && pwd)
WORK=${WORK:-$HERE/work}/zstd
DIST=$PKG/dist

log() { printf '== %s\n' "$*" >&2; }
. "$HERE/lib/debian-source.sh"

debian_build_tools
DSC=libzstd_$DEBIAN_REVISION.dsc
ORIG=libzstd_$ZSTD_VERSION.orig.tar.xz
DEBIAN=libzstd_$DEBIAN_REVISION.debian.tar.xz
debian_source libzstd "$DEBIAN_REVISION" "$SUITE" "$DSC" $SHA256_DSC "$ORIG" $SHA256_ORIG "$DEBIAN" $SHA256_DEBIAN

# ---- unpack (with Debian's patches) and compile lib/ ----
SRC=$WORK/zstd
B=$WORK/build
rm -rf "$SRC" "$B"
log "unpacking (with Debian's patches)"
dpkg-source --no-check -x "$DSC" "$SRC" >/dev/null
export SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Timestamp)
export LC_ALL=C TZ=UTC
mkdir -p "$B"
cd "$B"
# Only what piimg uses: the compressor and decompressor, no threads (the
# parallelism is piimg's worker threads), no legacy formats, no dictionary
# builder, no x86 assembly, no tracing hooks. -O3 with WebAssembly SIMD and
# bulk memory (both in every Node >= 16.4) compresses about a fifth faster
# than -O2 without them.
CFLAGS="-O3 -msimd128 -mbulk-memory -ffile-prefix-map=$SRC=/zstd -ffile-prefix-map=$HERE=/piimg -DZSTD_LEGACY_SUPPORT=0 -DZSTD_DISABLE_ASM=1 -DZSTD_TRACE=0"
log "compile lib/common, lib/compress, lib/decompress"
objs=""
for c in $(cd "$SRC/lib" && ls common/*.c compress/*.c decompress/*.c | sort); do
  o=$(printf '%s' "$c" | tr / _ | sed 's/\.c$/.o/')
  # shellcheck disable=SC2086
  emcc $CFLAGS -I"$SRC/lib" -I"$SRC/lib/common" -c "$SRC/lib/$c" -o "$o"
  objs="$objs $o"
done
# shellcheck disable=SC2086
emcc $CFLAGS -I"$SRC/lib" -c "$HERE/zstd/piimg_zstd.c" -o piimg_zstd.o

# A standalone module: no JavaScript glue, its one import is a memory-growth
# notice. MAXIMUM_MEMORY bounds what hostile input can make it allocate.
EXPORTS=_malloc,_free,_piimg_zstd_cctx_new,_piimg_zstd_cctx_free,_piimg_zstd_frame_begin,_piimg_zstd_frame_compress,_piimg_zstd_decoder,_piimg_zstd_decompress,_piimg_zstd_decoder_free
log "link zstd.wasm"
# shellcheck disable=SC2086
emcc -O3 -msimd128 -mbulk-memory piimg_zstd.o $objs --no-entry -sSTANDALONE_WASM=1 -sALLOW_MEMORY_GROWTH=1 \
  -sINITIAL_MEMORY=1MB -sMAXIMUM_MEMORY=1GB -sTOTAL_STACK=256KB -sEXPORTED_FUNCTIONS=$EXPORTS -o zstd.wasm

# ---- install into dist/ with licences and a manifest ----
mkdir -p "$DIST" "$PKG/LICENSES"
cp zstd.wasm "$DIST/zstd.wasm"
cp "$SRC/LICENSE" "$PKG/LICENSES/zstd-LICENSE"
cp "$SRC/debian/copyright" "$PKG/LICENSES/zstd-debian-copyright"
{
  printf '{\n'
  printf '  "source": { "package": "libzstd", "version": "%s", "suite": "%s",\n' "$DEBIAN_REVISION" "$SUITE"
  printf '    "files": { "%s": "%s", "%s": "%s", "%s": "%s" } },\n' "$ORIG" "$SHA256_ORIG" "$DEBIAN" "$SHA256_DEBIAN" "$DSC" "$SHA256_DSC"
  printf '  "debianPatches": [%s],\n' "$(grep -v '^#' "$SRC/debian/patches/series" | sed '/^$/d; s/.*/"&"/' | paste -sd, -)"
  printf '  "piimgSources": {'
  first=1
  for f in "$HERE"/zstd/* "$HERE/lib/debian-source.sh" "$HERE/build-zstd.sh"; do
    [ $first = 1 ] || printf ','
    first=0
    printf ' "%s": "%s"' "${f#"$PKG"/}" "$(sha256sum "$f" | cut -d' ' -f1)"
  done
  printf ' },\n'
  printf '  "compiler": "%s",\n' "$EMCC_VERSION"
  printf '  "licenses": { "zstd": "BSD-3-Clause (libzstd is dual-licensed BSD-3-Clause OR GPL-2.0-only; used under BSD-3-Clause, see LICENSES/zstd-LICENSE)" },\n'
  printf '  "outputs": {\n    "zstd.wasm": "%s"\n  }\n}\n' "$(sha256sum "$DIST/zstd.wasm" | cut -d' ' -f1)"
} >"$DIST/zstd.manifest.json"
log "done: $DIST/zstd.wasm"
cat "$DIST/zstd.manifest.json"
