/*
 * The operations the piimg ext4 volume needs, on top of libext2fs. Each
 * returns a libext2fs errcode_t (0 on success); @piimg/wasm turns codes into
 * names with piimg_error_name(), never exposing raw numbers.
 *
 * Path resolution, permission rules and the order of steps in compound
 * operations (rename, rm) live in TypeScript; this file keeps to single
 * inode and directory changes, each leaving a consistent filesystem.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <emscripten.h>
#include "ext2fs/ext2_fs.h"
#include "ext2fs/ext2fs.h"
#include "et/com_err.h"

extern io_manager piimg_io_manager;

#define EXPORT EMSCRIPTEN_KEEPALIVE

/* Clock for the timestamps this shim writes; libext2fs's own (fs->now) only has seconds. */
static long long now_sec;
static unsigned int now_nsec;

static const char *const error_names[] = {
#include "piimg_errnames.h"
};

EXPORT const char *piimg_error_name(errcode_t code)
{
	long index = code - EXT2_ET_BASE;

	if (code >= EXT2_ET_BASE && index < (long) (sizeof(error_names) / sizeof(error_names[0])))
		return error_names[index];
	switch (code) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case ENOMEM: return "ENOMEM";
	case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case EROFS: return "EROFS";
	case EMLINK: return "EMLINK";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ELOOP: return "ELOOP";
	case EOVERFLOW: return "EOVERFLOW";
	case ENODATA: return "ENODATA";
	case EUCLEAN: return "EUCLEAN";
	default: return "UNKNOWN";
	}
}

EXPORT const char *piimg_error_message(errcode_t code)
{
	return error_message(code);
}

/* ---- filesystem ---- */

EXPORT errcode_t piimg_fs_open(const char *name, int writable, ext2_filsys *out)
{
	static int tables_ready;
	ext2_filsys fs = NULL;
	errcode_t retval;
	int flags = EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP | (writable ? EXT2_FLAG_RW : 0);

	if (!tables_ready) {
		initialize_ext2_error_table();
		tables_ready = 1;
	}
	*out = NULL;
	retval = ext2fs_open2(name, NULL, flags, 0, 0, piimg_io_manager, &fs);
	if (retval)
		return retval;
	/* Reading the bitmaps up front makes a damaged group descriptor fail
	 * here, at mount, instead of in the middle of a write. */
	retval = ext2fs_read_bitmaps(fs);
	if (retval) {
		ext2fs_close_free(&fs);
		return retval;
	}
	*out = fs;
	return 0;
}

EXPORT errcode_t piimg_fs_flush(ext2_filsys fs)
{
	errcode_t retval = 0;

	if (fs->flags & EXT2_FLAG_RW) {
		retval = ext2fs_flush(fs);
		if (retval)
			return retval;
	}
	return io_channel_flush(fs->io);
}

EXPORT errcode_t piimg_fs_close(ext2_filsys fs)
{
	return ext2fs_close_free(&fs);
}

EXPORT void piimg_fs_set_now(ext2_filsys fs, double seconds, int nsec)
{
	now_sec = (long long) seconds;
	now_nsec = (unsigned int) nsec;
	fs->now = (time_t) now_sec;
	fs->flags2 |= EXT2_FLAG2_USE_FAKE_TIME;
}

/* out: block size, blocks, free blocks, inodes, free inodes. */
EXPORT void piimg_fs_info(ext2_filsys fs, double *out)
{
	out[0] = fs->blocksize;
	out[1] = (double) ext2fs_blocks_count(fs->super);
	out[2] = (double) ext2fs_free_blocks_count(fs->super);
	out[3] = fs->super->s_inodes_count;
	out[4] = fs->super->s_free_inodes_count;
}

/* ---- inodes ---- */

typedef struct ext2_inode_large inode_t;

static errcode_t get_inode(ext2_filsys fs, ext2_ino_t ino, inode_t *inode)
{
	memset(inode, 0, sizeof(*inode));
	return ext2fs_read_inode_full(fs, ino, (struct ext2_inode *) inode, sizeof(*inode));
}

static errcode_t put_inode(ext2_filsys fs, ext2_ino_t ino, inode_t *inode)
{
	return ext2fs_write_inode_full(fs, ino, (struct ext2_inode *) inode, sizeof(*inode));
}

/* True when the inode has room for a field ending at `field_end`. */
static int has_field(ext2_filsys fs, const inode_t *inode, size_t field_end)
{
	return EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
	       (size_t) EXT2_GOOD_OLD_INODE_SIZE + inode->i_extra_isize >= field_end &&
	       field_end <= (size_t) EXT2_INODE_SIZE(fs->super);
}

#define FIELD_END(field) (offsetof(inode_t, field) + sizeof(((inode_t *) 0)->field))

/*
 * Timestamps: the low 32 bits in the base field; two epoch bits and the
 * nanoseconds in the _extra field when the inode has one, else clamped to
 * a signed 32-bit value. Ref: ext4 wiki "Inode Timestamps"; kernel
 * ext4_encode_extra_time().
 */
static void set_time(ext2_filsys fs, inode_t *inode, __u32 *lo, __u32 *extra, size_t extra_end,
		     long long sec, unsigned int nsec)
{
	if (has_field(fs, inode, extra_end)) {
		*lo = (__u32) sec;
		*extra = (__u32) (((sec - (long long) (__s32) *lo) >> 32) & EXT4_EPOCH_MASK) |
			 (nsec << EXT4_EPOCH_BITS);
	} else {
		if (sec < INT32_MIN)
			sec = INT32_MIN;
		if (sec > INT32_MAX)
			sec = INT32_MAX;
		*lo = (__u32) (__s32) sec;
	}
}

static void get_time(ext2_filsys fs, const inode_t *inode, __u32 lo, __u32 extra, size_t extra_end,
		     double *sec_out, double *nsec_out)
{
	long long sec = (__s32) lo;
	unsigned int nsec = 0;

	if (has_field(fs, inode, extra_end)) {
		sec += (long long) (extra & EXT4_EPOCH_MASK) << 32;
		nsec = (extra & EXT4_NSEC_MASK) >> EXT4_EPOCH_BITS;
	}
	*sec_out = (double) sec;
	*nsec_out = nsec;
}

