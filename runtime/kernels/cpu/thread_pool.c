/* Parked worker threads shared by every entry point of the compiled core.
 *
 * opgraph_run_threads(fn, arg, n) runs fn(arg, i) for i in [0, n): index 0 on the caller's
 * thread, 1 .. n-1 on workers that are started on first need and then parked, so a call costs
 * a wake-up (none while a worker still spins after its last job) instead of a pthread_create
 * and join per thread (30-50 us each on the machines we measured).
 *
 * A worker joins a job only while it is open: once the caller has finished its own share (fn
 * returned on index 0, so every item is taken), it closes the job and waits only for the
 * workers that joined. A worker that wakes late (a sleeping thread can take 50-150 us to be
 * scheduled) then finds the job closed and costs the caller nothing.
 *
 * fn must share its work dynamically (an atomic item counter): a worker that cannot be started
 * or joins late, or a call made while another thread is using the pool (two sessions running
 * kernels at once), runs on fewer threads, never on wrong ones. Such a concurrent call starts
 * short-lived threads of its own, as the core did before the pool. A fork()ed child forgets
 * the parent's workers.
 */
#include "conv_common.h"
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define POOL_MAX 64
/* microseconds a worker (or the waiting caller) spins before it sleeps on a condition, unless
 * OPGRAPH_SPIN_US says otherwise (read once): long enough to span the Python between two kernel
 * calls, since waking a sleeping thread takes 50-150 us on the virtual machines we measured.
 * A spinning thread yields its core to any other runnable thread every YIELD_NS. */
#define SPIN_US_DEFAULT 2000
#define YIELD_NS 20000
static i64 spin_ns = -1;

typedef struct {
    thread_fn fn;
    void *arg;
    int index;
} thread_job;

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER; /* one caller at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* guards the fields below */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int nworkers;               /* started, indices 1 .. nworkers */
static unsigned long generation;   /* bumped per job (read by spinning workers atomically) */
static thread_fn job_fn;
static void *job_arg;
static int job_threads;            /* threads the job wants, the caller included */
static int job_open;               /* workers may still join the job */
static unsigned long active;       /* workers that joined the job and have not finished it */
static pthread_once_t fork_handler = PTHREAD_ONCE_INIT;
static unsigned long start_generation[POOL_MAX]; /* the generation a new worker has seen */

static i64 now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (i64)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spin for at most SPIN_NS while *p == v (equal) or *p != v (!equal); the caller then
 * sleeps on a condition if it still has to wait. */
static void spin_while(const unsigned long *p, unsigned long v, int equal)
{
    const i64 start = now_ns(), until = start + spin_ns;
    i64 next_yield = start + YIELD_NS;
    for (int spins = 1; (__atomic_load_n(p, __ATOMIC_ACQUIRE) == v) == equal; spins++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (spins % 64 == 0) {
            const i64 t = now_ns();
            if (t > until)
                return;
            if (t > next_yield) {
                sched_yield();
                next_yield = t + YIELD_NS;
            }
        }
    }
}

static void read_spin_setting(void)
{
    const char *e = getenv("OPGRAPH_SPIN_US");
    char *end = NULL;
    const long v = e ? strtol(e, &end, 10) : -1;
    spin_ns = 1000 * (i64)(e && end != e && *end == 0 && v >= 0 && v <= 10000000 ? v
                                                                               : SPIN_US_DEFAULT);
}

static void *worker_main(void *p)
{
    const int index = (int)(intptr_t)p;
    /* (not the current generation: the job it was started for may be posted already) */
    unsigned long seen = start_generation[index];
    for (;;) {
        spin_while(&generation, seen, 1); /* (the next kernel call often follows at once) */
        pthread_mutex_lock(&lock);
        while (generation == seen)
            pthread_cond_wait(&wake, &lock);
        seen = generation;
        const thread_fn fn = job_fn;
        void *arg = job_arg;
        const int mine = job_open && index < job_threads;
        if (mine)
            __atomic_add_fetch(&active, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&lock);
        if (!mine)
            continue;
        fn(arg, index);
        pthread_mutex_lock(&lock);
        if (__atomic_sub_fetch(&active, 1, __ATOMIC_RELEASE) == 0 && !job_open)
            pthread_cond_signal(&done);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

/* In a fork()ed child the workers do not exist: start afresh (the child has one thread). */
static void forget_workers(void)
{
    pthread_mutex_init(&busy, NULL);
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&done, NULL);
    nworkers = 0;
    job_open = 0;
    active = 0;
}

static void set_fork_handler(void) { pthread_atfork(NULL, NULL, forget_workers); }

static void *spawned_main(void *p)
{
    thread_job *j = p;
    j->fn(j->arg, j->index);
    return NULL;
}

/* Without the pool: threads started and joined for this call. */
static void run_spawned(thread_fn fn, void *arg, int n)
{
    pthread_t tid[POOL_MAX];
    thread_job job[POOL_MAX];
    int started[POOL_MAX];
    for (int i = 1; i < n; i++) {
        job[i] = (thread_job){fn, arg, i};
        started[i] = pthread_create(&tid[i], NULL, spawned_main, &job[i]) == 0;
    }
    fn(arg, 0);
    for (int i = 1; i < n; i++)
        if (started[i])
            pthread_join(tid[i], NULL);
}

void opgraph_run_threads(thread_fn fn, void *arg, i64 nthreads)
{
    int n = nthreads > POOL_MAX ? POOL_MAX : (int)nthreads;
    if (n <= 1) {
        fn(arg, 0);
        return;
    }
    if (pthread_mutex_trylock(&busy) != 0) {
        run_spawned(fn, arg, n);
        return;
    }
    pthread_once(&fork_handler, set_fork_handler);
    if (spin_ns < 0)
        read_spin_setting();
    while (nworkers < n - 1) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        start_generation[nworkers + 1] = generation;
        const int ok = pthread_create(&t, &at, worker_main, (void *)(intptr_t)(nworkers + 1));
        pthread_attr_destroy(&at);
        if (ok != 0)
            break; /* fewer threads: fn shares its work dynamically */
        nworkers++;
    }
    const int workers = nworkers < n - 1 ? nworkers : n - 1;
    pthread_mutex_lock(&lock);
    job_fn = fn;
    job_arg = arg;
    job_threads = workers + 1;
    job_open = 1;
    active = 0;
    __atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    fn(arg, 0);
    pthread_mutex_lock(&lock);
    job_open = 0; /* every item is taken: workers not yet in stay out */
    pthread_mutex_unlock(&lock);
    spin_while(&active, 0, 0); /* (the workers that joined are likely to finish soon) */
    pthread_mutex_lock(&lock);
    while (active != 0)
        pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&busy);
}
