#!/bin/sh
# Builds liblzma from Debian's xz-utils source package to WebAssembly, with
# the piimg entry points (lzma/piimg_lzma.c), into ../dist/lzma.wasm, and
# writes ../dist/lzma.manifest.json.
#
# Run on Debian (bookworm or later) as root: it installs emscripten and
# dpkg-dev when missing. Rerunnable; the output is byte-for-byte the same for
# the same inputs. Work files go to build/work/ (git-ignored) or $WORK.
#
#   sudo packages/wasm/build/build-lzma.sh
set -eu

XZ_VERSION=5.8.1
DEBIAN_REVISION=5.8.1-1+deb13u1
SUITE=trixie
# Checksums of the source package files; apt-get also checks them against
# the signed Release file, these pin the exact inputs of the build.
SHA256_ORIG=0b54f79df85912504de0b14aec7971e3f964491af1812d83447005807513cd9e
SHA256_DEBIAN=0e48427971a9ce674ddbba26e34ac1dd009c683f3816ce17852d99dc7b0a8e46
SHA256_DSC=ddadd9d9f7c4bb80b08f9f17409e2701a29a4cf8fe25e15d19605e5281c1fc1b

HERE=$(cd "$(dirname "$0")" && pwd)
PKG=$(cd "$HERE/.." && pwd)
WORK=${WORK:-$HERE/work}/lzma
DIST=$PKG/dist
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf '== %s\n' "$*" >&2; }

. "$HERE/lib/debian-source.sh"

# ---- tools, source package (build/lib/debian-source.sh, as build.sh) ----
debian_build_tools
DSC=xz-utils_$DEBIAN_REVISION.dsc
ORIG=xz-utils_$XZ_VERSION.orig.tar.xz
DEBIAN=xz-utils_$DEBIAN_REVISION.debian.tar.xz
debian_source xz-utils "$DEBIAN_REVISION" "$SUITE" "$DSC" $SHA256_DSC "$ORIG" $SHA256_ORIG "$DEBIAN" $SHA256_DEBIAN

# ---- unpack (with Debian's patches), configure, build liblzma ----
SRC=$WORK/xz
B=$SRC/build-wasm
fresh=1
[ "${REUSE_TREE:-0}" = 1 ] && [ -f "$B/src/liblzma/.libs/liblzma.a" ] && fresh=0
export LC_ALL=C TZ=UTC
CFLAGS_COMMON="-O2 -ffile-prefix-map=$SRC=/xz-utils -ffile-prefix-map=$HERE=/piimg"
if [ $fresh = 1 ]; then
  rm -rf "$SRC"
  log "unpacking (with Debian's patches)"
  dpkg-source --no-check -x "$DSC" "$SRC" >/dev/null
  mkdir -p "$B"
  cd "$B"
  log "configure"
  # Only what piimg uses: LZMA2 encoding (LZMA1 is part of it), every .xz
  # decoder filter (any .xz a user downloads must decode), no threads (the
  # parallelism is piimg's worker threads), no command-line tools.
  CFLAGS="$CFLAGS_COMMON" emconfigure ../configure --host=wasm32 --disable-shared --enable-static --disable-threads \
    --disable-xz --disable-xzdec --disable-lzmadec --disable-lzmainfo --disable-lzma-links --disable-scripts \
    --disable-doc --disable-nls --disable-sandbox --disable-microlzma --disable-lzip-decoder \
    --enable-encoders=lzma1,lzma2 --enable-decoders=lzma1,lzma2,delta,x86,powerpc,ia64,arm,armthumb,arm64,sparc,riscv \
    --enable-checks=crc32,crc64,sha256 --disable-clmul-crc --disable-arm64-crc32 >configure.log 2>&1 ||
    { tail -n 30 configure.log; exit 1; }
  log "make liblzma"
  emmake make -j"$JOBS" -C src/liblzma >make.log 2>&1 || { tail -n 40 make.log; exit 1; }
fi
export SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Timestamp)
cd "$B"

# A standalone module: no JavaScript glue, its one import is a memory-growth
# notice. MAXIMUM_MEMORY bounds what hostile input can make it allocate.
EXPORTS=_malloc,_free,_piimg_lzma_block_decode,_piimg_lzma_stream_decoder,_piimg_lzma_block_encoder,_piimg_lzma_code,_piimg_lzma_block_header,_piimg_lzma_end
emcc $CFLAGS_COMMON -I"$SRC/src/liblzma/api" -c "$HERE/lzma/piimg_lzma.c" -o piimg_lzma.o
log "link lzma.wasm"
emcc -O2 piimg_lzma.o src/liblzma/.libs/liblzma.a --no-entry -sSTANDALONE_WASM=1 -sALLOW_MEMORY_GROWTH=1 \
  -sINITIAL_MEMORY=1MB -sMAXIMUM_MEMORY=1GB -sTOTAL_STACK=256KB -sEXPORTED_FUNCTIONS=$EXPORTS -o lzma.wasm

# ---- install into dist/ with licences and a manifest ----
mkdir -p "$DIST" "$PKG/LICENSES"
cp lzma.wasm "$DIST/lzma.wasm"
cp "$SRC/COPYING" "$PKG/LICENSES/xz-utils-COPYING"
cp "$SRC/COPYING.0BSD" "$PKG/LICENSES/xz-utils-COPYING.0BSD"
cp "$SRC/debian/copyright" "$PKG/LICENSES/xz-utils-debian-copyright"
{
  printf '{\n'
  printf '  "source": { "package": "xz-utils", "version": "%s", "suite": "%s",\n' "$DEBIAN_REVISION" "$SUITE"
  printf '    "files": { "%s": "%s", "%s": "%s", "%s": "%s" } },\n' "$ORIG" "$SHA256_ORIG" "$DEBIAN" "$SHA256_DEBIAN" "$DSC" "$SHA256_DSC"
  printf '  "debianPatches": [%s],\n' "$(grep -v '^#' "$SRC/debian/patches/series" | sed '/^$/d; s/.*/"&"/' | paste -sd, -)"
  printf '  "piimgSources": {'
  first=1
  for f in "$HERE"/lzma/* "$HERE/lib/debian-source.sh" "$HERE/build-lzma.sh"; do
    [ $first = 1 ] || printf ','
    first=0
    printf ' "%s": "%s"' "${f#"$PKG"/}" "$(sha256sum "$f" | cut -d' ' -f1)"
  done
  printf ' },\n'
  printf '  "compiler": "%s",\n' "$EMCC_VERSION"
  printf '  "licenses": { "lzma": "0BSD (liblzma, see LICENSES/xz-utils-COPYING)" },\n'
  printf '  "outputs": {\n    "lzma.wasm": "%s"\n  }\n}\n' "$(sha256sum "$DIST/lzma.wasm" | cut -d' ' -f1)"
} >"$DIST/lzma.manifest.json"
log "done: $DIST/lzma.wasm"
cat "$DIST/lzma.manifest.json"