#define SET_TIME(fs, inode, name, sec, nsec) \
	set_time(fs, inode, &(inode)->name, &(inode)->name##_extra, FIELD_END(name##_extra), sec, nsec)
#define GET_TIME(fs, inode, name, out) \
	get_time(fs, inode, (inode)->name, (inode)->name##_extra, FIELD_END(name##_extra), &(out)[0], &(out)[1])

static void touch(ext2_filsys fs, inode_t *inode, int modified)
{
	SET_TIME(fs, inode, i_ctime, now_sec, now_nsec);
	if (modified)
		SET_TIME(fs, inode, i_mtime, now_sec, now_nsec);
}

/* A directory gained or lost an entry: its mtime and ctime move. */
static errcode_t touch_dir(ext2_filsys fs, ext2_ino_t dir)
{
	inode_t inode;
	errcode_t retval = get_inode(fs, dir, &inode);

	if (retval)
		return retval;
	touch(fs, &inode, 1);
	return put_inode(fs, dir, &inode);
}

static void set_owner(inode_t *inode, unsigned int uid, unsigned int gid)
{
	inode->i_uid = uid & 0xffff;
	ext2fs_set_i_uid_high(*inode, uid >> 16);
	inode->i_gid = gid & 0xffff;
	ext2fs_set_i_gid_high(*inode, gid >> 16);
}

/*
 * out: mode, uid, gid, size, links, atime, atime_ns, mtime, mtime_ns,
 * ctime, ctime_ns, crtime, crtime_ns, has_crtime, flags.
 */
EXPORT errcode_t piimg_stat(ext2_filsys fs, ext2_ino_t ino, double *out)
{
	inode_t inode;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	out[0] = inode.i_mode;
	out[1] = inode_uid(inode);
	out[2] = inode_gid(inode);
	out[3] = (double) EXT2_I_SIZE(&inode);
	out[4] = inode.i_links_count;
	GET_TIME(fs, &inode, i_atime, out + 5);
	GET_TIME(fs, &inode, i_mtime, out + 7);
	GET_TIME(fs, &inode, i_ctime, out + 9);
	out[13] = has_field(fs, &inode, FIELD_END(i_crtime_extra));
	if (out[13])
		GET_TIME(fs, &inode, i_crtime, out + 11);
	else
		out[11] = out[12] = 0;
	out[14] = inode.i_flags;
	return 0;
}

/* mask: 1 permission bits, 2 uid, 4 gid, 8 atime, 16 mtime, 32 ctime (else now). */
EXPORT errcode_t piimg_setattr(ext2_filsys fs, ext2_ino_t ino, int mask, int mode, unsigned int uid, unsigned int gid,
			       double atime, int atime_ns, double mtime, int mtime_ns, double ctime, int ctime_ns)
{
	inode_t inode;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	if (mask & 1)
		inode.i_mode = (inode.i_mode & LINUX_S_IFMT) | (mode & 07777);
	if (mask & 2) {
		inode.i_uid = uid & 0xffff;
		ext2fs_set_i_uid_high(inode, uid >> 16);
	}
	if (mask & 4) {
		inode.i_gid = gid & 0xffff;
		ext2fs_set_i_gid_high(inode, gid >> 16);
	}
	if (mask & 8)
		SET_TIME(fs, &inode, i_atime, (long long) atime, atime_ns);
	if (mask & 16)
		SET_TIME(fs, &inode, i_mtime, (long long) mtime, mtime_ns);
	if (mask & 32)
		SET_TIME(fs, &inode, i_ctime, (long long) ctime, ctime_ns);
	else
		SET_TIME(fs, &inode, i_ctime, now_sec, now_nsec);
	return put_inode(fs, ino, &inode);
}

/* ---- names ---- */

EXPORT errcode_t piimg_namei(ext2_filsys fs, const char *path, int follow, ext2_ino_t *ino)
{
	if (follow)
		return ext2fs_namei_follow(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino);
	return ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino);
}

EXPORT errcode_t piimg_lookup(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t *ino)
{
	return ext2fs_lookup(fs, dir, name, strlen(name), NULL, ino);
}

static int file_type(unsigned int mode)
{
	switch (mode & LINUX_S_IFMT) {
	case LINUX_S_IFREG: return EXT2_FT_REG_FILE;
	case LINUX_S_IFDIR: return EXT2_FT_DIR;
	case LINUX_S_IFCHR: return EXT2_FT_CHRDEV;
	case LINUX_S_IFBLK: return EXT2_FT_BLKDEV;
	case LINUX_S_IFIFO: return EXT2_FT_FIFO;
	case LINUX_S_IFSOCK: return EXT2_FT_SOCK;
	case LINUX_S_IFLNK: return EXT2_FT_SYMLINK;
	default: return EXT2_FT_UNKNOWN;
	}
}

/* ---- hashed directories ---- */

struct dx_item {
	ext2_dirhash_t hash;
	ext2_ino_t ino;
	int type;
	int name_len;
	char name[EXT2_NAME_LEN];
};

static int dx_item_compare(const void *a, const void *b)
{
	const struct dx_item *x = a, *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return 0;
}

/* Fills a leaf block with items [from, to), the last entry taking the rest. */
static errcode_t dx_fill_leaf(ext2_filsys fs, char *buf, struct dx_item *items, int from, int to)
{
	int csum_size = ext2fs_has_feature_metadata_csum(fs->super) ? sizeof(struct ext2_dir_entry_tail) : 0;
	unsigned int end = fs->blocksize - csum_size;
	unsigned int offset = 0;
	struct ext2_dir_entry *dirent = NULL;
	errcode_t retval;
	int i;

	memset(buf, 0, fs->blocksize);
	for (i = from; i < to; i++) {
		unsigned int rec_len = EXT2_DIR_REC_LEN(items[i].name_len);
		if (offset + rec_len > end)
			return EXT2_ET_DIR_NO_SPACE;
		dirent = (struct ext2_dir_entry *) (buf + offset);
		dirent->inode = items[i].ino;
		ext2fs_dirent_set_name_len(dirent, items[i].name_len);
		ext2fs_dirent_set_file_type(dirent, items[i].type);
		memcpy(dirent->name, items[i].name, items[i].name_len);
		retval = ext2fs_set_rec_len(fs, rec_len, dirent);
		if (retval)
			return retval;
		offset += rec_len;
	}
	if (dirent == NULL) {
		dirent = (struct ext2_dir_entry *) buf;
		dirent->inode = 0;
		offset = 0;
	} else {
		offset -= EXT2_DIR_REC_LEN(ext2fs_dirent_name_len(dirent));
	}
	retval = ext2fs_set_rec_len(fs, end - offset, dirent);
	if (retval)
		return retval;
	if (csum_size)
		ext2fs_initialize_dirent_tail(fs, EXT2_DIRENT_TAIL(buf, fs->blocksize));
	return 0;
}

/*
 * Turns a full one-block linear directory into a hashed (htree) one, as the
 * kernel does in make_indexed_dir(): block 0 becomes the dx root, the
 * entries go, sorted by hash, into two new leaf blocks. libext2fs adds to
 * hashed directories (dx_link) but never creates them, and a large linear
 * directory costs a linear scan per lookup, here and on the Pi.
 * Ref: ext4 wiki "Hash Tree Directories"; kernel fs/ext4/namei.c.
 */
static errcode_t make_indexed(ext2_filsys fs, ext2_ino_t dir)
{
	inode_t inode;
	blk64_t pblock[3];
	char *buf = NULL;
	struct dx_item *items = NULL;
	int count = 0, capacity, split, i, hash_alg, csum_size;
	ext2_ino_t parent = 0;
	unsigned int offset;
	struct ext2_dx_root_info *root;
	struct ext2_dx_countlimit *limits;
	struct ext2_dx_entry *entries;
	errcode_t retval;

	retval = ext2fs_get_mem(fs->blocksize, &buf);
	if (retval)
		return retval;
	retval = get_inode(fs, dir, &inode);
	if (retval)
		goto out;
	retval = ext2fs_bmap2(fs, dir, (struct ext2_inode *) &inode, NULL, 0, 0, NULL, &pblock[0]);
	if (retval)
		goto out;
	retval = ext2fs_read_dir_block4(fs, pblock[0], buf, 0, dir);
	if (retval)
		goto out;
	capacity = fs->blocksize / 12 + 1;
	items = calloc(capacity, sizeof(*items));
	if (!items) {
		retval = EXT2_ET_NO_MEMORY;
		goto out;
	}
	hash_alg = fs->super->s_def_hash_version;
	if (hash_alg <= EXT2_HASH_TEA && (fs->super->s_flags & EXT2_FLAGS_UNSIGNED_HASH))
		hash_alg += 3;
	for (offset = 0; offset < fs->blocksize;) {
		struct ext2_dir_entry *dirent = (struct ext2_dir_entry *) (buf + offset);
		unsigned int rec_len;
		int name_len = ext2fs_dirent_name_len(dirent);

		retval = ext2fs_get_rec_len(fs, dirent, &rec_len);
		if (retval)
			goto out;
		if (rec_len < 8 || offset + rec_len > fs->blocksize || name_len + 8 > (int) rec_len) {
			retval = EXT2_ET_DIR_CORRUPTED;
			goto out;
		}
		if (dirent->inode != 0 && !(name_len == 0 && rec_len == sizeof(struct ext2_dir_entry_tail))) {
			if (name_len == 1 && dirent->name[0] == '.') {
				/* "." stays in the root */
			} else if (name_len == 2 && dirent->name[0] == '.' && dirent->name[1] == '.') {
				parent = dirent->inode;
			} else if (count < capacity) {
				struct dx_item *item = &items[count++];
				item->ino = dirent->inode;
				item->type = ext2fs_dirent_file_type(dirent);
				item->name_len = name_len;
				memcpy(item->name, dirent->name, name_len);
				retval = ext2fs_dirhash2(hash_alg, item->name, name_len, fs->encoding, 0,
							 fs->super->s_hash_seed, &item->hash, NULL);
				if (retval)
					goto out;
				/* The low bit of a dx hash marks a collision continuation. */
				item->hash &= ~1U;
			}
		}
		offset += rec_len;
	}
	if (parent == 0 || count < 2) {
		retval = EXT2_ET_DIR_CORRUPTED;
		goto out;
	}
	qsort(items, count, sizeof(*items), dx_item_compare);
	/* Split in the middle, never between two equal hashes. */
	split = count / 2;
	while (split < count && items[split].hash == items[split - 1].hash)
		split++;
	if (split == count) {
		split = count / 2;
		while (split > 1 && items[split].hash == items[split - 1].hash)
			split--;
		if (items[split].hash == items[split - 1].hash) {
			retval = EXT2_ET_DIR_NO_SPACE;
			goto out;
		}
	}

	/* Two new blocks at logical 1 and 2. */
	for (i = 1; i <= 2; i++) {
		retval = ext2fs_expand_dir(fs, dir);
		if (retval)
			goto out;
	}
	retval = get_inode(fs, dir, &inode);
	if (retval)
		goto out;
	for (i = 1; i <= 2; i++) {
		retval = ext2fs_bmap2(fs, dir, (struct ext2_inode *) &inode, NULL, 0, i, NULL, &pblock[i]);
		if (retval)
			goto out;
	}
	retval = dx_fill_leaf(fs, buf, items, 0, split);
	if (!retval)
		retval = ext2fs_write_dir_block4(fs, pblock[1], buf, 0, dir);
	if (!retval)
		retval = dx_fill_leaf(fs, buf, items, split, count);
	if (!retval)
		retval = ext2fs_write_dir_block4(fs, pblock[2], buf, 0, dir);
	if (retval)
		goto out;

	/* The root: ".", ".." spanning the block, dx_root_info, then the index. */
	csum_size = ext2fs_has_feature_metadata_csum(fs->super) ? sizeof(struct ext2_dx_tail) : 0;
	memset(buf, 0, fs->blocksize);
	{
		struct ext2_dir_entry *dot = (struct ext2_dir_entry *) buf;
		struct ext2_dir_entry *dotdot = (struct ext2_dir_entry *) (buf + 12);
		dot->inode = dir;
		ext2fs_dirent_set_name_len(dot, 1);
		ext2fs_dirent_set_file_type(dot, ext2fs_has_feature_filetype(fs->super) ? EXT2_FT_DIR : 0);
		dot->name[0] = '.';
		retval = ext2fs_set_rec_len(fs, 12, dot);
		if (retval)
			goto out;
		dotdot->inode = parent;
		ext2fs_dirent_set_name_len(dotdot, 2);
		ext2fs_dirent_set_file_type(dotdot, ext2fs_has_feature_filetype(fs->super) ? EXT2_FT_DIR : 0);
		dotdot->name[0] = '.';
		dotdot->name[1] = '.';
		retval = ext2fs_set_rec_len(fs, fs->blocksize - 12, dotdot);
		if (retval)
			goto out;
	}
	root = (struct ext2_dx_root_info *) (buf + 24);
	root->reserved_zero = 0;
	root->hash_version = fs->super->s_def_hash_version;
	root->info_length = 8;
	root->indirect_levels = 0;
	root->unused_flags = 0;
	limits = (struct ext2_dx_countlimit *) (buf + 32);
	limits->limit = ext2fs_cpu_to_le16((fs->blocksize - (32 + csum_size)) / sizeof(struct ext2_dx_entry));
	limits->count = ext2fs_cpu_to_le16(2);
	entries = (struct ext2_dx_entry *) (buf + 32);
	entries[0].block = ext2fs_cpu_to_le32(1);
	entries[1].hash = ext2fs_cpu_to_le32(items[split].hash);
	entries[1].block = ext2fs_cpu_to_le32(2);
	retval = ext2fs_write_dir_block4(fs, pblock[0], buf, 0, dir);
	if (retval)
		goto out;

	retval = get_inode(fs, dir, &inode);
	if (retval)
		goto out;
	inode.i_flags |= EXT2_INDEX_FL;
	retval = put_inode(fs, dir, &inode);
out:
	free(items);
	ext2fs_free_mem(&buf);
	return retval;
}

/*
 * Makes room in a full directory: a one-block linear directory becomes
 * hashed when the filesystem has dir_index (as the kernel does), any other
 * grows by a block, as debugfs does.
 */
static errcode_t make_room(ext2_filsys fs, ext2_ino_t dir)
{
	inode_t inode;
	errcode_t retval = get_inode(fs, dir, &inode);

	if (retval)
		return retval;
	if (ext2fs_has_feature_dir_index(fs->super) && !(inode.i_flags & (EXT2_INDEX_FL | EXT4_INLINE_DATA_FL)) &&
	    !(inode.i_flags & (EXT4_CASEFOLD_FL | EXT4_ENCRYPT_FL)) && EXT2_I_SIZE(&inode) == fs->blocksize &&
	    fs->super->s_def_hash_version <= EXT2_HASH_TEA) {
		retval = make_indexed(fs, dir);
		if (retval != EXT2_ET_DIR_NO_SPACE)
			return retval;
	}
	return ext2fs_expand_dir(fs, dir);
}

/* ext2fs_link() reports a full directory; make room and retry. */
static errcode_t link_growing(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino, int type)
{
	errcode_t retval = ext2fs_link(fs, dir, name, ino, type);

	if (retval == EXT2_ET_DIR_NO_SPACE) {
		retval = make_room(fs, dir);
		if (retval)
			return retval;
		retval = ext2fs_link(fs, dir, name, ino, type);
	}
	return retval;
}

/* Adds a directory entry for an existing inode; link counts are the caller's business. */
EXPORT errcode_t piimg_link(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino)
{
	inode_t inode;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	retval = link_growing(fs, dir, name, ino, file_type(inode.i_mode));
	if (retval)
		return retval;
	return touch_dir(fs, dir);
}

EXPORT errcode_t piimg_unlink(ext2_filsys fs, ext2_ino_t dir, const char *name)
{
	errcode_t retval = ext2fs_unlink(fs, dir, name, 0, 0);

	if (retval)
		return retval;
	return touch_dir(fs, dir);
}

struct replace_ctx {
	const char *name;
	size_t name_len;
	ext2_ino_t ino;
	int type;
	int found;
	int dotdot;
};

static int replace_entry_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *dirent, int offset, int blocksize,
			    char *buf, void *priv)
{
	struct replace_ctx *ctx = priv;

	(void) dir, (void) offset, (void) blocksize, (void) buf;
	if (ctx->dotdot) {
		if (entry != DIRENT_DOT_DOT_FILE)
			return 0;
	} else {
		if (dirent->inode == 0 || (size_t) ext2fs_dirent_name_len(dirent) != ctx->name_len ||
		    memcmp(dirent->name, ctx->name, ctx->name_len) != 0)
			return 0;
	}
	dirent->inode = ctx->ino;
	if (!ctx->dotdot)
		ext2fs_dirent_set_file_type(dirent, ctx->type);
	ctx->found = 1;
	return DIRENT_CHANGED | DIRENT_ABORT;
}

