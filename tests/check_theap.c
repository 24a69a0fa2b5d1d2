/* check_theap.c - the timer heap keeps order through adds, moves, removals. */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "theap.h"

static void noop(struct mcpgw__timer *t)
{
}

START_TEST(pops_in_deadline_order_under_churn)
{
    enum { N = 5000 };
    struct mcpgw__theap h;
    struct mcpgw__timer *t = calloc(N, sizeof(*t));
    unsigned seed = 7;
    int64_t last = -1;
    size_t popped = 0, armed = 0;

    mcpgw__theap_init(&h);
    for (int i = 0; i < N; i++) {
        mcpgw__timer_init(&t[i], noop);
        ck_assert_int_eq(mcpgw__theap_add(&h, &t[i], rand_r(&seed) % 100000), 0);
    }
    /* Move some, remove some: as calls re-arm and finish. */
    for (int i = 0; i < N; i += 3)
        mcpgw__theap_add(&h, &t[i], rand_r(&seed) % 100000);
    for (int i = 1; i < N; i += 4)
        mcpgw__theap_del(&h, &t[i]);
    for (int i = 0; i < N; i++)
        armed += mcpgw__timer_armed(&t[i]) ? 1 : 0;
    while (mcpgw__theap_peek(&h)) {
        struct mcpgw__timer *x = mcpgw__theap_peek(&h);

        ck_assert_int_ge(x->when, last);
        last = x->when;
        mcpgw__theap_del(&h, x);
        ck_assert(!mcpgw__timer_armed(x));
        popped++;
    }
    ck_assert_uint_eq(popped, armed);
    mcpgw__theap_release(&h);
    free(t);
}
END_TEST

START_TEST(delete_unarmed_is_a_noop)
{
    struct mcpgw__theap h;
    struct mcpgw__timer a, b;

    mcpgw__theap_init(&h);
    mcpgw__timer_init(&a, noop);
    mcpgw__timer_init(&b, noop);
    mcpgw__theap_del(&h, &a);
    mcpgw__theap_add(&h, &b, 10);
    mcpgw__theap_del(&h, &a);
    ck_assert_ptr_eq(mcpgw__theap_peek(&h), &b);
    mcpgw__theap_release(&h);
    ck_assert(!mcpgw__timer_armed(&b));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("theap");
    TCase *tc = tcase_create("theap");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, pops_in_deadline_order_under_churn);
    tcase_add_test(tc, delete_unarmed_is_a_noop);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
