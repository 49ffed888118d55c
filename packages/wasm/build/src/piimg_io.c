/*
 * An io_manager for libext2fs whose block reads and writes are synchronous
 * calls into JavaScript, where a BlockDevice does the work. It takes the
 * place of unix_io_manager (the build removes unix_io.o from libext2fs.a),
 * so e2fsck and mke2fs use it without source changes: a device is named
 * "piimg:<id>", <id> being the handle the JavaScript side gave it.
 *
 * Single blocks go through a small direct-mapped write-back cache (about
 * 1 MiB): libext2fs rereads and rewrites the same inode table, directory
 * and bitmap blocks constantly, and each uncached access is a call into
 * JavaScript and usually a system call. Dirty blocks reach the device when
 * evicted, before any multi-block access overlapping them, and on flush
 * and close (ext2fs_flush() and ext2fs_close() flush the channel), like
 * unix_io's own write-back cache. Multi-block runs (file data) go straight
 * to the device.
 *
 * Ref: e2fsprogs lib/ext2fs/ext2_io.h (struct struct_io_manager).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ext2fs/ext2_fs.h"
#include "ext2fs/ext2fs.h"

/* Implemented in library.js. They return 0 on success. Offsets travel as
 * doubles: exact up to 2^53, and no 64-bit integer legalisation needed. */
extern int piimg_js_read(int device, double byte_offset, void *data, int length);
extern int piimg_js_write(int device, double byte_offset, const void *data, int length);
extern int piimg_js_flush(int device);
/* Device size in bytes, or -1 for an unknown device. */
extern double piimg_js_size(int device);

#define PIIMG_PREFIX "piimg:"

/* About 1 MiB of cached blocks, at least 16 entries. */
#define CACHE_BYTES (1 << 20)
#define CACHE_MIN_ENTRIES 16

struct cache_entry {
	unsigned long long block;
	int valid;
	int dirty;
};

struct piimg_private {
	errcode_t magic;
	int device;
	int block_size;
	int cache_entries;
	struct cache_entry *cache;
	char *cache_data;
};

static char *cache_slot(struct piimg_private *data, unsigned long long block)
{
	return data->cache_data + (size_t) (block % data->cache_entries) * data->block_size;
}

static struct cache_entry *cache_entry_of(struct piimg_private *data, unsigned long long block)
{
	return &data->cache[block % data->cache_entries];
}

/* Writes one dirty entry to the device. */
static int cache_write_back(struct piimg_private *data, struct cache_entry *entry)
{
	if (!entry->valid || !entry->dirty)
		return 0;
	if (piimg_js_write(data->device, (double) entry->block * data->block_size, cache_slot(data, entry->block),
			   data->block_size))
		return 1;
	entry->dirty = 0;
	return 0;
}

static int cache_write_back_all(struct piimg_private *data)
{
	int i;

	for (i = 0; i < data->cache_entries; i++)
		if (cache_write_back(data, &data->cache[i]))
			return 1;
	return 0;
}

/* Before the device itself is read or written over [first, first + count): write back dirty copies there. */
static int cache_settle(struct piimg_private *data, unsigned long long first, unsigned long long count)
{
	unsigned long long i;

	if (!data->cache)
		return 0;
	if (count > (unsigned long long) data->cache_entries)
		return cache_write_back_all(data);
	for (i = 0; i < count; i++) {
		struct cache_entry *entry = cache_entry_of(data, first + i);
		if (entry->valid && entry->block == first + i && cache_write_back(data, entry))
			return 1;
	}
	return 0;
}

/* After the device was written over [first, first + count): refresh (whole blocks) or drop cached copies. */
static void cache_written(struct piimg_private *data, unsigned long long first, unsigned long long count, const char *buf,
			  int whole_blocks)
{
	unsigned long long i;

	if (!data->cache)
		return;
	for (i = 0; i < count; i++) {
		struct cache_entry *entry = cache_entry_of(data, first + i);
		if (!entry->valid || entry->block != first + i)
			continue;
		if (whole_blocks)
			memcpy(cache_slot(data, first + i), buf + (size_t) i * data->block_size, data->block_size);
		else
			entry->valid = 0;
	}
}