/*
 * Points the existing entry `name` of `dir` at `ino`, in one directory
 * block write: the atomic step of a rename over an existing file. The
 * name, and with it the htree hash, stays the same.
 */
EXPORT errcode_t piimg_replace_entry(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino)
{
	struct replace_ctx ctx = { name, strlen(name), ino, 0, 0, 0 };
	inode_t inode;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	ctx.type = ext2fs_has_feature_filetype(fs->super) ? file_type(inode.i_mode) : 0;
	retval = ext2fs_dir_iterate2(fs, dir, 0, NULL, replace_entry_cb, &ctx);
	if (retval)
		return retval;
	if (!ctx.found)
		return EXT2_ET_FILE_NOT_FOUND;
	return touch_dir(fs, dir);
}

/* Points ".." of directory `dir` at `parent` (a directory moved elsewhere). */
EXPORT errcode_t piimg_set_dotdot(ext2_filsys fs, ext2_ino_t dir, ext2_ino_t parent)
{
	struct replace_ctx ctx = { "..", 2, parent, EXT2_FT_DIR, 0, 1 };
	errcode_t retval = ext2fs_dir_iterate2(fs, dir, 0, NULL, replace_entry_cb, &ctx);

	if (retval)
		return retval;
	return ctx.found ? 0 : EXT2_ET_FILE_NOT_FOUND;
}

