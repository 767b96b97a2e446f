/* The record table's tests again, with chunks of 4 pairs instead of 64, so that every test
 * splits and merges chunks all the time and every page crosses chunk boundaries, and with
 * the table's internals at hand, so that check_indexes checks the index's invariants. */
#define RT_RECORD_CHUNK 4
#define RECORD_TABLE_INTERNALS
#include "runtime/record_table.c"
#include "tests/unit/runtime/test_record_table.c"
