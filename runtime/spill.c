/* Spill files: writing fused files of objects, reading them back, deleting a file when its
 * last object is released, and removing what earlier processes left (see spill.h). */
#include "runtime/spill.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOCK_NAME "lock"

/* Big objects are written with O_DIRECT: the device takes the bytes from the object's own
 * pages, where a buffered write first copies every byte into the page cache, and that copy
 * of cold memory was most of what spilling cost (BENCHMARKS.md, benchmark o). O_DIRECT needs
 * the memory, the file offset and the length aligned to the block: each big object is
 * placed in its file at an offset congruent to its address modulo DIRECT_ALIGN, so that its
 * whole pages go direct, and the part before its first page boundary and after its last
 * (under DIRECT_ALIGN each) are written buffered. The cost is up to DIRECT_ALIGN - 1 bytes
 * of hole before each big object; rt_spilled keeps the real offset and size. */
#define DIRECT_ALIGN ((uint64_t)4096)
#define DIRECT_MIN_DEFAULT ((size_t)128 << 10) /* smaller objects: packed, buffered */

struct rt_spill_file {
    rt_spill *spill;
    int fd;
    int objects; /* atomic: rt_spilled of this file not yet released */
    size_t size;
    char path[];
};

struct rt_spill {
    char dir[PATH_MAX];  /* <base>/<pid> */
    int lock_fd;         /* flock held for the process's lifetime */
    size_t disk_limit;
    size_t direct_min;   /* objects from this size are written with O_DIRECT */
    int direct_works;    /* atomic: 0 once the file system refused O_DIRECT */
    size_t disk_bytes;   /* atomic: bytes of files on disk, and of writes in flight */
    size_t files;        /* atomic */
    uint64_t next_file;  /* atomic */
    uint64_t writes, write_bytes, direct_bytes, reads, removed_at_start; /* atomic */
};

static char default_dir[PATH_MAX];
static pthread_once_t default_dir_once = PTHREAD_ONCE_INIT;

static void default_dir_init(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(default_dir, sizeof(default_dir), "%s/rayd-spill", tmp && *tmp ? tmp : "/tmp");
}

const char *rt_spill_default_dir(void)
{
    pthread_once(&default_dir_once, default_dir_init);
    return default_dir;
}

/* ---- start: the directory, and what earlier processes left -------------------------- */

/* Removes every file in path, then path. Returns how many files went. */
static uint64_t remove_tree(const char *path)
{
    uint64_t removed = 0;
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX];
            if (snprintf(p, sizeof(p), "%s/%s", path, e->d_name) >= (int)sizeof(p))
                continue;
            if (unlink(p) == 0 && strcmp(e->d_name, LOCK_NAME) != 0)
                removed++;
        }
        closedir(d);
    }
    rmdir(path);
    return removed;
}

/* Whether the process that named a directory is alive (and not this one): such a
 * directory is kept even when unlocked, since its owner may be between making it and
 * locking it. A reused pid keeps a dead process's files until that pid goes. */
static bool owner_alive(const char *name)
{
    long pid = strtol(name, NULL, 10);
    if (pid <= 0 || pid == (long)getpid())
        return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Removes the per-process directories under base whose lock nobody holds and whose
 * process is gone. */
static uint64_t remove_stale(const char *base)
{
    uint64_t removed = 0;
    DIR *d = opendir(base);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!*n || strspn(n, "0123456789") != strlen(n))
            continue; /* not a process's directory: not ours to touch */
        char sub[PATH_MAX], lock[PATH_MAX];
        if (snprintf(sub, sizeof(sub), "%s/%s", base, n) >= (int)sizeof(sub) ||
            snprintf(lock, sizeof(lock), "%s/%s", sub, LOCK_NAME) >= (int)sizeof(lock))
            continue;
        int fd = open(lock, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT && !owner_alive(n))
                removed += remove_tree(sub); /* no lock file: a process that died starting */
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && !owner_alive(n))
            removed += remove_tree(sub); /* its process is gone */
        close(fd);
    }
    closedir(d);
    return removed;
}