struct list_ctx {
	unsigned char *buf;
	size_t len;
	size_t cap;
	errcode_t error;
};

static int list_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *dirent, int offset, int blocksize, char *buf,
		   void *priv)
{
	struct list_ctx *ctx = priv;
	size_t name_len = ext2fs_dirent_name_len(dirent);
	size_t need = 6 + name_len;

	(void) dir, (void) offset, (void) blocksize, (void) buf;
	if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || dirent->inode == 0)
		return 0;
	if (ctx->len + need > ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 4096;
		unsigned char *grown;
		while (cap < ctx->len + need)
			cap *= 2;
		grown = realloc(ctx->buf, cap);
		if (!grown) {
			ctx->error = EXT2_ET_NO_MEMORY;
			return DIRENT_ABORT;
		}
		ctx->buf = grown;
		ctx->cap = cap;
	}
	/* Record: inode (u32 LE), file type (u8), name length (u8), name. */
	memcpy(ctx->buf + ctx->len, &dirent->inode, 4);
	ctx->buf[ctx->len + 4] = (unsigned char) ext2fs_dirent_file_type(dirent);
	ctx->buf[ctx->len + 5] = (unsigned char) name_len;
	memcpy(ctx->buf + ctx->len + 6, dirent->name, name_len);
	ctx->len += need;
	return 0;
}

