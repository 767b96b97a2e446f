/* rt_spill: the files the object store spills cold objects to when memory is full (Ray's
 * object spilling).
 *
 * Each rayd process spills into a directory of its own, <dir>/<pid>, which holds a lock
 * file it keeps locked (flock) for its lifetime. Opening the spill removes every such
 * directory under <dir> whose lock nobody holds: the files of a previous process are gone
 * at start, while another rayd running on the same directory keeps its own.
 *
 * rt_spill_write writes several objects into one new file (fused, as Ray fuses small
 * objects, so that a million small objects are not a million files) and returns one
 * rt_spilled per object. An rt_spilled is reference-counted; when the last reference of
 * every object in a file is gone, the file is deleted and its space returned. Files are
 * never rewritten, so reads need no lock: a reader holding a reference reads by pread or
 * sends the bytes with sendfile from rt_spilled_fd. Big objects are written with O_DIRECT
 * where the file system allows it (their pages go to the disk without a copy into the page
 * cache), each placed after a hole of under 4 KiB that aligns it (spill.c).
 *
 * Thread-safety: every function may be called from any thread. */
#ifndef RAYD_RUNTIME_SPILL_H
#define RAYD_RUNTIME_SPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/buffer.h"
#include "runtime/status.h"

typedef struct rt_spill rt_spill;
typedef struct rt_spill_file rt_spill_file;

/* One object's bytes on disk. Immutable but for refs. */
typedef struct rt_spilled {
    int refs;               /* atomic; rt_spilled_incref / _decref */
    rt_spill_file *file;
    uint64_t offset;        /* of the object's first byte in the file */
    size_t size;
    char content_type[];    /* NUL-terminated copy */
} rt_spilled;

typedef struct rt_spill_config {
    const char *dir;   /* the base directory; made when missing */
    size_t disk_limit; /* bytes of spill files at most; 0: no limit */
    size_t direct_min; /* objects of this size and more are written with O_DIRECT (their
                          whole pages; see spill.c); 0: the default, 128 KiB */
    bool no_direct;    /* every write buffered */
} rt_spill_config;

typedef struct rt_spill_stats {
    size_t files;       /* spill files on disk */
    size_t disk_bytes;  /* their bytes (the holes that align big objects included) */
    size_t disk_limit;
    uint64_t writes;    /* objects written */
    uint64_t write_bytes;
    uint64_t direct_bytes; /* of write_bytes, those written with O_DIRECT */
    uint64_t reads;     /* objects read back into memory (not counting sendfile) */
    uint64_t removed_at_start; /* files of previous processes removed when opened */
} rt_spill_stats;

/* Opens the spill directory: makes it (and <dir>/<pid>), removes what previous processes
 * left. Returns RT_OK with *out set, or RT_EINVAL (the directory cannot be made or written:
 * err says which and why) or RT_ENOMEM. */
rt_status rt_spill_open(const rt_spill_config *config, rt_spill **out, char *err,
                        size_t err_size);

/* Removes this process's spill directory and frees s. Every rt_spilled must have been
 * released. NULL accepted. */
void rt_spill_close(rt_spill *s);

/* Writes n buffers (borrowed) into one new file; out receives n new rt_spilled (one
 * reference each, owned by the caller). Returns RT_OK, RT_EFULL (the disk limit would be
 * passed, or the disk is full; nothing written), RT_ENOMEM; on failure every out[i] is
 * NULL. */
rt_status rt_spill_write(rt_spill *s, rt_buf *const *bufs, size_t n, rt_spilled **out);

rt_spilled *rt_spilled_incref(rt_spilled *sp);
/* Drops a reference; NULL accepted. The last reference of the last object of a file
 * deletes the file. */
void rt_spilled_decref(rt_spilled *sp);

/* The file descriptor of sp's file, valid while a reference to sp is held (dup it to keep
 * it longer). */
int rt_spilled_fd(const rt_spilled *sp);

/* Reads the object back into a new buffer (the caller's reference), or NULL on an I/O
 * error or out of memory. */
rt_buf *rt_spilled_read(rt_spill *s, const rt_spilled *sp);

void rt_spill_get_stats(rt_spill *s, rt_spill_stats *out);

/* The default base directory: $TMPDIR/rayd-spill, or /tmp/rayd-spill. Static string. */
const char *rt_spill_default_dir(void);

#endif