static void cache_free(struct piimg_private *data)
{
	free(data->cache);
	free(data->cache_data);
	data->cache = NULL;
	data->cache_data = NULL;
	data->cache_entries = 0;
}

/* (Re)creates the cache for a block size (dirty blocks written first); without memory it stays off. */
static int cache_setup(struct piimg_private *data, int block_size)
{
	int entries = CACHE_BYTES / block_size;

	if (data->cache && cache_write_back_all(data))
		return 1;
	cache_free(data);
	data->block_size = block_size;
	if (entries < CACHE_MIN_ENTRIES)
		entries = CACHE_MIN_ENTRIES;
	data->cache = calloc(entries, sizeof(struct cache_entry));
	data->cache_data = malloc((size_t) entries * block_size);
	if (!data->cache || !data->cache_data) {
		cache_free(data);
		return 0;
	}
	data->cache_entries = entries;
	return 0;
}

static struct struct_io_manager piimg_io_manager_struct;

static errcode_t piimg_open(const char *name, int flags, io_channel *channel)
{
	io_channel io = NULL;
	struct piimg_private *data = NULL;
	errcode_t retval;

	(void) flags;
	if (name == NULL || strncmp(name, PIIMG_PREFIX, strlen(PIIMG_PREFIX)) != 0)
		return EXT2_ET_BAD_DEVICE_NAME;
	retval = ext2fs_get_memzero(sizeof(struct struct_io_channel), &io);
	if (retval)
		return retval;
	retval = ext2fs_get_memzero(sizeof(struct piimg_private), &data);
	if (retval)
		goto fail;
	retval = ext2fs_get_mem(strlen(name) + 1, &io->name);
	if (retval)
		goto fail;
	strcpy(io->name, name);
	io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	io->manager = &piimg_io_manager_struct;
	io->block_size = 1024;
	io->refcount = 1;
	io->private_data = data;
	data->magic = EXT2_ET_MAGIC_UNIX_IO_CHANNEL;
	data->device = atoi(name + strlen(PIIMG_PREFIX));
	data->block_size = io->block_size;
	(void) cache_setup(data, io->block_size);
	*channel = io;
	return 0;
fail:
	if (data)
		ext2fs_free_mem(&data);
	if (io) {
		if (io->name)
			ext2fs_free_mem(&io->name);
		ext2fs_free_mem(&io);
	}
	return retval;
}

static errcode_t piimg_close(io_channel channel)
{
	struct piimg_private *data = channel->private_data;
	errcode_t retval = 0;

	if (--channel->refcount > 0)
		return 0;
	if ((data->cache && cache_write_back_all(data)) || piimg_js_flush(data->device))
		retval = EXT2_ET_SHORT_WRITE;
	cache_free(data);
	ext2fs_free_mem(&channel->private_data);
	if (channel->name)
		ext2fs_free_mem(&channel->name);
	ext2fs_free_mem(&channel);
	return retval;
}

static errcode_t piimg_set_blksize(io_channel channel, int blksize)
{
	if (channel->block_size != blksize) {
		if (cache_setup(channel->private_data, blksize))
			return EXT2_ET_SHORT_WRITE;
		channel->block_size = blksize;
	}
	return 0;
}

/* A negative count means bytes, not blocks (ext2_io.h convention). */
static size_t piimg_span(io_channel channel, int count)
{
	return count < 0 ? (size_t) -count : (size_t) count * channel->block_size;
}