/* Lists a directory into a malloc'd buffer the caller frees with piimg_free(). */
EXPORT errcode_t piimg_readdir(ext2_filsys fs, ext2_ino_t dir, unsigned char **out, int *out_len)
{
	struct list_ctx ctx = { NULL, 0, 0, 0 };
	errcode_t retval = ext2fs_dir_iterate2(fs, dir, 0, NULL, list_cb, &ctx);

	if (!retval)
		retval = ctx.error;
	if (retval) {
		free(ctx.buf);
		return retval;
	}
	*out = ctx.buf;
	*out_len = (int) ctx.len;
	return 0;
}

EXPORT void piimg_free(void *ptr)
{
	free(ptr);
}

/* ---- creating and deleting ---- */

static void init_inode(ext2_filsys fs, inode_t *inode, unsigned int mode, unsigned int uid, unsigned int gid)
{
	memset(inode, 0, sizeof(*inode));
	if (EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE)
		inode->i_extra_isize = sizeof(inode_t) - EXT2_GOOD_OLD_INODE_SIZE;
	inode->i_mode = mode;
	set_owner(inode, uid, gid);
	SET_TIME(fs, inode, i_atime, now_sec, now_nsec);
	SET_TIME(fs, inode, i_mtime, now_sec, now_nsec);
	SET_TIME(fs, inode, i_ctime, now_sec, now_nsec);
	if (has_field(fs, inode, FIELD_END(i_crtime_extra)))
		SET_TIME(fs, inode, i_crtime, now_sec, now_nsec);
}

/* Writes a whole new on-disk inode, zeroing what lies beyond our struct (in-inode xattr space). */
static errcode_t write_fresh_inode(ext2_filsys fs, ext2_ino_t ino, inode_t *inode)
{
	int size = EXT2_INODE_SIZE(fs->super);
	unsigned char *buf;
	errcode_t retval;

	if (size <= (int) sizeof(*inode))
		return ext2fs_write_inode_full(fs, ino, (struct ext2_inode *) inode, size);
	buf = calloc(1, size);
	if (!buf)
		return EXT2_ET_NO_MEMORY;
	memcpy(buf, inode, sizeof(*inode));
	retval = ext2fs_write_inode_full(fs, ino, (struct ext2_inode *) buf, size);
	free(buf);
	return retval;
}

/* Creates an empty regular file; new files use extents when the filesystem has them. */
EXPORT errcode_t piimg_create(ext2_filsys fs, ext2_ino_t dir, const char *name, int mode, unsigned int uid,
			      unsigned int gid, ext2_ino_t *out)
{
	inode_t inode;
	ext2_ino_t ino;
	errcode_t retval;

	retval = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0644, NULL, &ino);
	if (retval)
		return retval;
	retval = link_growing(fs, dir, name, ino, EXT2_FT_REG_FILE);
	if (retval)
		return retval;
	ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
	init_inode(fs, &inode, LINUX_S_IFREG | (mode & 07777), uid, gid);
	inode.i_links_count = 1;
	if (ext2fs_has_feature_extents(fs->super)) {
		struct ext3_extent_header *header = (struct ext3_extent_header *) &inode.i_block[0];
		inode.i_flags |= EXT4_EXTENTS_FL;
		header->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
		header->eh_depth = 0;
		header->eh_entries = 0;
		header->eh_max = ext2fs_cpu_to_le16((sizeof(inode.i_block) - sizeof(*header)) / sizeof(struct ext3_extent));
	}
	retval = write_fresh_inode(fs, ino, &inode);
	if (retval)
		return retval;
	*out = ino;
	return touch_dir(fs, dir);
}

static errcode_t release_inode(ext2_filsys fs, ext2_ino_t ino);
EXPORT errcode_t piimg_adjust_links(ext2_filsys fs, ext2_ino_t ino, int delta, int *out);

