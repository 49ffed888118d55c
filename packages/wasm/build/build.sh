#!/bin/sh
# Builds libext2fs, e2fsck and mke2fs from Debian's e2fsprogs source package
# to WebAssembly, with the piimg io_manager (src/piimg_io.c) and the shim
# (src/shim.c), into ../dist, and writes ../dist/manifest.json.
#
# Run on Debian (bookworm or later) as root: it installs emscripten and
# dpkg-dev when missing. Rerunnable; the outputs are byte-for-byte the same
# for the same inputs. Work files go to build/work/ (git-ignored) or $WORK.
#
#   sudo packages/wasm/build/build.sh
set -eu

E2FSPROGS_VERSION=1.47.2
DEBIAN_REVISION=1.47.2-3
SUITE=trixie
# Checksums of the source package files; apt-get also checks them against
# the signed Release file, these pin the exact inputs of the build.
SHA256_ORIG=6dcd67ff9d8b13274ba3f088e4318be4f5b71412cd863524423fc49d39a6371f
SHA256_DEBIAN=5517aae5ce5196e49fa314492f0639ad7a1692c9521d703b6c81acff77a1564e
SHA256_DSC=860abb653ecbe01a11bb7e41c9e09a45e83847bffa585f7a3d3c0f9401c9d4bb

HERE=$(cd "$(dirname "$0")" && pwd)
PKG=$(cd "$HERE/.." && pwd)
WORK=${WORK:-$HERE/work}
DIST=$PKG/dist
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf '== %s\n' "$*" >&2; }

. "$HERE/lib/debian-source.sh"

# ---- tools, source package (build/lib/debian-source.sh) ----
debian_build_tools patch:patch
debian_source e2fsprogs "$DEBIAN_REVISION" "$SUITE" "e2fsprogs_$DEBIAN_REVISION.dsc" $SHA256_DSC \
  "e2fsprogs_$E2FSPROGS_VERSION.orig.tar.gz" $SHA256_ORIG "e2fsprogs_$DEBIAN_REVISION.debian.tar.xz" $SHA256_DEBIAN

# ---- unpack, Debian patches, our patches ----
SRC=$WORK/e2fsprogs
B=$SRC/build-wasm
# REUSE_TREE=1 keeps an already configured tree (for iterating on src/).
fresh=1
[ "${REUSE_TREE:-0}" = 1 ] && [ -f "$B/lib/libext2fs.a" ] && fresh=0
if [ $fresh = 1 ]; then
  rm -rf "$SRC"
  log "unpacking (with Debian's patches)"
  dpkg-source --no-check -x "e2fsprogs_$DEBIAN_REVISION.dsc" "$SRC" >/dev/null
  for p in "$HERE"/patches/*.patch; do
    log "applying $(basename "$p")"
    patch -d "$SRC" -p1 --no-backup-if-mismatch <"$p" >/dev/null
  done
fi

# ---- configure and build the libraries ----
# Fixed paths and times keep the outputs reproducible.
export SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Timestamp)
export LC_ALL=C TZ=UTC
CFLAGS_COMMON="-O2 -ffile-prefix-map=$SRC=/e2fsprogs -ffile-prefix-map=$HERE=/piimg"
mkdir -p "$B"
cd "$B"
if [ $fresh = 1 ]; then
  log "configure"
  CFLAGS="$CFLAGS_COMMON" emconfigure ../configure --host=wasm32 --disable-nls --disable-uuidd --disable-fsck \
    --disable-defrag --disable-imager --disable-fuse2fs --without-pthread --disable-tdb --disable-mmp \
    --disable-backtrace --disable-elf-shlibs --without-libarchive >configure.log 2>&1 ||
    { tail -n 30 configure.log; exit 1; }
  log "make libs"
  emmake make -j"$JOBS" libs >make-libs.log 2>&1 || { tail -n 40 make-libs.log; exit 1; }
fi
# Object lists from the upstream Makefiles; we link them ourselves below.
E2FSCK_OBJS=$(sed -n '/^OBJS=/,/[^\\]$/p' "$SRC/e2fsck/Makefile.in" | sed 's/^OBJS=//; s/\\//g; s/$([A-Z_]*)//g' | tr -s ' \t\n' ' ')
MKE2FS_OBJS=$(sed -n '/^MKE2FS_OBJS=/,/[^\\]$/p' "$SRC/misc/Makefile.in" | sed 's/^MKE2FS_OBJS=//; s/\\//g' | tr -s ' \t\n' ' ')
log "make e2fsck and mke2fs objects"
# shellcheck disable=SC2086
emmake make -j"$JOBS" -C e2fsck $E2FSCK_OBJS >make-e2fsck.log 2>&1 || { tail -n 40 make-e2fsck.log; exit 1; }
# shellcheck disable=SC2086
emmake make -j"$JOBS" -C misc $MKE2FS_OBJS >make-mke2fs.log 2>&1 || { tail -n 40 make-mke2fs.log; exit 1; }

# Our io_manager replaces unix_io_manager, and piimg_io.c also answers the
# device size and mount questions: drop the upstream objects for those.
for o in unix_io.o getsize.o getsectsize.o ismounted.o; do
  if emar t lib/libext2fs.a | grep -qx $o; then emar d lib/libext2fs.a $o; fi
done

# libext2fs error code names, in the order of lib/ext2fs/ext2_err.et.
awk '/^ec[ \t]/ { sub(/^ec[ \t]+/, ""); sub(/,.*/, ""); printf "\t\"%s\",\n", $0 }' \
  lib/ext2fs/ext2_err.et >"$B/piimg_errnames.h"