rt_status rt_spill_open(const rt_spill_config *config, rt_spill **out, char *err,
                        size_t err_size)
{
    *out = NULL;
    const char *base = config->dir && *config->dir ? config->dir : rt_spill_default_dir();
    if (mkdir(base, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "spill directory %s cannot be made: %s", base, strerror(errno));
        return RT_EINVAL;
    }
    if (access(base, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "spill directory %s is not writable: %s", base,
                 strerror(errno));
        return RT_EINVAL;
    }
    rt_spill *s = calloc(1, sizeof(*s));
    if (!s)
        return RT_ENOMEM;
    s->disk_limit = config->disk_limit;
    s->direct_min = config->direct_min ? config->direct_min : DIRECT_MIN_DEFAULT;
    s->direct_works = config->no_direct ? 0 : 1;
    s->lock_fd = -1;
    s->removed_at_start = remove_stale(base);
    if (snprintf(s->dir, sizeof(s->dir), "%s/%ld", base, (long)getpid()) >= (int)sizeof(s->dir)) {
        snprintf(err, err_size, "spill directory %s: path too long", base);
        free(s);
        return RT_EINVAL;
    }
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof(lock), "%s/" LOCK_NAME, s->dir);
    bool made = (mkdir(s->dir, 0700) == 0 || errno == EEXIST) &&
                (s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0;
    if (!made || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (made)
            snprintf(err, err_size, "spill directory %s is in use by a live process", s->dir);
        else
            snprintf(err, err_size, "spill directory %s is not writable: %s", s->dir,
                     strerror(errno));
        if (s->lock_fd >= 0)
            close(s->lock_fd);
        free(s);
        return RT_EINVAL;
    }
    *out = s;
    return RT_OK;
}

void rt_spill_close(rt_spill *s)
{
    if (!s)
        return;
    remove_tree(s->dir);
    close(s->lock_fd);
    free(s);
}

/* ---- writing ---------------------------------------------------------------------------- */

static void file_release(rt_spill_file *f)
{
    rt_spill *s = f->spill;
    unlink(f->path);
    close(f->fd);
    __atomic_sub_fetch(&s->disk_bytes, f->size, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&s->files, 1, __ATOMIC_RELAXED);
    free(f);
}

/* Writes len bytes at offset, retrying short writes. 0 or -1 (errno set). */
static int write_all(int fd, const char *p, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)offset);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
        offset += (uint64_t)w;
    }
    return 0;
}

/* Where an object of size bytes at data goes in a file whose bytes end at end: right
 * there when it is written buffered, or at the first offset congruent to data modulo
 * DIRECT_ALIGN when it is big enough to go direct. */
static uint64_t place(const rt_spill *s, bool direct, const char *data, size_t size,
                      uint64_t end)
{
    if (!direct || size < s->direct_min)
        return end;
    uint64_t offset = (end & ~(DIRECT_ALIGN - 1)) + ((uintptr_t)data & (DIRECT_ALIGN - 1));
    return offset < end ? offset + DIRECT_ALIGN : offset;
}

/* Writes one object placed by place(): its whole pages through direct_fd when there is
 * one, the rest through fd. Returns 0, or -1 (errno set). */
static int write_object(rt_spill *s, int fd, int direct_fd, const char *data, size_t size,
                        uint64_t offset)
{
    if (direct_fd < 0 || size < s->direct_min)
        return write_all(fd, data, size, offset);
    size_t head = (size_t)((DIRECT_ALIGN - ((uintptr_t)data & (DIRECT_ALIGN - 1))) &
                           (DIRECT_ALIGN - 1));
    if (head > size)
        head = size;
    size_t middle = (size - head) & ~(size_t)(DIRECT_ALIGN - 1);
    if (write_all(fd, data, head, offset) != 0)
        return -1;
    if (middle) {
        if (write_all(direct_fd, data + head, middle, offset + head) == 0) {
            __atomic_add_fetch(&s->direct_bytes, middle, __ATOMIC_RELAXED);
        } else if (errno == EINVAL) {
            /* The device wants a larger alignment than DIRECT_ALIGN (or the file system
             * changed its mind): buffered, as small objects, from now on. */
            __atomic_store_n(&s->direct_works, 0, __ATOMIC_RELAXED);
            if (write_all(fd, data + head, middle, offset + head) != 0)
                return -1;
        } else {
            return -1;
        }
    }
    return write_all(fd, data + head + middle, size - head - middle, offset + head + middle);
}

