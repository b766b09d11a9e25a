/*
 * plan.c: largest-first placement onto the roomiest drive, the per-file and
 * per-drive manifest reserve, and the first-fit-decreasing estimate of extra
 * drives (checked against a naive first fit), up to 1 M files.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "plan.h"
#include "proto/util.h"

/* No overhead at all: a file costs exactly its size. */
static const struct plan_cost zero_cost = {0};

static void
check_sums(const struct plan_file *files, size_t n, const struct plan_drive *drives,
           const struct plan_cost *c, const struct plan *p)
{
	uint64_t files_placed = 0, bytes_placed = 0, total = 0, unplaced = 0;

	for (size_t d = 0; d < p->n_drives; d++) {
		uint64_t charged = 0, bytes = 0, count = 0;

		for (size_t i = 0; i < n; i++) {
			if (p->file_drive[i] != (int32_t)d)
				continue;
			charged += plan_file_cost(c, &files[i]);
			bytes += files[i].size;
			count++;
		}
		if (count > 0)
			charged += c->drive_base;
		check_int(p->use[d].files, count);
		check_int(p->use[d].bytes, bytes);
		check_int(p->use[d].charged, charged);
		check(charged <= drives[d].free || count == 0);
		files_placed += count;
		bytes_placed += bytes;
	}
	for (size_t i = 0; i < n; i++) {
		check(p->file_drive[i] >= -1 && p->file_drive[i] < (int32_t)p->n_drives);
		total += files[i].size;
		unplaced += p->file_drive[i] < 0;
	}
	check_int(p->unplaced_files, unplaced);
	check_int(files_placed + p->unplaced_files, n);
	check_int(bytes_placed + p->unplaced_bytes, total);
}

static void
test_empty(void)
{
	struct plan_drive drives[] = {{.id = 1, .free = 1000}, {.id = 2, .free = 2000}};
	struct plan p;

	check_int(plan_compute(NULL, 0, NULL, 0, NULL, 0, &p), 0);
	check(p.file_drive == NULL);
	check_int(p.unplaced_files, 0);
	check_int(p.drives_needed, 0);
	plan_done(&p);
	plan_done(&p);

	check_int(plan_compute(NULL, 0, drives, 2, NULL, 0, &p), 0);
	check_int(p.use[0].files, 0);
	check_int(p.use[1].charged, 0);
	check_int(p.capacity, 2000);
	plan_done(&p);
}

static void
test_invalid(void)
{
	struct plan_file f = {.id = 1, .size = 10};
	struct plan p = {.drives_needed = 12345};

	/* Nothing attached and no nominal capacity: nothing to size with. */
	check_int(plan_compute(&f, 1, NULL, 0, NULL, 0, &p), -EINVAL);
	check_int(p.drives_needed, 12345);
}

static void
test_exact_fit(void)
{
	struct plan_file files[] = {{.id = 10, .size = 600}, {.id = 11, .size = 400}};
	struct plan_drive drive = {.id = 7, .free = 1000};
	struct plan p;

	check_int(plan_compute(files, 2, &drive, 1, &zero_cost, 0, &p), 0);
	check_int(p.file_drive[0], 0);
	check_int(p.file_drive[1], 0);
	check_int(p.use[0].files, 2);
	check_int(p.use[0].bytes, 1000);
	check_int(p.use[0].charged, 1000);
	check_int(p.unplaced_files, 0);
	check_int(p.drives_needed, 0);
	check_sums(files, 2, &drive, &zero_cost, &p);
	plan_done(&p);

	/* One byte more does not fit. */
	files[1].size = 401;
	check_int(plan_compute(files, 2, &drive, 1, &zero_cost, 0, &p), 0);
	check_int(p.file_drive[0], 0);
	check_int(p.file_drive[1], -1);
	check_int(p.unplaced_bytes, 401);
	check_int(p.drives_needed, 1);
	plan_done(&p);
}