EXPORT errcode_t piimg_mkdir(ext2_filsys fs, ext2_ino_t dir, const char *name, int mode, unsigned int uid,
			     unsigned int gid, ext2_ino_t *out)
{
	inode_t inode;
	ext2_ino_t ino;
	errcode_t retval;

	inode_t parent;
	int many_links;

	/* ext2fs_mkdir() increments the parent's 16-bit link count blindly.
	 * Past EXT2_LINK_MAX, dir_nlink says "1 = too many to count" (as the
	 * kernel does); without dir_nlink there is no room for another. */
	retval = get_inode(fs, dir, &parent);
	if (retval)
		return retval;
	many_links = parent.i_links_count == 1 || parent.i_links_count >= EXT2_LINK_MAX;
	if (many_links && parent.i_links_count != 1 && !ext2fs_has_feature_dir_nlink(fs->super))
		return EMLINK;
	retval = ext2fs_new_inode(fs, dir, LINUX_S_IFDIR | 0755, NULL, &ino);
	if (retval)
		return retval;
	/* Without a name ext2fs_mkdir() neither looks the name up (a linear
	 * scan of the whole directory, quadratic over many creations; the
	 * caller has checked) nor links it: link_growing() does, through the
	 * hash tree when there is one. */
	retval = ext2fs_mkdir(fs, dir, ino, NULL);
	if (retval)
		return retval;
	retval = link_growing(fs, dir, name, ino, EXT2_FT_DIR);
	if (retval) {
		int count;
		release_inode(fs, ino);
		piimg_adjust_links(fs, dir, -1, &count);
		return retval;
	}
	retval = get_inode(fs, ino, &inode);
	if (retval)
		return retval;
	if (many_links) {
		retval = get_inode(fs, dir, &parent);
		if (retval)
			return retval;
		parent.i_links_count = 1;
		retval = put_inode(fs, dir, &parent);
		if (retval)
			return retval;
	}
	inode.i_mode = LINUX_S_IFDIR | (mode & 07777);
	set_owner(&inode, uid, gid);
	SET_TIME(fs, &inode, i_atime, now_sec, now_nsec);
	SET_TIME(fs, &inode, i_mtime, now_sec, now_nsec);
	SET_TIME(fs, &inode, i_ctime, now_sec, now_nsec);
	if (has_field(fs, &inode, FIELD_END(i_crtime_extra)))
		SET_TIME(fs, &inode, i_crtime, now_sec, now_nsec);
	retval = put_inode(fs, ino, &inode);
	if (retval)
		return retval;
	*out = ino;
	return touch_dir(fs, dir);
}

EXPORT errcode_t piimg_symlink(ext2_filsys fs, ext2_ino_t dir, const char *name, const char *target,
			       unsigned int uid, unsigned int gid, ext2_ino_t *out)
{
	inode_t inode;
	ext2_ino_t ino;
	errcode_t retval;

	retval = ext2fs_new_inode(fs, dir, LINUX_S_IFLNK | 0777, NULL, &ino);
	if (retval)
		return retval;
	/* As in piimg_mkdir(): no name, so no linear lookup; we link. */
	retval = ext2fs_symlink(fs, dir, ino, NULL, target);
	if (retval)
		return retval;
	retval = link_growing(fs, dir, name, ino, EXT2_FT_SYMLINK);
	if (retval) {
		release_inode(fs, ino);
		return retval;
	}
	retval = get_inode(fs, ino, &inode);
	if (retval)
		return retval;
	/* Linux gives every symlink mode 0777. */
	inode.i_mode = LINUX_S_IFLNK | 0777;
	set_owner(&inode, uid, gid);
	SET_TIME(fs, &inode, i_atime, now_sec, now_nsec);
	SET_TIME(fs, &inode, i_mtime, now_sec, now_nsec);
	SET_TIME(fs, &inode, i_ctime, now_sec, now_nsec);
	if (has_field(fs, &inode, FIELD_END(i_crtime_extra)))
		SET_TIME(fs, &inode, i_crtime, now_sec, now_nsec);
	retval = put_inode(fs, ino, &inode);
	if (retval)
		return retval;
	*out = ino;
	return touch_dir(fs, dir);
}

EXPORT errcode_t piimg_readlink(ext2_filsys fs, ext2_ino_t ino, char *buf, int bufsize, int *out_len)
{
	inode_t inode;
	ext2_file_t file;
	unsigned int got = 0;
	size_t size;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	if (!LINUX_S_ISLNK(inode.i_mode))
		return EXT2_ET_INVALID_ARGUMENT;
	size = EXT2_I_SIZE(&inode);
	if (size > (size_t) bufsize || size >= fs->blocksize)
		return EXT2_ET_INODE_CORRUPTED;
	if (inode.i_flags & EXT4_INLINE_DATA_FL) {
		size_t inline_size = 0;
		retval = ext2fs_inline_data_size(fs, ino, &inline_size);
		if (retval)
			return retval;
		if (inline_size > (size_t) bufsize)
			return EXT2_ET_INODE_CORRUPTED;
		retval = ext2fs_inline_data_get(fs, ino, (struct ext2_inode *) &inode, buf, NULL);
		if (retval)
			return retval;
		*out_len = (int) size;
		return 0;
	}
	if (ext2fs_is_fast_symlink((struct ext2_inode *) &inode)) {
		if (size > sizeof(inode.i_block))
			return EXT2_ET_INODE_CORRUPTED;
		memcpy(buf, (char *) inode.i_block, size);
		*out_len = (int) size;
		return 0;
	}
	retval = ext2fs_file_open2(fs, ino, (struct ext2_inode *) &inode, 0, &file);
	if (retval)
		return retval;
	retval = ext2fs_file_read(file, buf, (unsigned int) size, &got);
	ext2fs_file_close(file);
	if (retval)
		return retval;
	*out_len = (int) got;
	return 0;
}

