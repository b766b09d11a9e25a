/*
 * The drive planner (plan.h): largest file first onto the attached drive with
 * the most room, then a first-fit-decreasing estimate of the extra drives the
 * rest needs. Pure code on flat arrays; the loop thread runs it when a job is
 * indexed or a drive is attached (1 M files take well under a second).
 */
#include <errno.h>
#include <stdlib.h>

#include "util.h"
#include "plan.h"

/* A file in placement order: sorted by size, largest first. */
struct order {
	uint64_t size;
	size_t idx;
};

static uint64_t
max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
sat_mul(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

uint64_t
plan_file_cost(const struct plan_cost *c, const struct plan_file *f)
{
	uint64_t data = f->size, blocks, cost;

	if (c->cluster > 1 && data % c->cluster != 0)
		data = sat_add(data - data % c->cluster, c->cluster);
	blocks = f->size / PLAN_BLOCK_SIZE + (f->size % PLAN_BLOCK_SIZE != 0);
	cost = sat_add(data, c->fs_per_file);
	cost = sat_add(cost, c->per_file);
	cost = sat_add(cost, f->name_bytes);
	return sat_add(cost, sat_mul(c->per_block, blocks));
}

static int
order_cmp(const void *a, const void *b)
{
	const struct order *x = a, *y = b;

	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static struct order *
sort_files(const struct plan_file *files, size_t n)
{
	struct order *o = xreallocarray(NULL, n, sizeof(*o));

	for (size_t i = 0; i < n; i++)
		o[i] = (struct order){.size = files[i].size, .idx = i};
	qsort(o, n, sizeof(*o), order_cmp);
	return o;
}

/* Index of the drive with the most room; the lowest index wins ties. */
static size_t
roomiest(const uint64_t *room, size_t n)
{
	size_t best = 0;

	for (size_t d = 1; d < n; d++)
		if (room[d] > room[best])
			best = d;
	return best;
}

/* Phase 1: place what fits on the attached drives. */
static void
place_attached(const struct plan_file *files, const struct order *o,
               const struct plan_drive *drives, const struct plan_cost *c, struct plan *p)
{
	uint64_t *room;

	if (p->n_drives == 0)
		return;
	room = xreallocarray(NULL, p->n_drives, sizeof(*room));
	for (size_t d = 0; d < p->n_drives; d++)
		room[d] = drives[d].free > c->drive_base ? drives[d].free - c->drive_base : 0;
	for (size_t i = 0; i < p->n_files; i++) {
		size_t f = o[i].idx, d = roomiest(room, p->n_drives);
		uint64_t cost = plan_file_cost(c, &files[f]);

		if (cost > room[d])
			continue;
		room[d] -= cost;
		p->file_drive[f] = (int32_t)d;
		p->use[d].files++;
		p->use[d].bytes += files[f].size;
		p->use[d].charged = sat_add(p->use[d].charged, cost);
	}
	for (size_t d = 0; d < p->n_drives; d++)
		if (p->use[d].files > 0)
			p->use[d].charged = sat_add(p->use[d].charged, c->drive_base);
	free(room);
}

/*
 * First fit over bins, all of `room` bytes at first: a max-tree over the bins
 * finds the leftmost bin with enough room in O(log bins). Unopened bins are
 * full-room leaves, so first fit opens them left to right.
 */
struct bins {
	uint64_t *tree; /* [2 * leaves], tree[1] is the root, leaves at [leaves, 2 * leaves) */
	size_t leaves, used;
};

static void
bins_init(struct bins *b, size_t n, uint64_t room)
{
	b->leaves = 1;
	while (b->leaves < n)
		b->leaves *= 2;
	b->tree = xcalloc(2 * b->leaves, sizeof(*b->tree));
	for (size_t i = 0; i < n; i++)
		b->tree[b->leaves + i] = room;
	for (size_t i = b->leaves - 1; i >= 1; i--)
		b->tree[i] = max_u64(b->tree[2 * i], b->tree[2 * i + 1]);
	b->used = 0;
}

static void
bins_put(struct bins *b, uint64_t need)
{
	size_t node = 1;

	if (b->tree[1] < need)
		fatalx("plan: first-fit bin bound too small"); /* see first_fit_bound() */
	while (node < b->leaves)
		node = b->tree[2 * node] >= need ? 2 * node : 2 * node + 1;
	if (node - b->leaves + 1 > b->used)
		b->used = node - b->leaves + 1;
	b->tree[node] -= need;
	for (node /= 2; node >= 1; node /= 2)
		b->tree[node] = max_u64(b->tree[2 * node], b->tree[2 * node + 1]);
}

/*
 * First fit never uses more than 2 * ceil(total / room) + 1 bins: any two
 * used bins together hold more than `room` (else the later bin's items would
 * have gone into the earlier one). Nor more than one bin per item.
 */
static size_t
first_fit_bound(uint64_t total, uint64_t room, size_t items)
{
	uint64_t q = total / room + 1;

	if (q >= items / 2 + 1)
		return items;
	return (size_t)(2 * q + 1) < items ? (size_t)(2 * q + 1) : items;
}

/* Phase 2: size the rest onto empty drives of p->capacity bytes. */
static void
estimate_extra(const struct plan_file *files, const struct order *o, const struct plan_cost *c,
               struct plan *p)
{
	uint64_t room = p->capacity > c->drive_base ? p->capacity - c->drive_base : 0, total = 0;
	size_t fit = 0;
	struct bins b;

	for (size_t i = 0; i < p->n_files; i++) {
		const struct plan_file *f = &files[o[i].idx];
		uint64_t cost;

		if (p->file_drive[o[i].idx] >= 0)
			continue;
		p->unplaced_files++;
		p->unplaced_bytes += f->size;
		if ((cost = plan_file_cost(c, f)) > room) {
			p->too_large_files++;
			p->too_large_bytes += f->size;
			p->too_large_need = max_u64(p->too_large_need, sat_add(cost, c->drive_base));
			continue;
		}
		fit++;
		total = sat_add(total, cost);
	}
	if (fit == 0)
		return;
	if (room == 0) {
		/* Only zero-cost files (a cost struct of zeros): one drive holds them. */
		p->drives_needed = 1;
		return;
	}
	bins_init(&b, first_fit_bound(total, room, fit), room);
	for (size_t i = 0; i < p->n_files; i++) {
		const struct plan_file *f = &files[o[i].idx];
		uint64_t cost;

		if (p->file_drive[o[i].idx] < 0 && (cost = plan_file_cost(c, f)) <= room)
			bins_put(&b, cost);
	}
	p->drives_needed = b.used;
	free(b.tree);
}

int
plan_compute(const struct plan_file *files, size_t n_files, const struct plan_drive *drives,
             size_t n_drives, const struct plan_cost *cost, uint64_t nominal_capacity,
             struct plan *ret)
{
	const struct plan_cost *c = cost != NULL ? cost : &PLAN_COST_DEFAULT;
	struct plan p = {.n_files = n_files, .n_drives = n_drives};
	struct order *o = NULL;

	if (n_drives > INT32_MAX || n_files > SIZE_MAX / 2 / sizeof(uint64_t))
		return -EINVAL;
	if (n_drives == 0 && nominal_capacity == 0 && n_files > 0)
		return -EINVAL;
	p.capacity = nominal_capacity;
	if (n_drives > 0) {
		p.use = xcalloc(n_drives, sizeof(*p.use));
		p.capacity = 0;
		for (size_t d = 0; d < n_drives; d++)
			p.capacity = max_u64(p.capacity, drives[d].free);
	}
	if (n_files > 0) {
		p.file_drive = xreallocarray(NULL, n_files, sizeof(*p.file_drive));
		for (size_t i = 0; i < n_files; i++)
			p.file_drive[i] = -1;
		o = sort_files(files, n_files);
		place_attached(files, o, drives, c, &p);
		estimate_extra(files, o, c, &p);
		free(o);
	}
	*ret = p;
	return 0;
}

bool
plan_file_too_large(const struct plan *p, const struct plan_cost *c, const struct plan_file *f)
{
	const struct plan_cost def = PLAN_COST_DEFAULT;

	if (c == NULL)
		c = &def;
	return plan_file_cost(c, f) > (p->capacity > c->drive_base ? p->capacity - c->drive_base : 0);
}

void
plan_done(struct plan *p)
{
	free(p->file_drive);
	free(p->use);
	p->file_drive = NULL;
	p->use = NULL;
}