static void
test_reserve(void)
{
	const struct plan_cost c = {.drive_base = 100, .per_file = 10, .per_block = 1};
	struct plan_file f = {.id = 1, .size = 890};
	struct plan_drive drive = {.id = 1, .free = 1000};
	struct plan p;

	/* 890 data + 10 per file + 1 block = 901 > 1000 - 100. */
	check_int(plan_file_cost(&c, &f), 901);
	check_int(plan_compute(&f, 1, &drive, 1, &c, 0, &p), 0);
	check_int(p.file_drive[0], -1);
	/* Same capacity for the extra drive: it does not fit there either. */
	check_int(p.too_large_files, 1);
	check_int(p.too_large_bytes, 890);
	check_int(p.drives_needed, 0);
	plan_done(&p);

	/* 889 + 11 = 900: fits exactly, and the drive is charged 1000. */
	f.size = 889;
	check_int(plan_compute(&f, 1, &drive, 1, &c, 0, &p), 0);
	check_int(p.file_drive[0], 0);
	check_int(p.use[0].charged, 1000);
	plan_done(&p);

	/* Name bytes count too. */
	f.name_bytes = 1;
	check_int(plan_compute(&f, 1, &drive, 1, &c, 0, &p), 0);
	check_int(p.file_drive[0], -1);
	plan_done(&p);
}

static void
test_cost_default(void)
{
	const struct plan_cost c = PLAN_COST_DEFAULT;
	struct plan_file f = {0};

	/* An empty file: its and its properties file's MFT records, its <Blob> element. */
	check_int(plan_file_cost(&c, &f), 8192 + 768);
	f.size = 1;
	check_int(plan_file_cost(&c, &f), 4096 + 8192 + 768 + 200);
	f.size = PLAN_BLOCK_SIZE;
	check_int(plan_file_cost(&c, &f), PLAN_BLOCK_SIZE + 8192 + 768 + 200);
	f.size = PLAN_BLOCK_SIZE + 1;
	check_int(plan_file_cost(&c, &f), PLAN_BLOCK_SIZE + 4096 + 8192 + 768 + 400);
	f.name_bytes = 300;
	check_int(plan_file_cost(&c, &f), PLAN_BLOCK_SIZE + 4096 + 8192 + 1068 + 400);
	f.size = UINT64_MAX;
	check(plan_file_cost(&c, &f) == UINT64_MAX);
}

static void
test_largest_first(void)
{
	struct plan_file files[] = {
	    {.id = 1, .size = 300}, {.id = 2, .size = 800}, {.id = 3, .size = 200}};
	struct plan_drive drive = {.id = 1, .free = 1000};
	struct plan p;

	/* In input order 300 and 200 would go first and 800 would not fit. */
	check_int(plan_compute(files, 3, &drive, 1, &zero_cost, 0, &p), 0);
	check_int(p.file_drive[0], -1);
	check_int(p.file_drive[1], 0);
	check_int(p.file_drive[2], 0);
	check_int(p.unplaced_files, 1);
	check_int(p.unplaced_bytes, 300);
	plan_done(&p);
}

static void
test_two_drives(void)
{
	struct plan_file files[] = {{.id = 1, .size = 200},
	                            {.id = 2, .size = 500},
	                            {.id = 3, .size = 300},
	                            {.id = 4, .size = 400}};
	struct plan_drive drives[] = {{.id = 1, .free = 1000}, {.id = 2, .free = 1000}};
	struct plan_file same[] = {
	    {.id = 1, .size = 5}, {.id = 2, .size = 5}, {.id = 3, .size = 5}};
	struct plan_drive three[] = {
	    {.id = 1, .free = 100}, {.id = 2, .free = 100}, {.id = 3, .free = 100}};
	struct plan p;

	/* 500 -> d0 (tie), 400 -> d1, 300 -> d1 (600 left), 200 -> d0: 700/700. */
	check_int(plan_compute(files, 4, drives, 2, &zero_cost, 0, &p), 0);
	check_int(p.file_drive[1], 0);
	check_int(p.file_drive[3], 1);
	check_int(p.file_drive[2], 1);
	check_int(p.file_drive[0], 0);
	check_int(p.use[0].bytes, 700);
	check_int(p.use[1].bytes, 700);
	check_sums(files, 4, drives, &zero_cost, &p);
	plan_done(&p);

	/* Equal sizes go in index order, each to the roomiest drive. */
	check_int(plan_compute(same, 3, three, 3, &zero_cost, 0, &p), 0);
	check_int(p.file_drive[0], 0);
	check_int(p.file_drive[1], 1);
	check_int(p.file_drive[2], 2);
	plan_done(&p);
}