/* Frees the blocks, extended attribute block and the inode itself. */
static errcode_t release_inode(ext2_filsys fs, ext2_ino_t ino)
{
	inode_t inode;
	blk64_t ea_block;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	if (ext2fs_inode_has_valid_blocks2(fs, (struct ext2_inode *) &inode)) {
		retval = ext2fs_punch(fs, ino, (struct ext2_inode *) &inode, NULL, 0, ~0ULL);
		if (retval)
			return retval;
		retval = get_inode(fs, ino, &inode);
		if (retval)
			return retval;
	}
	ea_block = ext2fs_file_acl_block(fs, (struct ext2_inode *) &inode);
	if (ea_block) {
		__u32 count = 0;
		retval = ext2fs_adjust_ea_refcount3(fs, ea_block, NULL, -1, &count, ino);
		if (retval)
			return retval;
		if (count == 0)
			ext2fs_block_alloc_stats2(fs, ea_block, -1);
		ext2fs_file_acl_block_set(fs, (struct ext2_inode *) &inode, 0);
	}
	inode.i_links_count = 0;
	inode.i_dtime = (__u32) now_sec;
	retval = put_inode(fs, ino, &inode);
	if (retval)
		return retval;
	ext2fs_inode_alloc_stats2(fs, ino, -1, LINUX_S_ISDIR(inode.i_mode));
	return 0;
}

/*
 * Changes the link count by `delta`; at zero the inode is released.
 * A directory's count of 1 means "too many to count" under dir_nlink and
 * is left alone. `out` receives the new count.
 */
EXPORT errcode_t piimg_adjust_links(ext2_filsys fs, ext2_ino_t ino, int delta, int *out)
{
	inode_t inode;
	long count;
	errcode_t retval = get_inode(fs, ino, &inode);

	if (retval)
		return retval;
	count = inode.i_links_count;
	if (LINUX_S_ISDIR(inode.i_mode) && count == 1 && ext2fs_has_feature_dir_nlink(fs->super)) {
		*out = 1;
	} else {
		count += delta;
		if (count < 0)
			return EXT2_ET_INODE_CORRUPTED;
		if (count > EXT2_LINK_MAX) {
			if (!LINUX_S_ISDIR(inode.i_mode) || !ext2fs_has_feature_dir_nlink(fs->super))
				return EMLINK;
			count = 1;
		}
		inode.i_links_count = (__u16) count;
		*out = (int) count;
	}
	if (*out == 0)
		return release_inode(fs, ino);
	touch(fs, &inode, 0);
	return put_inode(fs, ino, &inode);
}

/* Releases a directory that has just lost its last name (its own "." no longer counts). */
EXPORT errcode_t piimg_release(ext2_filsys fs, ext2_ino_t ino)
{
	return release_inode(fs, ino);
}

/* ---- file data ---- */

EXPORT errcode_t piimg_file_open(ext2_filsys fs, ext2_ino_t ino, int writable, ext2_file_t *out)
{
	return ext2fs_file_open(fs, ino, writable ? EXT2_FILE_WRITE : 0, out);
}

EXPORT errcode_t piimg_file_read(ext2_file_t file, void *buf, int length, int *got)
{
	unsigned int count = 0;
	errcode_t retval = ext2fs_file_read(file, buf, (unsigned int) length, &count);

	*got = (int) count;
	return retval;
}

EXPORT errcode_t piimg_file_write(ext2_file_t file, const void *buf, int length, int *written)
{
	unsigned int count = 0;
	errcode_t retval = ext2fs_file_write(file, buf, (unsigned int) length, &count);

	*written = (int) count;
	return retval;
}

EXPORT errcode_t piimg_file_seek(ext2_file_t file, double position)
{
	return ext2fs_file_llseek(file, (__u64) position, EXT2_SEEK_SET, NULL);
}

EXPORT errcode_t piimg_file_truncate(ext2_file_t file, double size)
{
	return ext2fs_file_set_size2(file, (ext2_off64_t) size);
}

/* Writes through the ext2fs_file_* path: any offset and length. */
static errcode_t write_via_file(ext2_filsys fs, ext2_ino_t ino, __u64 offset, const char *buf, unsigned int len)
{
	ext2_file_t file;
	unsigned int written = 0;
	errcode_t retval = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &file);

	if (retval)
		return retval;
	retval = ext2fs_file_llseek(file, offset, EXT2_SEEK_SET, NULL);
	if (!retval)
		retval = ext2fs_file_write(file, buf, len, &written);
	if (!retval && written != len)
		retval = EXT2_ET_SHORT_WRITE;
	if (retval) {
		ext2fs_file_close(file);
		return retval;
	}
	return ext2fs_file_close(file);
}

/* The physical run behind logical block `lblk` of an extent-mapped inode, at most `max` blocks long. */
static errcode_t extent_run(ext2_filsys fs, ext2_ino_t ino, inode_t *inode, blk64_t lblk, blk64_t max, blk64_t *pblk,
			    blk64_t *count)
{
	ext2_extent_handle_t handle;
	struct ext2fs_extent extent;
	errcode_t retval = ext2fs_extent_open2(fs, ino, (struct ext2_inode *) inode, &handle);

	if (retval)
		return retval;
	retval = ext2fs_extent_goto2(handle, 0, lblk);
	if (!retval)
		retval = ext2fs_extent_get(handle, EXT2_EXTENT_CURRENT, &extent);
	ext2fs_extent_free(handle);
	if (retval)
		return retval;
	if (lblk < extent.e_lblk || lblk >= extent.e_lblk + extent.e_len || (extent.e_flags & EXT2_EXTENT_FLAGS_UNINIT))
		return EXT2_ET_EXTENT_NOT_FOUND;
	*pblk = extent.e_pblk + (lblk - extent.e_lblk);
	*count = extent.e_lblk + extent.e_len - lblk;
	if (*count > max)
		*count = max;
	return 0;
}

/*
 * Writes `len` bytes at `offset` into a file, growing it. Whole blocks at a
 * block-aligned offset are allocated in one go (ext2fs_fallocate for
 * extents, so they come out contiguous) and written as long runs, instead
 * of ext2fs_file_write()'s block-at-a-time allocate, map and write; the
 * rest goes through ext2fs_file_write(). The range must not be allocated
 * yet (writeFile truncates first and writes in order).
 */