rt_status rt_spill_write(rt_spill *s, rt_buf *const *bufs, size_t n, rt_spilled **out)
{
    if (n == 0)
        return RT_OK; /* no file: one without objects would never be released */
    bool direct = __atomic_load_n(&s->direct_works, __ATOMIC_RELAXED);
    size_t total = 0, made = 0;
    uint64_t end = 0;
    bool any_direct = false;
    rt_status st = RT_ENOMEM;
    for (; made < n; made++) {
        const rt_buf *b = bufs[made];
        size_t ctlen = strlen(b->content_type);
        rt_spilled *sp = malloc(sizeof(*sp) + ctlen + 1);
        if (!sp) {
            for (size_t i = 0; i < made; i++) {
                free(out[i]);
                out[i] = NULL;
            }
            return RT_ENOMEM;
        }
        sp->refs = 1;
        sp->offset = place(s, direct, b->data, b->size, end);
        sp->size = b->size;
        memcpy(sp->content_type, b->content_type, ctlen + 1);
        out[made] = sp;
        any_direct = any_direct || (direct && b->size >= s->direct_min);
        end = sp->offset + b->size;
        total += b->size;
    }
    /* Reserve the disk first (the file's extent, holes included), so that concurrent
     * writers never pass the limit together. */
    size_t used = __atomic_add_fetch(&s->disk_bytes, (size_t)end, __ATOMIC_RELAXED);
    if (s->disk_limit && used > s->disk_limit) {
        st = RT_EFULL;
        goto unreserve;
    }
    uint64_t id = __atomic_add_fetch(&s->next_file, 1, __ATOMIC_RELAXED);
    size_t plen = strlen(s->dir) + 32;
    rt_spill_file *f = calloc(1, sizeof(*f) + plen);
    int direct_fd = -1;
    if (!f)
        goto unreserve;
    f->spill = s;
    f->size = (size_t)end;
    snprintf(f->path, plen, "%s/%08llu.spill", s->dir, (unsigned long long)id);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        st = RT_EFULL;
        goto fail;
    }
#ifdef O_DIRECT
    if (any_direct) {
        /* A second descriptor for the direct writes: readers (pread, sendfile) use f->fd,
         * which O_DIRECT's alignment rules must not reach. */
        direct_fd = open(f->path, O_WRONLY | O_DIRECT | O_CLOEXEC);
        if (direct_fd < 0 && errno == EINVAL)
            __atomic_store_n(&s->direct_works, 0, __ATOMIC_RELAXED); /* tmpfs of old */
    }
#endif
    for (size_t i = 0; i < n; i++) {
        out[i]->file = f;
        if (write_object(s, f->fd, direct_fd, bufs[i]->data, bufs[i]->size,
                         out[i]->offset) != 0) {
            st = RT_EFULL; /* ENOSPC, EIO: the disk cannot take it */
            goto fail;
        }
    }
    if (direct_fd >= 0)
        close(direct_fd);
    f->objects = (int)n;
    __atomic_add_fetch(&s->files, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->writes, n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->write_bytes, total, __ATOMIC_RELAXED);
    return RT_OK;
fail:
    if (direct_fd >= 0)
        close(direct_fd);
    if (f->fd >= 0) {
        unlink(f->path);
        close(f->fd);
    }
    free(f);
unreserve:
    for (size_t i = 0; i < n; i++) {
        free(out[i]);
        out[i] = NULL; /* callers may release what they got back: nothing */
    }
    __atomic_sub_fetch(&s->disk_bytes, (size_t)end, __ATOMIC_RELAXED);
    return st;
}

/* ---- references, reading -------------------------------------------------------------- */

rt_spilled *rt_spilled_incref(rt_spilled *sp)
{
    if (sp)
        __atomic_add_fetch(&sp->refs, 1, __ATOMIC_RELAXED);
    return sp;
}

void rt_spilled_decref(rt_spilled *sp)
{
    if (!sp || __atomic_sub_fetch(&sp->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    rt_spill_file *f = sp->file;
    free(sp);
    if (__atomic_sub_fetch(&f->objects, 1, __ATOMIC_ACQ_REL) == 0)
        file_release(f);
}

int rt_spilled_fd(const rt_spilled *sp)
{
    return sp->file->fd;
}

rt_buf *rt_spilled_read(rt_spill *s, const rt_spilled *sp)
{
    rt_buf *b = rt_buf_new(sp->size, sp->content_type);
    if (!b)
        return NULL;
    size_t done = 0;
    while (done < sp->size) {
        ssize_t r = pread(sp->file->fd, b->data + done, sp->size - done,
                          (off_t)(sp->offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rt_buf_decref(b);
            return NULL;
        }
        done += (size_t)r;
    }
    if (s)
        __atomic_add_fetch(&s->reads, 1, __ATOMIC_RELAXED);
    return b;
}

void rt_spill_get_stats(rt_spill *s, rt_spill_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!s)
        return;
    out->files = __atomic_load_n(&s->files, __ATOMIC_RELAXED);
    out->disk_bytes = __atomic_load_n(&s->disk_bytes, __ATOMIC_RELAXED);
    out->disk_limit = s->disk_limit;
    out->writes = __atomic_load_n(&s->writes, __ATOMIC_RELAXED);
    out->write_bytes = __atomic_load_n(&s->write_bytes, __ATOMIC_RELAXED);
    out->direct_bytes = __atomic_load_n(&s->direct_bytes, __ATOMIC_RELAXED);
    out->reads = __atomic_load_n(&s->reads, __ATOMIC_RELAXED);
    out->removed_at_start = s->removed_at_start;
}