static void
test_drives_needed(void)
{
	struct plan_file files[10];
	struct plan_file odd[] = {{.id = 1, .size = 6},
	                          {.id = 2, .size = 5},
	                          {.id = 3, .size = 4},
	                          {.id = 4, .size = 3},
	                          {.id = 5, .size = 2}};
	struct plan_drive drive = {.id = 1, .free = 1000};
	struct plan p;

	/* 10 x 300 on one drive of 1000: 3 placed, 7 left = 3 + 3 + 1 on new drives. */
	for (int i = 0; i < 10; i++)
		files[i] = (struct plan_file){.id = i, .size = 300};
	check_int(plan_compute(files, 10, &drive, 1, &zero_cost, 0, &p), 0);
	check_int(p.use[0].files, 3);
	check_int(p.unplaced_files, 7);
	check_int(p.unplaced_bytes, 2100);
	check_int(p.capacity, 1000);
	check_int(p.drives_needed, 3);
	check_int(p.too_large_files, 0);
	check_sums(files, 10, &drive, &zero_cost, &p);
	plan_done(&p);

	/* Nothing attached: the nominal capacity sizes the drives (FFD: 6+4, 5+3+2). */
	check_int(plan_compute(odd, 5, NULL, 0, &zero_cost, 10, &p), 0);
	check_int(p.unplaced_files, 5);
	check_int(p.capacity, 10);
	check_int(p.drives_needed, 2);
	plan_done(&p);

	/* The nominal capacity is ignored when a drive is attached. */
	check_int(plan_compute(odd, 5, &drive, 1, &zero_cost, 10, &p), 0);
	check_int(p.unplaced_files, 0);
	check_int(p.use[0].bytes, 20);
	plan_done(&p);
}

static void
test_too_large(void)
{
	struct plan_file files[] = {{.id = 1, .size = 1500},
	                            {.id = 2, .size = 100},
	                            {.id = 3, .size = 2000},
	                            {.id = 4, .size = 700}};
	struct plan_drive drives[] = {{.id = 1, .free = 1000}, {.id = 2, .free = 500}};
	struct plan p;

	check_int(plan_compute(files, 4, drives, 2, &zero_cost, 0, &p), 0);
	check_int(p.file_drive[0], -1);
	check_int(p.file_drive[2], -1);
	check_int(p.file_drive[3], 0);
	check_int(p.file_drive[1], 1);
	check_int(p.unplaced_files, 2);
	check_int(p.unplaced_bytes, 3500);
	check_int(p.too_large_files, 2);
	check_int(p.too_large_bytes, 3500);
	check_int(p.too_large_need, 2000); /* the larger of the two, no overhead */
	check(plan_file_too_large(&p, &zero_cost, &files[0]));
	check(!plan_file_too_large(&p, &zero_cost, &files[3]));
	check_int(p.drives_needed, 0);
	check_sums(files, 4, drives, &zero_cost, &p);
	plan_done(&p);

	/* With the default costs, the need counts the overhead and the drive's base. */
	check_int(plan_compute(files, 4, drives, 2, NULL, 0, &p), 0);
	check_int(p.too_large_need, plan_file_cost(&PLAN_COST_DEFAULT, &files[2]) +
	                                PLAN_COST_DEFAULT.drive_base);
	check(plan_file_too_large(&p, NULL, &files[1])); /* 1000 bytes hold no file's overhead */
	plan_done(&p);

	/* With a nominal capacity: the big one is impossible, the rest needs 2 drives. */
	files[2].size = 600;
	check_int(plan_compute(files, 4, NULL, 0, &zero_cost, 1000, &p), 0);
	check_int(p.too_large_files, 1);
	check_int(p.too_large_bytes, 1500);
	check_int(p.unplaced_files, 4);
	check_int(p.drives_needed, 2); /* 700+100, 600 */
	check_int(p.too_large_need, 1500);
	plan_done(&p);

	/* Nothing too large: no need. */
	check_int(plan_compute(files + 1, 3, NULL, 0, &zero_cost, 1000, &p), 0);
	check_int(p.too_large_need, 0);
	plan_done(&p);
}