static errcode_t piimg_read_blk64(io_channel channel, unsigned long long block, int count, void *buf)
{
	struct piimg_private *data = channel->private_data;
	size_t size = piimg_span(channel, count);
	double offset = (double) block * (double) channel->block_size;
	struct cache_entry *entry = NULL;

	if (count == 1 && data->cache) {
		entry = cache_entry_of(data, block);
		if (entry->valid && entry->block == block) {
			memcpy(buf, cache_slot(data, block), channel->block_size);
			return 0;
		}
		/* The slot is about to hold this block: write back what it held. */
		if (cache_write_back(data, entry))
			return EXT2_ET_SHORT_WRITE;
	} else if (cache_settle(data, block, (size + channel->block_size - 1) / channel->block_size)) {
		return EXT2_ET_SHORT_WRITE;
	}
	if (piimg_js_read(data->device, offset, buf, (int) size)) {
		if (channel->read_error)
			return (channel->read_error)(channel, block, count, buf, size, 0, EXT2_ET_SHORT_READ);
		return EXT2_ET_SHORT_READ;
	}
	if (entry) {
		memcpy(cache_slot(data, block), buf, channel->block_size);
		entry->block = block;
		entry->valid = 1;
		entry->dirty = 0;
	}
	return 0;
}

static errcode_t piimg_read_blk(io_channel channel, unsigned long block, int count, void *buf)
{
	return piimg_read_blk64(channel, block, count, buf);
}

static errcode_t piimg_write_blk64(io_channel channel, unsigned long long block, int count, const void *buf)
{
	struct piimg_private *data = channel->private_data;
	size_t size = piimg_span(channel, count);
	double offset = (double) block * (double) channel->block_size;
	unsigned long long blocks = (size + channel->block_size - 1) / channel->block_size;

	if (count == 1 && data->cache) {
		struct cache_entry *entry = cache_entry_of(data, block);
		if (!(entry->valid && entry->block == block) && cache_write_back(data, entry))
			return EXT2_ET_SHORT_WRITE;
		memcpy(cache_slot(data, block), buf, channel->block_size);
		entry->block = block;
		entry->valid = 1;
		entry->dirty = 1;
		return 0;
	}
	/* Partial blocks must not be overtaken by an older dirty copy written later. */
	if (count < 0 && cache_settle(data, block, blocks))
		return EXT2_ET_SHORT_WRITE;
	if (piimg_js_write(data->device, offset, buf, (int) size)) {
		if (channel->write_error)
			return (channel->write_error)(channel, block, count, buf, size, 0, EXT2_ET_SHORT_WRITE);
		return EXT2_ET_SHORT_WRITE;
	}
	/* Whole blocks replace cached copies, dirty or not: the device now has the newest data. */
	if (count >= 0) {
		unsigned long long i;
		cache_written(data, block, blocks, buf, 1);
		for (i = 0; data->cache && i < blocks; i++) {
			struct cache_entry *entry = cache_entry_of(data, block + i);
			if (entry->valid && entry->block == block + i)
				entry->dirty = 0;
		}
	} else {
		cache_written(data, block, blocks, buf, 0);
	}
	return 0;
}

static errcode_t piimg_write_blk(io_channel channel, unsigned long block, int count, const void *buf)
{
	return piimg_write_blk64(channel, block, count, buf);
}

static errcode_t piimg_write_byte(io_channel channel, unsigned long offset, int size, const void *buf)
{
	struct piimg_private *data = channel->private_data;

	unsigned long long first = offset / channel->block_size;
	unsigned long long blocks = (offset % channel->block_size + size + channel->block_size - 1) / channel->block_size;

	if (size < 0)
		return EXT2_ET_INVALID_ARGUMENT;
	if (cache_settle(data, first, blocks))
		return EXT2_ET_SHORT_WRITE;
	if (piimg_js_write(data->device, (double) offset, buf, size))
		return EXT2_ET_SHORT_WRITE;
	cache_written(data, first, blocks, buf, 0);
	return 0;
}

static errcode_t piimg_flush(io_channel channel)
{
	struct piimg_private *data = channel->private_data;

	if (data->cache && cache_write_back_all(data))
		return EXT2_ET_SHORT_WRITE;
	return piimg_js_flush(data->device) ? EXT2_ET_SHORT_WRITE : 0;
}

static errcode_t piimg_set_option(io_channel channel, const char *option, const char *arg)
{
	(void) channel;
	(void) option;
	(void) arg;
	return EXT2_ET_INVALID_ARGUMENT;
}