EXPORT errcode_t piimg_write_at(ext2_filsys fs, ext2_ino_t ino, double offset_d, const char *buf, int len)
{
	__u64 offset = (__u64) offset_d;
	unsigned int bs = fs->blocksize;
	blk64_t start, nblocks, done = 0;
	inode_t inode;
	errcode_t retval;

	if (len <= 0)
		return 0;
	if (offset % bs != 0 || (unsigned int) len < bs)
		return write_via_file(fs, ino, offset, buf, (unsigned int) len);
	start = offset / bs;
	nblocks = (unsigned int) len / bs;
	retval = get_inode(fs, ino, &inode);
	if (retval)
		return retval;
	if (inode.i_flags & EXT4_EXTENTS_FL) {
		blk64_t goal = ext2fs_find_inode_goal(fs, ino, (struct ext2_inode *) &inode, start);
		retval = ext2fs_fallocate(fs, EXT2_FALLOCATE_FORCE_INIT, ino, (struct ext2_inode *) &inode, goal, start, nblocks);
		/* ext2fs_fallocate() only writes an inode it read itself; ours
		 * carries the new i_blocks (and maybe the extent root). */
		if (!retval)
			retval = put_inode(fs, ino, &inode);
		if (retval)
			return retval;
		while (done < nblocks) {
			blk64_t pblk, count;
			retval = extent_run(fs, ino, &inode, start + done, nblocks - done, &pblk, &count);
			if (retval)
				return retval;
			retval = io_channel_write_blk64(fs->io, pblk, (int) count, buf + done * bs);
			if (retval)
				return retval;
			done += count;
		}
	} else {
		/* Block-mapped files (ext2/ext3): allocate block by block without
		 * zeroing (ext2fs_fallocate would zero them first), write runs. */
		blk64_t run_start = 0, run_len = 0;
		while (done < nblocks) {
			blk64_t pblk = 0;
			retval = ext2fs_bmap2(fs, ino, (struct ext2_inode *) &inode, NULL, BMAP_ALLOC, start + done, NULL, &pblk);
			if (retval)
				return retval;
			if (run_len && pblk == run_start + run_len && run_len < 65536) {
				run_len++;
			} else {
				if (run_len) {
					retval = io_channel_write_blk64(fs->io, run_start, (int) run_len,
									buf + (done - run_len) * bs);
					if (retval)
						return retval;
				}
				run_start = pblk;
				run_len = 1;
			}
			done++;
		}
		if (run_len) {
			retval = io_channel_write_blk64(fs->io, run_start, (int) run_len, buf + (done - run_len) * bs);
			if (retval)
				return retval;
		}
		retval = get_inode(fs, ino, &inode);
		if (retval)
			return retval;
	}
	if (EXT2_I_SIZE(&inode) < offset + (__u64) nblocks * bs) {
		retval = ext2fs_inode_size_set(fs, (struct ext2_inode *) &inode, offset + (__u64) nblocks * bs);
		if (retval)
			return retval;
		retval = put_inode(fs, ino, &inode);
		if (retval)
			return retval;
	}
	if ((unsigned int) len > nblocks * bs)
		return write_via_file(fs, ino, offset + nblocks * bs, buf + nblocks * bs, (unsigned int) len - nblocks * bs);
	return 0;
}

/*
 * Reads up to `len` bytes at `offset` into `buf` (which holds `capacity`
 * bytes, a multiple of the block size). Extent-mapped data is read in runs
 * of contiguous blocks, straight from the device; holes and unwritten
 * extents read as zeros. Other inodes go through ext2fs_file_read().
 */
EXPORT errcode_t piimg_read_at(ext2_filsys fs, ext2_ino_t ino, double offset_d, char *buf, int len, int capacity,
			       int *got)
{
	__u64 offset = (__u64) offset_d;
	unsigned int bs = fs->blocksize;
	__u64 size;
	blk64_t start, nblocks, done = 0;
	inode_t inode;
	errcode_t retval = get_inode(fs, ino, &inode);

	*got = 0;
	if (retval)
		return retval;
	size = EXT2_I_SIZE(&inode);
	if (len <= 0 || offset >= size)
		return 0;
	if ((__u64) len > size - offset)
		len = (int) (size - offset);
	if (!(inode.i_flags & EXT4_EXTENTS_FL) || (inode.i_flags & EXT4_INLINE_DATA_FL) || offset % bs != 0 ||
	    (unsigned int) capacity % bs != 0 || (unsigned int) capacity < ((unsigned int) len + bs - 1) / bs * bs) {
		ext2_file_t file;
		unsigned int count = 0;
		retval = ext2fs_file_open2(fs, ino, (struct ext2_inode *) &inode, 0, &file);
		if (retval)
			return retval;
		retval = ext2fs_file_llseek(file, offset, EXT2_SEEK_SET, NULL);
		if (!retval)
			retval = ext2fs_file_read(file, buf, (unsigned int) len, &count);
		ext2fs_file_close(file);
		*got = (int) count;
		return retval;
	}
	start = offset / bs;
	nblocks = ((__u64) len + bs - 1) / bs;
	while (done < nblocks) {
		blk64_t pblk, count;
		retval = extent_run(fs, ino, &inode, start + done, nblocks - done, &pblk, &count);
		if (retval == EXT2_ET_EXTENT_NOT_FOUND || retval == EXT2_ET_NO_CURRENT_NODE) {
			/* A hole or an unwritten extent: one block of zeros. */
			memset(buf + done * bs, 0, bs);
			done++;
			continue;
		}
		if (retval)
			return retval;
		retval = io_channel_read_blk64(fs->io, pblk, (int) count, buf + done * bs);
		if (retval)
			return retval;
		done += count;
	}
	*got = len;
	return 0;
}

/* Closes a file, stamping mtime/ctime when it was written (ext2fs_file_close() only flushes). */
EXPORT errcode_t piimg_file_close(ext2_file_t file, int modified)
{
	ext2_filsys fs = ext2fs_file_get_fs(file);
	ext2_ino_t ino = ext2fs_file_get_inode_num(file);
	errcode_t retval = ext2fs_file_close(file);
	inode_t inode;

	if (retval || !modified)
		return retval;
	retval = get_inode(fs, ino, &inode);
	if (retval)
		return retval;
	touch(fs, &inode, 1);
	return put_inode(fs, ino, &inode);
}