static void
test_zero_byte_files(void)
{
	const struct plan_cost c = PLAN_COST_DEFAULT;
	struct plan_file files[4] = {{.id = 1}, {.id = 2}, {.id = 3}, {.id = 4}};
	struct plan_drive drive = {.id = 1, .free = 64 * 1024 + 3 * (8192 + 768)};
	struct plan p;

	/* Room for exactly three empty files' metadata. */
	check_int(plan_compute(files, 4, &drive, 1, NULL, 0, &p), 0);
	check_int(p.use[0].files, 3);
	check_int(p.use[0].bytes, 0);
	check_int(p.use[0].charged, drive.free);
	check_int(p.unplaced_files, 1);
	check_int(p.unplaced_bytes, 0);
	check_int(p.drives_needed, 1);
	check_sums(files, 4, &drive, &c, &p);
	plan_done(&p);

	/* A drive below the base reserve takes nothing. */
	drive.free = 1000;
	check_int(plan_compute(files, 4, &drive, 1, NULL, 0, &p), 0);
	check_int(p.use[0].files, 0);
	check_int(p.too_large_files, 4);
	plan_done(&p);
}

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int
cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* Naive first-fit decreasing on costs: the reference for drives_needed. */
static uint64_t
naive_ffd(uint64_t *costs, size_t n, uint64_t room)
{
	uint64_t *bins = xcalloc(n, sizeof(*bins));
	size_t used = 0;

	qsort(costs, n, sizeof(*costs), cmp_desc);
	for (size_t i = 0; i < n; i++) {
		size_t b = 0;

		while (b < used && bins[b] + costs[i] > room)
			b++;
		if (b == used)
			used++;
		bins[b] += costs[i];
	}
	free(bins);
	return used;
}

static void
test_ffd_against_naive(void)
{
	const struct plan_cost c = PLAN_COST_DEFAULT;
	const uint64_t capacity = UINT64_C(1) << 30;
	uint64_t seed = 88172645463325252u;

	for (int round = 0; round < 20; round++) {
		size_t n = 50 + xorshift(&seed) % 3000;
		struct plan_file *files = xcalloc(n, sizeof(*files));
		uint64_t *costs = xcalloc(n, sizeof(*costs));
		size_t fit = 0;
		struct plan p;

		for (size_t i = 0; i < n; i++) {
			/* Mostly small, some large, a few beyond the capacity. */
			uint64_t r = xorshift(&seed);
			uint64_t max = r % 10 == 0 ? capacity + capacity / 4 : capacity / 16;

			files[i] = (struct plan_file){.id = (int64_t)i, .size = r % max};
			if (plan_file_cost(&c, &files[i]) <= capacity - c.drive_base)
				costs[fit++] = plan_file_cost(&c, &files[i]);
		}
		check_int(plan_compute(files, n, NULL, 0, &c, capacity, &p), 0);
		check_int(p.unplaced_files, n);
		check_int(p.too_large_files, n - fit);
		check_int(p.drives_needed, naive_ffd(costs, fit, capacity - c.drive_base));
		plan_done(&p);
		free(costs);
		free(files);
	}
}

static void
test_million(void)
{
	const size_t n = 1000000;
	const struct plan_cost c = PLAN_COST_DEFAULT;
	struct plan_file *files = xcalloc(n, sizeof(*files));
	struct plan_drive drives[3] = {
	    {.id = 1, .free = UINT64_C(2000) << 30},
	    {.id = 2, .free = UINT64_C(1500) << 30},
	    {.id = 3, .free = UINT64_C(500) << 30},
	};
	uint64_t seed = 0x9e3779b97f4a7c15u, total = 0;
	struct timespec t0, t1;
	struct plan p;

	for (size_t i = 0; i < n; i++) {
		uint64_t r = xorshift(&seed);

		/* Mostly KiB-sized, 1 % up to 1 GiB, some empty: ~5.6 TB in all. */
		files[i].id = (int64_t)i;
		files[i].size = r % 100 == 0   ? r % (UINT64_C(1) << 30)
		                : r % 100 == 1 ? 0
		                               : r % 65536;
		total += files[i].size;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_int(plan_compute(files, n, drives, 3, &c, 0, &p), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "1M files, %.1f GiB: %.3f s, %llu unplaced, %llu more drives\n",
	        (double)total / (1 << 30),
	        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	        (unsigned long long)p.unplaced_files, (unsigned long long)p.drives_needed);
	check_sums(files, n, drives, &c, &p);
	check(p.unplaced_files > 0);
	check(p.drives_needed >= 1);
	plan_done(&p);
	free(files);
}

int
main(void)
{
	test_empty();
	test_invalid();
	test_exact_fit();
	test_reserve();
	test_cost_default();
	test_largest_first();
	test_two_drives();
	test_drives_needed();
	test_too_large();
	test_zero_byte_files();
	test_ffd_against_naive();
	test_million();
	return 0;
}
