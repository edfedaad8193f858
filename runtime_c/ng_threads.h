/* ng_threads.h: the thread pool of a neurogen model built for more than one thread.
 *
 * Header-only and static, so two models vendored into one program never clash. No allocation:
 * the pool lives in memory the caller provides (a model keeps it at the start of its arena).
 * Workers sleep on a condition variable between runs and meet at a spinning barrier between
 * the steps of a run, where a sleep and wake-up would cost more than most layers take.
 * C99 plus POSIX threads and the GCC/Clang __atomic builtins.
 */
#ifndef NG_THREADS_H
#define NG_THREADS_H

#include <pthread.h>
#include <sched.h>

#define NG_MAX_THREADS 64

typedef void (*ng_task)(void *arg, int part, int parts);

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t workers[NG_MAX_THREADS - 1];
    ng_task task;
    void *arg;
    unsigned generation; /* bumped (under lock) to start a run; workers remember the last they ran */
    int stop;
    int parts;
    int started; /* workers actually running (pthread_create may fail) */
    int arrived;       /* barrier: threads arrived in this round */
    unsigned rounds;   /* barrier: completed rounds */
} ng_pool;

typedef struct {
    ng_pool *pool;
    int part;
} ng_worker;

/* All `parts` threads of the running task wait here until every one has arrived; what each wrote
 * before is visible to all after. */
static void ng_barrier(ng_pool *pool)
{
    if (pool->parts == 1) {
        return;
    }
    const unsigned round = __atomic_load_n(&pool->rounds, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&pool->arrived, 1, __ATOMIC_ACQ_REL) == pool->parts) {
        __atomic_store_n(&pool->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&pool->rounds, round + 1u, __ATOMIC_RELEASE);
        return;
    }
    for (unsigned spins = 0; __atomic_load_n(&pool->rounds, __ATOMIC_ACQUIRE) == round; ++spins) {
        if (spins > 2000u) {
            sched_yield(); /* more threads than free cores: let the others run */
        }
    }
}

static void *ng_worker_main(void *opaque)
{
    ng_worker *const self = (ng_worker *)opaque;
    ng_pool *const pool = self->pool;
    const int part = self->part;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (pool->generation == seen && !pool->stop) {
            pthread_cond_wait(&pool->wake, &pool->lock);
        }
        seen = pool->generation;
        const int stop = pool->stop;
        const ng_task task = pool->task;
        void *const arg = pool->arg;
        const int parts = pool->parts;
        pthread_mutex_unlock(&pool->lock);
        if (stop) {
            return NULL;
        }
        task(arg, part, parts);
        ng_barrier(pool);
    }
}

/* Starts threads - 1 workers (the caller is part 0). `workers` holds threads - 1 entries.
 * Returns the number of parts a run will use: `threads`, or fewer if the system refused threads. */
static int ng_pool_start(ng_pool *pool, ng_worker *workers, int threads)
{
    threads = threads < 1 ? 1 : threads > NG_MAX_THREADS ? NG_MAX_THREADS : threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->task = NULL;
    pool->arg = NULL;
    pool->generation = 0;
    pool->stop = 0;
    pool->arrived = 0;
    pool->rounds = 0;
    pool->started = 0;
    for (int i = 1; i < threads; ++i) {
        workers[i - 1].pool = pool;
        workers[i - 1].part = i;
        if (pthread_create(&pool->workers[i - 1], NULL, ng_worker_main, &workers[i - 1]) != 0) {
            break;
        }
        pool->started = i;
    }
    pool->parts = pool->started + 1;
    return pool->parts;
}

/* Runs task(arg, part, parts) on every part, the caller as part 0; returns when all are done.
 * Inside the task, ng_barrier(pool) separates phases that read what other parts wrote. */
static void ng_pool_run(ng_pool *pool, ng_task task, void *arg)
{
    if (pool->parts > 1) {
        pthread_mutex_lock(&pool->lock);
        pool->task = task;
        pool->arg = arg;
        pool->generation += 1;
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    task(arg, 0, pool->parts);
    ng_barrier(pool);
}

static void ng_pool_stop(ng_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stop = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->started; ++i) {
        pthread_join(pool->workers[i], NULL);
    }
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pool->started = 0;
    pool->parts = 1;
}

#endif /* NG_THREADS_H */
