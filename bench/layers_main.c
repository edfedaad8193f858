/* Per-step timing of a generated model (bench/layers.py builds it with the project's sources):
 * the project's step hook records when each step ends; the program runs the model RUNS times after
 * one untimed run and prints, per step, the median of its times in microseconds.
 * Built with -DNG_MODEL=name -DNG_UPPER=NAME -DNG_HEADER="name.h" -DNAME_STEP_HOOK=bench_step_done. */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include NG_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define API(suffix) CAT(NG_MODEL, suffix)
#define CONST(suffix) CAT(NG_UPPER, suffix)

enum { MAX_STEPS = 4096, RUNS = BENCH_RUNS };

static double step_us[RUNS][MAX_STEPS];
static double last_ns;
static int run_index = -1;
static int steps_seen;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void bench_step_done(int step);
void bench_step_done(int step)
{
    const double t = now_ns();
    if (run_index >= 0 && run_index < RUNS && step < MAX_STEPS) {
        step_us[run_index][step] = (t - last_ns) / 1e3;
        if (step + 1 > steps_seen) {
            steps_seen = step + 1;
        }
    }
    last_ns = t;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    const float *inputs[CONST(_NUM_INPUTS)];
    float *outputs[CONST(_NUM_OUTPUTS)];
    for (int i = 0; i < CONST(_NUM_INPUTS); ++i) {
        const size_t size = API(_inputs)[i].size;
        float *data = malloc(size * sizeof(float));
        if (data == NULL) {
            return 1;
        }
        for (size_t j = 0; j < size; ++j) {
            data[j] = (float)((j * 7919u) % 255u) / 255.0f - 0.5f;
        }
        inputs[i] = data;
    }
    for (int i = 0; i < CONST(_NUM_OUTPUTS); ++i) {
        outputs[i] = malloc(API(_outputs)[i].size * sizeof(float));
        if (outputs[i] == NULL) {
            return 1;
        }
    }
    void *arena = NULL;
    if (posix_memalign(&arena, CONST(_ARENA_ALIGN), CONST(_ARENA_SIZE) ? CONST(_ARENA_SIZE) : 1) != 0) {
        arena = NULL;
    }
    API(_ctx) ctx;
    if (arena == NULL || API(_init)(&ctx, arena, CONST(_ARENA_SIZE)) != 0) {
        fprintf(stderr, "init failed\n");
        return 1;
    }
    API(_run)(&ctx, inputs, outputs); /* untimed */
    for (run_index = 0; run_index < RUNS; ++run_index) {
        last_ns = now_ns();
        API(_run)(&ctx, inputs, outputs);
    }
    API(_deinit)(&ctx);
    for (int s = 0; s < steps_seen; ++s) {
        double column[RUNS];
        for (int r = 0; r < RUNS; ++r) {
            column[r] = step_us[r][s];
        }
        qsort(column, RUNS, sizeof column[0], by_value);
        printf("%d %.3f\n", s, column[RUNS / 2]);
    }
    free(arena);
    for (int i = 0; i < CONST(_NUM_INPUTS); ++i) {
        free((void *)inputs[i]);
    }
    for (int i = 0; i < CONST(_NUM_OUTPUTS); ++i) {
        free(outputs[i]);
    }
    return 0;
}