/* No discard or zeroout: libext2fs then writes zero blocks itself, which is
 * always correct whatever the device holds. */
static errcode_t piimg_unimplemented(io_channel channel, unsigned long long block, unsigned long long count)
{
	(void) channel;
	(void) block;
	(void) count;
	return EXT2_ET_UNIMPLEMENTED;
}

static struct struct_io_manager piimg_io_manager_struct = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "piimg I/O Manager",
	.open = piimg_open,
	.close = piimg_close,
	.set_blksize = piimg_set_blksize,
	.read_blk = piimg_read_blk,
	.write_blk = piimg_write_blk,
	.flush = piimg_flush,
	.write_byte = piimg_write_byte,
	.set_option = piimg_set_option,
	.read_blk64 = piimg_read_blk64,
	.write_blk64 = piimg_write_blk64,
	.discard = piimg_unimplemented,
	.zeroout = piimg_unimplemented,
};

io_manager piimg_io_manager = &piimg_io_manager_struct;
/* e2fsck and mke2fs open devices through unix_io_manager. */
io_manager unix_io_manager = &piimg_io_manager_struct;
io_manager unixfd_io_manager = &piimg_io_manager_struct;

/* File helpers that live in unix_io.c upstream; e2fsck and mke2fs use them
 * for their log and undo files (MEMFS under emscripten). */
int ext2fs_open_file(const char *pathname, int flags, mode_t mode)
{
	return mode ? open(pathname, flags, mode) : open(pathname, flags);
}

int ext2fs_stat(const char *path, ext2fs_struct_stat *buf)
{
	return stat(path, buf);
}

int ext2fs_fstat(int fd, ext2fs_struct_stat *buf)
{
	return fstat(fd, buf);
}

/*
 * Replacements for getsize.o, getsectsize.o and ismounted.o, which the build also removes
 * from libext2fs.a: a JavaScript device knows its size, and nothing in a
 * WebAssembly instance is ever mounted.
 */
errcode_t ext2fs_get_device_size2(const char *file, int blocksize, blk64_t *retblocks)
{
	double size;

	if (file == NULL || strncmp(file, PIIMG_PREFIX, strlen(PIIMG_PREFIX)) != 0 || blocksize <= 0)
		return EXT2_ET_BAD_DEVICE_NAME;
	size = piimg_js_size(atoi(file + strlen(PIIMG_PREFIX)));
	if (size < 0)
		return EXT2_ET_BAD_DEVICE_NAME;
	*retblocks = (blk64_t) size / (blk64_t) blocksize;
	return 0;
}

errcode_t ext2fs_get_device_size(const char *file, int blocksize, blk_t *retblocks)
{
	blk64_t blocks;
	errcode_t retval = ext2fs_get_device_size2(file, blocksize, &blocks);

	if (retval)
		return retval;
	if (blocks >= (1ULL << 32))
		return EFBIG;
	*retblocks = (blk_t) blocks;
	return 0;
}

errcode_t ext2fs_check_mount_point(const char *device, int *mount_flags, char *mtpt, int mtlen)
{
	(void) device;
	*mount_flags = 0;
	if (mtpt && mtlen > 0)
		*mtpt = 0;
	return 0;
}

errcode_t ext2fs_check_if_mounted(const char *file, int *mount_flags)
{
	return ext2fs_check_mount_point(file, mount_flags, NULL, 0);
}

/* Sector sizes: 0 means "not known", and the tools then use their defaults,
 * as upstream does where the ioctls are missing. */
errcode_t ext2fs_get_device_sectsize(const char *file, int *sectsize)
{
	(void) file;
	*sectsize = 0;
	return 0;
}

errcode_t ext2fs_get_device_phys_sectsize(const char *file, int *sectsize)
{
	(void) file;
	*sectsize = 0;
	return 0;
}

int ext2fs_get_dio_alignment(int fd)
{
	(void) fd;
	return 512;
}