CINC="-I$B/lib -I$SRC/lib -I$B"
emcc $CFLAGS_COMMON $CINC -c "$HERE/src/piimg_io.c" -o piimg_io.o
emcc $CFLAGS_COMMON $CINC -c "$HERE/src/shim.c" -o piimg_shim.o
# e2fsck calls daemon() for its -E background option, which wasm lacks.
printf 'int daemon(int nochdir, int noclose) { (void) nochdir; (void) noclose; return -1; }\n' >daemon_stub.c
emcc $CFLAGS_COMMON -c daemon_stub.c -o daemon_stub.o

# MODULARIZE + our own loading (wasmBinary/instantiateWasm in @piimg/wasm):
# the glue never fetches or reads files. CommonJS glue (.cjs) so Node can
# require() it synchronously.
LDFLAGS_COMMON="-O2 -sMODULARIZE=1 -sENVIRONMENT=web -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=16MB \
  -sMAXIMUM_MEMORY=2GB -sINVOKE_RUN=0 -sEXIT_RUNTIME=0 -sDYNAMIC_EXECUTION=0 \
  --js-library $HERE/src/library.js"
TOOL_METHODS="-sEXPORTED_RUNTIME_METHODS=callMain,UTF8ToString,ENV"
LIBS="lib/libext2fs.a lib/libe2p.a lib/libcom_err.a lib/libblkid.a lib/libuuid.a lib/libsupport.a"

mkdir -p "$B/out"
log "link ext2fs"
emcc $LDFLAGS_COMMON -sEXPORT_NAME=createExt2fs -sEXPORTED_FUNCTIONS=_malloc,_free -sEXPORTED_RUNTIME_METHODS=UTF8ToString \
  piimg_shim.o piimg_io.o $LIBS -o out/ext2fs.cjs
log "link e2fsck"
emcc $LDFLAGS_COMMON -sEXPORT_NAME=createE2fsck -sEXPORTED_FUNCTIONS=_main,_malloc,_free $TOOL_METHODS \
  $(for o in $E2FSCK_OBJS; do printf 'e2fsck/%s ' "$o"; done) piimg_io.o daemon_stub.o $LIBS -o out/e2fsck.cjs
log "link mke2fs"
emcc $LDFLAGS_COMMON -sEXPORT_NAME=createMke2fs -sEXPORTED_FUNCTIONS=_main,_malloc,_free $TOOL_METHODS \
  $(for o in $MKE2FS_OBJS; do printf 'misc/%s ' "$o"; done) piimg_io.o $LIBS -o out/mke2fs.cjs

# ---- install into dist/ with licences and a manifest ----
mkdir -p "$DIST" "$PKG/LICENSES"
for name in ext2fs e2fsck mke2fs; do
  cp "out/$name.cjs" "out/$name.wasm" "$DIST/"
done
cp "$SRC/NOTICE" "$PKG/LICENSES/e2fsprogs-NOTICE"
cp "$SRC/debian/copyright" "$PKG/LICENSES/e2fsprogs-debian-copyright"
cp /usr/share/common-licenses/GPL-2 "$PKG/LICENSES/GPL-2"
cp /usr/share/common-licenses/LGPL-2 "$PKG/LICENSES/LGPL-2"

{
  printf '{\n'
  printf '  "source": { "package": "e2fsprogs", "version": "%s", "suite": "%s",\n' "$DEBIAN_REVISION" "$SUITE"
  printf '    "files": { "e2fsprogs_%s.orig.tar.gz": "%s", "e2fsprogs_%s.debian.tar.xz": "%s", "e2fsprogs_%s.dsc": "%s" } },\n' \
    "$E2FSPROGS_VERSION" "$SHA256_ORIG" "$DEBIAN_REVISION" "$SHA256_DEBIAN" "$DEBIAN_REVISION" "$SHA256_DSC"
  printf '  "debianPatches": [%s],\n' "$(grep -v '^#' "$SRC/debian/patches/series" | sed '/^$/d; s/.*/"&"/' | paste -sd, -)"
  printf '  "patches": {'
  first=1
  for p in "$HERE"/patches/*.patch; do
    [ $first = 1 ] || printf ','
    first=0
    printf ' "%s": "%s"' "$(basename "$p")" "$(sha256sum "$p" | cut -d' ' -f1)"
  done
  printf ' },\n'
  printf '  "piimgSources": {'
  first=1
  for f in "$HERE"/src/* "$HERE/lib/debian-source.sh" "$HERE/build.sh"; do
    [ $first = 1 ] || printf ','
    first=0
    printf ' "%s": "%s"' "${f#"$PKG"/}" "$(sha256sum "$f" | cut -d' ' -f1)"
  done
  printf ' },\n'
  printf '  "compiler": "%s",\n' "$EMCC_VERSION"
  printf '  "licenses": { "ext2fs": "LGPL-2.0 (lib/ext2fs), MIT-style (lib/et, lib/uuid), LGPL (lib/blkid, lib/e2p)", "e2fsck": "GPL-2.0", "mke2fs": "GPL-2.0" },\n'
  printf '  "outputs": {'
  first=1
  for name in ext2fs e2fsck mke2fs; do
    for ext in cjs wasm; do
      [ $first = 1 ] || printf ','
      first=0
      printf '\n    "%s.%s": "%s"' "$name" "$ext" "$(sha256sum "$DIST/$name.$ext" | cut -d' ' -f1)"
    done
  done
  printf '\n  }\n}\n'
} >"$DIST/manifest.json"
log "done: $DIST"
cat "$DIST/manifest.json"
