/* The record table's tests again, with a walk stack of 4 entries instead of 128, so that
 * every page goes through the path a too-deep treap would take: nodes fall off the bottom
 * of the stack and the walk seeks again from the root when the rest runs out. */
#define RT_RECORD_CHUNK 4
#include "runtime/record_table.c"
#include "tests/unit/runtime/test_record_table.c"
