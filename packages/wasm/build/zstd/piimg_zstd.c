/*
 * The few entry points of libzstd that @piimg/wasm (src/zstd.ts) calls: a
 * streaming encoder of one whole frame (the unit of parallel encoding;
 * concatenated frames are one valid zstd stream), and a streaming decoder of
 * concatenated frames with a bound on the window it will allocate.
 * Ref: RFC 8878, Zstandard Compression and the application/zstd Media Type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define EXPORT __attribute__((visibility("default"), used))

/* Errors are returned as the negated ZSTD_ErrorCode, so 0 and up mean success. */
static int error_of(size_t ret) { return -(int)ZSTD_getErrorCode(ret); }

EXPORT ZSTD_CCtx *piimg_zstd_cctx_new(void) { return ZSTD_createCCtx(); }

EXPORT void piimg_zstd_cctx_free(ZSTD_CCtx *cctx) { ZSTD_freeCCtx(cctx); }

/*
 * Starts one frame of `src_size` bytes at `level`, recording the content
 * size and an XXH64 checksum (RFC 8878 §3.1.1.1.2, §3.1.1.3.4) so that any
 * reader verifies it. Knowing the size also lets zstd shrink the window to
 * it. Returns 0 or a negated error.
 */
EXPORT int piimg_zstd_frame_begin(ZSTD_CCtx *cctx, int level, double src_size) {
	size_t ret = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	if (!ZSTD_isError(ret))
		ret = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(ret))
		ret = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
	if (!ZSTD_isError(ret))
		ret = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	if (!ZSTD_isError(ret))
		ret = ZSTD_CCtx_setPledgedSrcSize(cctx, (unsigned long long)src_size);
	return ZSTD_isError(ret) ? error_of(ret) : 0;
}

/*
 * One ZSTD_compressStream2() call; `end` once the whole frame's input has
 * been given. `progress` receives the bytes consumed and produced (two
 * uint32). Returns 0 when the frame is complete, a positive number when more
 * calls are needed, or a negated error (the input must total the size given
 * to piimg_zstd_frame_begin, or the frame fails with srcSize_wrong).
 */
EXPORT int piimg_zstd_frame_compress(ZSTD_CCtx *cctx, const uint8_t *in, size_t in_size, uint8_t *out, size_t out_size,
                                     int end, uint32_t *progress) {
	ZSTD_inBuffer input = {in, in_size, 0};
	ZSTD_outBuffer output = {out, out_size, 0};
	size_t ret = ZSTD_compressStream2(cctx, &output, &input, end ? ZSTD_e_end : ZSTD_e_continue);
	progress[0] = (uint32_t)input.pos;
	progress[1] = (uint32_t)output.pos;
	if (ZSTD_isError(ret))
		return error_of(ret);
	if (!end)
		return 1;
	return ret > 0x7fffffff ? 0x7fffffff : (int)ret;
}

/* A decoder of concatenated frames refusing windows over 2^window_log_max bytes. */
EXPORT ZSTD_DCtx *piimg_zstd_decoder(int window_log_max) {
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	if (dctx == NULL)
		return NULL;
	if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, window_log_max))) {
		ZSTD_freeDCtx(dctx);
		return NULL;
	}
	return dctx;
}

/*
 * One ZSTD_decompressStream() call. `progress` receives the bytes consumed
 * and produced (two uint32). Returns 1 when a frame was just completed and
 * flushed (the input may hold another frame), 0 when more input or room is
 * needed, or a negated error.
 */
EXPORT int piimg_zstd_decompress(ZSTD_DCtx *dctx, const uint8_t *in, size_t in_size, uint8_t *out, size_t out_size,
                                 uint32_t *progress) {
	ZSTD_inBuffer input = {in, in_size, 0};
	ZSTD_outBuffer output = {out, out_size, 0};
	size_t ret = ZSTD_decompressStream(dctx, &output, &input);
	progress[0] = (uint32_t)input.pos;
	progress[1] = (uint32_t)output.pos;
	if (ZSTD_isError(ret))
		return error_of(ret);
	return ret == 0 ? 1 : 0;
}

EXPORT void piimg_zstd_decoder_free(ZSTD_DCtx *dctx) { ZSTD_freeDCtx(dctx); }
