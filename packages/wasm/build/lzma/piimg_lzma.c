/*
 * The few entry points of liblzma that @piimg/wasm (src/lzma.ts) calls: one
 * .xz Block decoded from a buffer (the unit of parallel decoding), a streaming
 * .xz decoder (single-Block files and pipes), and a streaming Block encoder
 * whose Block Header is written last, once the sizes are known, so that
 * readers can decode the Blocks in parallel.
 * Ref: The .xz File Format 1.2.1, §3 Block.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lzma.h>

#define EXPORT __attribute__((visibility("default"), used))

/* Not a liblzma code: the Block's filters need more memory than allowed. */
#define PIIMG_MEMLIMIT LZMA_MEMLIMIT_ERROR
/* Not a liblzma code: the Block's sizes disagree with the Index. */
#define PIIMG_SIZE_MISMATCH LZMA_DATA_ERROR

/*
 * Decodes one Block. `in` holds the whole Block: Block Header, Compressed
 * Data, Block Padding and Check (in_size bytes, a multiple of four). The
 * Index supplies `unpadded_size` and `uncompressed_size`, which the Block
 * Header, when it records sizes, must agree with; `out` has room for exactly
 * `uncompressed_size` bytes. Filters needing more than `memlimit` bytes are
 * refused before anything is allocated.
 */
EXPORT int piimg_lzma_block_decode(const uint8_t *in, size_t in_size, double unpadded_size, double uncompressed_size,
                                   uint32_t check, uint8_t *out, double memlimit) {
	lzma_filter filters[LZMA_FILTERS_MAX + 1];
	lzma_block block;
	memset(&block, 0, sizeof(block));
	block.version = 1;
	block.check = (lzma_check)check;
	block.filters = filters;
	if (in_size < 1 || in[0] == 0x00)
		return LZMA_DATA_ERROR;
	block.header_size = lzma_block_header_size_decode(in[0]);
	if (block.header_size > in_size)
		return LZMA_DATA_ERROR;
	lzma_ret ret = lzma_block_header_decode(&block, NULL, in);
	if (ret != LZMA_OK)
		return ret;
	/* Checks the header's Compressed Size against the Index's Unpadded Size. */
	ret = lzma_block_compressed_size(&block, (lzma_vli)unpadded_size);
	if (ret == LZMA_OK && block.uncompressed_size != LZMA_VLI_UNKNOWN &&
	    block.uncompressed_size != (lzma_vli)uncompressed_size)
		ret = PIIMG_SIZE_MISMATCH;
	if (ret == LZMA_OK && lzma_raw_decoder_memusage(filters) > (uint64_t)memlimit)
		ret = PIIMG_MEMLIMIT;
	if (ret == LZMA_OK) {
		block.uncompressed_size = (lzma_vli)uncompressed_size;
		size_t in_pos = block.header_size;
		size_t out_pos = 0;
		ret = lzma_block_buffer_decode(&block, NULL, in, &in_pos, in_size, out, &out_pos, (size_t)uncompressed_size);
		if (ret == LZMA_OK && (in_pos != in_size || out_pos != (size_t)uncompressed_size))
			ret = PIIMG_SIZE_MISMATCH;
	}
	lzma_filters_free(filters, NULL);
	return ret;
}

/* A streaming coder; `stream` first, so a pointer to it is a pointer to the lzma_stream. */
struct piimg_coder {
	lzma_stream stream;
	lzma_block block;
	lzma_filter filters[2];
	lzma_options_lzma lzma;
};

static struct piimg_coder *coder_new(void) {
	struct piimg_coder *coder = calloc(1, sizeof(*coder));
	if (coder != NULL) {
		lzma_stream init = LZMA_STREAM_INIT;
		coder->stream = init;
	}
	return coder;
}

/* A decoder of .xz Streams (concatenated Streams and Stream Padding too), verifying every Check. */
EXPORT struct piimg_coder *piimg_lzma_stream_decoder(double memlimit) {
	struct piimg_coder *coder = coder_new();
	if (coder == NULL)
		return NULL;
	if (lzma_stream_decoder(&coder->stream, (uint64_t)memlimit, LZMA_CONCATENATED) != LZMA_OK) {
		free(coder);
		return NULL;
	}
	return coder;
}

/* An encoder of one Block's Compressed Data, Padding and Check with LZMA2 at `preset`. */
EXPORT struct piimg_coder *piimg_lzma_block_encoder(uint32_t preset, uint32_t check) {
	struct piimg_coder *coder = coder_new();
	if (coder == NULL)
		return NULL;
	if (lzma_lzma_preset(&coder->lzma, preset)) {
		free(coder);
		return NULL;
	}
	coder->filters[0].id = LZMA_FILTER_LZMA2;
	coder->filters[0].options = &coder->lzma;
	coder->filters[1].id = LZMA_VLI_UNKNOWN;
	coder->block.version = 1;
	coder->block.check = (lzma_check)check;
	coder->block.filters = coder->filters;
	coder->block.compressed_size = LZMA_VLI_UNKNOWN;
	coder->block.uncompressed_size = LZMA_VLI_UNKNOWN;
	/* Reserves the largest header size; the real one is computed at the end. */
	if (lzma_block_header_size(&coder->block) != LZMA_OK || lzma_block_encoder(&coder->stream, &coder->block) != LZMA_OK) {
		lzma_end(&coder->stream);
		free(coder);
		return NULL;
	}
	return coder;
}

/*
 * One lzma_code() call. `progress` receives the bytes consumed from `in` and
 * produced into `out` (two uint32).
 */
EXPORT int piimg_lzma_code(struct piimg_coder *coder, const uint8_t *in, size_t in_size, uint8_t *out, size_t out_size,
                           int finish, uint32_t *progress) {
	coder->stream.next_in = in;
	coder->stream.avail_in = in_size;
	coder->stream.next_out = out;
	coder->stream.avail_out = out_size;
	lzma_ret ret = lzma_code(&coder->stream, finish ? LZMA_FINISH : LZMA_RUN);
	progress[0] = (uint32_t)(in_size - coder->stream.avail_in);
	progress[1] = (uint32_t)(out_size - coder->stream.avail_out);
	return ret;
}

/*
 * After the block encoder returned LZMA_STREAM_END: writes the Block Header,
 * with both sizes recorded, into `out` (at least LZMA_BLOCK_HEADER_SIZE_MAX
 * bytes) and returns its size; `sizes` receives the Unpadded Size and the
 * Uncompressed Size for the Index (two doubles).
 */
EXPORT int piimg_lzma_block_header(struct piimg_coder *coder, uint8_t *out, double *sizes) {
	if (lzma_block_header_size(&coder->block) != LZMA_OK || lzma_block_header_encode(&coder->block, out) != LZMA_OK)
		return 0;
	sizes[0] = (double)lzma_block_unpadded_size(&coder->block);
	sizes[1] = (double)coder->block.uncompressed_size;
	return (int)coder->block.header_size;
}

EXPORT void piimg_lzma_end(struct piimg_coder *coder) {
	if (coder == NULL)
		return;
	lzma_end(&coder->stream);
	free(coder);
}

