/* Reference-counted immutable buffers, the content-type intern table, and what a content
 * type may hold. */
#include "runtime/buffer.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

/* Big buffers ask for transparent huge pages. Filling a fresh 1 GiB buffer otherwise
 * takes 262,144 page faults, each zeroing 4 KiB, and those faults were most of what a
 * 1 GiB upload cost beyond receiving it (see BENCHMARKS.md, benchmark c). Only worth it,
 * and only asked, for buffers far larger than a huge page; small objects stay on 4 KiB
 * pages. The advice is a hint: where THP is off it changes nothing. */
#define HUGE_PAGE_ADVICE_MIN ((size_t)32 << 20)

static void advise_huge_pages(void *mem, size_t len)
{
#ifdef MADV_HUGEPAGE
    if (len < HUGE_PAGE_ADVICE_MIN)
        return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return;
    uintptr_t start = ((uintptr_t)mem + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t end = ((uintptr_t)mem + len) & ~((uintptr_t)page - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)mem;
    (void)len;
#endif
}

static const char *intern_or_null(const char *content_type, size_t len);
static const char JSON_UTF8[];

rt_buf *rt_buf_new(size_t size, const char *content_type)
{
    if (!content_type)
        content_type = "application/octet-stream";
    if (!rt_content_type_valid(content_type) || size > (size_t)-1 - sizeof(rt_buf) - 1)
        return NULL;
    size_t ct_len = strlen(content_type);
    const char *ct = intern_or_null(content_type, ct_len);
    char *owned = NULL;
    if (!ct) {
        /* The intern table is full: this buffer keeps its own copy, freed with it, so that
         * the type is kept and memory stays bounded by the objects that use it. */
        owned = malloc(ct_len + 1);
        if (!owned)
            return NULL;
        memcpy(owned, content_type, ct_len + 1);
        ct = owned;
    }
    rt_buf *buf = malloc(sizeof(rt_buf) + size + 1);
    if (!buf) {
        free(owned);
        return NULL;
    }
    advise_huge_pages(buf, sizeof(rt_buf) + size + 1);
    buf->refs = 1;
    buf->owns_content_type = owned != NULL;
    buf->size = size;
    buf->content_type = ct;
    buf->data[size] = '\0';
    return buf;
}

rt_buf *rt_buf_from_interned(const void *data, size_t size, const char *interned_type)
{
    if (size > (size_t)-1 - sizeof(rt_buf) - 1)
        return NULL;
    rt_buf *buf = malloc(sizeof(rt_buf) + size + 1);
    if (!buf)
        return NULL;
    advise_huge_pages(buf, sizeof(rt_buf) + size + 1);
    buf->refs = 1;
    buf->owns_content_type = false;
    buf->size = size;
    buf->content_type = interned_type;
    memcpy(buf->data, data, size);
    buf->data[size] = '\0';
    return buf;
}

rt_buf *rt_buf_from(const void *data, size_t size, const char *content_type)
{
    rt_buf *buf = rt_buf_new(size, content_type);
    if (buf && size)
        memcpy(buf->data, data, size);
    return buf;
}

rt_buf *rt_buf_from_json(const json_t *value)
{
    /* Most values (results such as 1) are dumped on the stack and copied once: json_dumps
     * grew a buffer of its own first, and rt_buf_from checked and looked up the type. */
    static const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    if (json_is_integer(value)) {
        /* jansson prints integers with snprintf, most of the cost of a result such as 1 */
        json_int_t v = json_integer_value(value);
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        char digits[24];
        size_t n = 0;
        do {
            digits[sizeof(digits) - ++n] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            digits[sizeof(digits) - ++n] = '-';
        return rt_buf_from_interned(digits + sizeof(digits) - n, n, JSON_UTF8);
    }
    char small[256];
    size_t len = json_dumpb(value, small, sizeof(small), flags);
    if (len == 0)
        return NULL;
    if (len <= sizeof(small))
        return rt_buf_from_interned(small, len, JSON_UTF8);
    rt_buf *buf = rt_buf_new(len, JSON_UTF8);
    if (buf && json_dumpb(value, buf->data, len, flags) != len) {
        rt_buf_decref(buf);
        return NULL;
    }
    return buf;
}

rt_buf *rt_buf_resize(rt_buf *buf, size_t new_size)
{
    if (new_size > (size_t)-1 - sizeof(rt_buf) - 1)
        return NULL;
    size_t old_size = buf->size;
    rt_buf *grown = realloc(buf, sizeof(rt_buf) + new_size + 1);
    if (!grown)
        return NULL;
    if (new_size > old_size) /* a shrink to fit keeps the advice it had */
        advise_huge_pages(grown, sizeof(rt_buf) + new_size + 1);
    grown->size = new_size;
    grown->data[new_size] = '\0';
    return grown;
}

rt_buf *rt_buf_incref(rt_buf *buf)
{
    if (buf)
        __atomic_add_fetch(&buf->refs, 1, __ATOMIC_RELAXED);
    return buf;
}

void rt_buf_decref(rt_buf *buf)
{
    if (buf && __atomic_sub_fetch(&buf->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (buf->owns_content_type)
            free((char *)buf->content_type);
        free(buf);
    }
}

/* The intern table: a small, append-only linked list. Content types in real use number a
 * handful, so a list under a lock is fast enough, and the two most common are answered
 * without any lock. The table is bounded so that hostile clients cannot grow it forever;
 * past the bound, buffers with a new type keep their own copy of it (rt_buf_new). */
#define INTERN_MAX 4096

typedef struct intern_node {
    struct intern_node *next;
    char text[];
} intern_node;

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static intern_node *intern_head;
static unsigned intern_count;

static const char OCTET_STREAM[] = "application/octet-stream";
static const char JSON_UTF8[] = "application/json";

/* The interned copy of content_type (len bytes), or NULL when the table is full (or out of
 * memory). */
static const char *intern_or_null(const char *content_type, size_t len)
{
    if (strcmp(content_type, OCTET_STREAM) == 0)
        return OCTET_STREAM;
    if (strcmp(content_type, JSON_UTF8) == 0)
        return JSON_UTF8;

    pthread_mutex_lock(&intern_lock);
    const char *found = NULL;
    for (intern_node *n = intern_head; n; n = n->next) {
        if (strcmp(n->text, content_type) == 0) {
            found = n->text;
            break;
        }
    }
    if (!found && intern_count < INTERN_MAX) {
        intern_node *n = malloc(sizeof(*n) + len + 1);
        if (n) {
            memcpy(n->text, content_type, len + 1);
            n->next = intern_head;
            intern_head = n;
            intern_count++;
            found = n->text;
        }
    }
    pthread_mutex_unlock(&intern_lock);
    return found;
}

const char *rt_content_type_intern(const char *content_type)
{
    if (!content_type || !rt_content_type_valid(content_type))
        return NULL;
    return intern_or_null(content_type, strlen(content_type));
}

/* RFC 3629's rules; buffer.h says what it returns. */
size_t rt_utf8_sequence(const unsigned char *p)
{
    size_t n;
    uint32_t cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

bool rt_content_type_valid(const char *content_type)
{
    const unsigned char *p = (const unsigned char *)content_type;
    size_t len = 0;
    while (p[len]) {
        size_t n = 1;
        if (p[len] >= 0x80)
            n = rt_utf8_sequence(p + len);
        else if ((p[len] < 0x20 && p[len] != '\t') || p[len] == 0x7f)
            n = 0;
        if (n == 0)
            return false;
        len += n;
        if (len > RT_CONTENT_TYPE_MAX)
            return false;
    }
    return len > 0;
}

int rt_content_type_is_json(const char *content_type)
{
    if (!content_type)
        return 0;
    size_t n = strcspn(content_type, ";");
    while (n > 0 && content_type[n - 1] == ' ')
        n--;
    if (n == 16 && strncasecmp(content_type, "application/json", 16) == 0)
        return 1;
    return n >= 5 && strncasecmp(content_type + n - 5, "+json", 5) == 0;
}
