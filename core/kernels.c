/* Compiled per-point kernels of the procedural world, loaded by core/kernels.py through ctypes.
 *
 * Each function repeats, operation for operation, a torch path of core/noise.py, core/lattice.py,
 * core/twist.py or core/hashing.py (named above it): the same float32 / float64 products and sums in
 * the same order, the same 32-bit hash words. Only correctly rounded IEEE operations are used and the
 * build passes -ffp-contract=off, so no multiply-add is fused: the results are the torch path's bits
 * on any x86-64 CPU.
 * Arrays are C-contiguous; n counts points.
 */
#include <stdint.h>
#include <stdlib.h>

/* Vector-width clones, picked at load time by the CPU: the same IEEE operations at any width, so the
 * same bits (fused multiply-adds stay off: -ffp-contract=off). WORLDSTREAM_NO_CLONES builds one width, for
 * tests/core/test_kernels.py. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(WORLDSTREAM_NO_CLONES)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Bumped whenever a function below changes its name, arguments or meaning (core/kernels.py INTERFACE). */
#define WORLDSTREAM_KERNELS_INTERFACE 1

int worldstream_kernels_interface(void) { return WORLDSTREAM_KERNELS_INTERFACE; }

static inline uint32_t mix32(uint32_t h) {
    h = ((h >> 16) ^ h) * 0x45D9F3Bu;
    h = ((h >> 16) ^ h) * 0x45D9F3Bu;
    return (h >> 16) ^ h;
}

/* hashing.hash_axis: the low and high 32-bit words of a signed 64-bit coordinate */
static inline uint32_t hash_axis(int64_t c, uint32_t key) {
    uint32_t lo = (uint32_t)(uint64_t)c;
    uint32_t hi = (uint32_t)((uint64_t)c >> 32);
    return mix32(mix32(lo ^ key) ^ hi);
}

/* hashing.combine_axes */
static inline uint32_t combine_axes(uint32_t hx, uint32_t hy) {
    return mix32(hx ^ (hy * 0x2C1B3C6u));
}

/* noise._fade and noise._dfade */
static inline float fade(float t) {
    float inner = (t * 6.0f - 15.0f) * t + 10.0f;
    return t * t * t * inner;
}

static inline float dfade(float t) {
    float s = (t - 1.0f) * t;
    return s * s * 30.0f;
}

/* floor(u) as an integer, for |u| < 2^62 (hashing.hash_axis's range), without a libm call: the
 * conversion truncates toward zero, one too high below zero unless u is whole. */
static inline int64_t floor_int(double u) {
    const int64_t t = (int64_t)u;
    return t - ((double)t > u);
}

/* One octave's cells: cell[i] = floor(pos[i] / spacing), frac[i] = float32(pos[i] / spacing - cell),
 * as noise._stacked_cells (exact for |pos / spacing| < 2^62, hashing.hash_axis's range);
 * returns the smallest and largest cell through lo, hi. */
VECTOR_CLONES
static void cells(int64_t n, const double *restrict pos, double spacing, int64_t *restrict cell,
                  float *restrict frac, int64_t *lo, int64_t *hi) {
    int64_t a = INT64_MAX, b = INT64_MIN;
    for (int64_t i = 0; i < n; i++) {
        const double u = pos[i] / spacing;
        const int64_t c = floor_int(u);
        cell[i] = c;
        frac[i] = (float)(u - (double)c);
        a = c < a ? c : a;
        b = c > b ? c : b;
    }
    *lo = a;
    *hi = b;
}

/* A point's cell in noise._noise_stack's terms: a (the corner term of its south-west node) and
 * k1, k2, k3, from the gradients (indices into gx, gy) of its corners a, b, c, d (south-west,
 * south-east, north-west, north-east) and its fractions fx, fy. */
struct cell_terms { float a, k1, k2, k3; };

static inline struct cell_terms cell_terms(int ia, int ib, int ic, int id, float fx, float fy,
                                           const float *gx, const float *gy) {
    const float fx1 = fx - 1.0f, fy1 = fy - 1.0f;
    const float a = gx[ia] * fx + gy[ia] * fy;
    const float b = gx[ib] * fx1 + gy[ib] * fy;
    const float c = gx[ic] * fx + gy[ic] * fy1;
    const float d = gx[id] * fx1 + gy[id] * fy1;
    return (struct cell_terms){a, b - a, c - a, a - b - c + d};
}

/* The noise value: a + u k1 + v k2 + (u v) k3, with the fades u, v of the fractions. */
static inline float blend(struct cell_terms t, float u, float v) {
    return u * t.k1 + t.a + v * t.k2 + u * v * t.k3;
}

/* The value of one octave at n points from their corners' gradients and cell fractions. */
VECTOR_CLONES
static void octave_values(int64_t n, const uint8_t *restrict corner, const float *restrict fxs,
                          const float *restrict fys, const float *restrict gx, const float *restrict gy,
                          float *restrict val) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *g = corner + 4 * i;
        val[i] = blend(cell_terms(g[0], g[1], g[2], g[3], fxs[i], fys[i], gx, gy), fade(fxs[i]), fade(fys[i]));
    }
}

/* `octave_values` and the derivatives per lattice unit along x and y. */
VECTOR_CLONES
static void octave_with_derivatives(int64_t n, const uint8_t *restrict corner, const float *restrict fxs,
                                    const float *restrict fys, const float *restrict gx, const float *restrict gy,
                                    float *restrict val, float *restrict ddx, float *restrict ddy) {
    for (int64_t i = 0; i < n; i++) {
        const int ia = corner[4 * i], ib = corner[4 * i + 1], ic = corner[4 * i + 2], id = corner[4 * i + 3];
        const float fx = fxs[i], fy = fys[i];
        const struct cell_terms t = cell_terms(ia, ib, ic, id, fx, fy, gx, gy);
        const float u = fade(fx), v = fade(fy), uv = u * v;
        val[i] = blend(t, u, v);
        const float grad_x = (gx[ib] - gx[ia]) * u + gx[ia] + (gx[ic] - gx[ia]) * v + (gx[ia] - gx[ib] - gx[ic] + gx[id]) * uv;
        const float grad_y = (gy[ib] - gy[ia]) * u + gy[ia] + (gy[ic] - gy[ia]) * v + (gy[ia] - gy[ib] - gy[ic] + gy[id]) * uv;
        ddx[i] = (v * t.k3 + t.k1) * dfade(fx) + grad_x;
        ddy[i] = (u * t.k3 + t.k2) * dfade(fy) + grad_y;
    }
}

/* One row of noise_grid: the row's fraction fy and fade v, each column's fraction and fade u. */
VECTOR_CLONES
static void grid_row(int64_t w, const uint8_t *restrict corner, const float *restrict fxs, const float *restrict us,
                     float fy, float v, const float *restrict gx, const float *restrict gy, float *restrict val) {
    for (int64_t i = 0; i < w; i++) {
        const uint8_t *g = corner + 4 * i;
        val[i] = blend(cell_terms(g[0], g[1], g[2], g[3], fxs[i], fy, gx, gy), us[i], v);
    }
}

/* noise._noise_stack for k octaves at n points: value[o * n + i] (and, when dx is not NULL, the
 * derivatives per lattice unit dx, dy). The gradient (0..15) of each corner is hashing.hash2 of
 * its node under the octave's key; as in noise._corner_gradients, the nodes of the box the
 * points' cells span are hashed once each into a table when the box is small; else every corner
 * combines its column's and row's hashes (each column and row hashed once where they are few, else
 * at each corner). grad: (2, 16), the gradients' x then y components; key_y:
 * hashing.axis_keys(key)[1] of each octave. Returns 0, or -1 where memory ran out. */
int noise_points(int64_t n, const double *x, const double *y, int32_t k, const double *spacing,
                 const uint32_t *key, const uint32_t *key_y, const float *grad,
                 float *value, float *dx, float *dy) {
    int64_t *cx = malloc(n * sizeof(int64_t)), *cy = malloc(n * sizeof(int64_t));
    float *fxs = malloc(n * sizeof(float)), *fys = malloc(n * sizeof(float));
    uint8_t *corner = malloc(4 * n);  /* the gradients (0..15) of corners a, b, c, d of each point */
    int status = cx && cy && fxs && fys && corner ? 0 : -1;
    for (int32_t o = 0; o < k && status == 0; o++) {
        int64_t x0, x1, y0, y1;
        cells(n, x, spacing[o], cx, fxs, &x0, &x1);
        cells(n, y, spacing[o], cy, fys, &y0, &y1);
        /* box widths as unsigned: a spread over 2^63 wraps, and is then hashed point by point */
        const uint64_t cols = (uint64_t)x1 - (uint64_t)x0 + 2, rows = (uint64_t)y1 - (uint64_t)y0 + 2;
        const uint64_t limit = 4 * (uint64_t)n + 256;
        uint8_t *table = NULL;
        uint32_t *hx = NULL, *hy = NULL;
        if (cols <= limit && rows <= limit) {
            hx = malloc(cols * sizeof(uint32_t));
            hy = malloc(rows * sizeof(uint32_t));
            if (!hx || !hy) { status = -1; free(hx); free(hy); break; }
            for (uint64_t c = 0; c < cols; c++) hx[c] = hash_axis(x0 + (int64_t)c, key[o]);
            for (uint64_t r = 0; r < rows; r++) hy[r] = hash_axis(y0 + (int64_t)r, key_y[o]);
            if (cols * rows <= limit) {
                table = malloc(cols * rows);
                if (!table) { status = -1; free(hx); free(hy); break; }
                for (uint64_t r = 0; r < rows; r++)
                    for (uint64_t c = 0; c < cols; c++) table[r * cols + c] = combine_axes(hx[c], hy[r]) & 15;
            }
        }
        if (table) {
            for (int64_t i = 0; i < n; i++) {
                const uint8_t *t = table + (uint64_t)(cy[i] - y0) * cols + (uint64_t)(cx[i] - x0);
                corner[4 * i] = t[0]; corner[4 * i + 1] = t[1]; corner[4 * i + 2] = t[cols]; corner[4 * i + 3] = t[cols + 1];
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                uint32_t hx0, hx1, hy0, hy1;
                if (hx) {
                    hx0 = hx[cx[i] - x0]; hx1 = hx[cx[i] - x0 + 1];
                    hy0 = hy[cy[i] - y0]; hy1 = hy[cy[i] - y0 + 1];
                } else {
                    hx0 = hash_axis(cx[i], key[o]); hx1 = hash_axis(cx[i] + 1, key[o]);
                    hy0 = hash_axis(cy[i], key_y[o]); hy1 = hash_axis(cy[i] + 1, key_y[o]);
                }
                corner[4 * i] = combine_axes(hx0, hy0) & 15; corner[4 * i + 1] = combine_axes(hx1, hy0) & 15;
                corner[4 * i + 2] = combine_axes(hx0, hy1) & 15; corner[4 * i + 3] = combine_axes(hx1, hy1) & 15;
            }
        }
        if (dx)
            octave_with_derivatives(n, corner, fxs, fys, grad, grad + 16, value + (int64_t)o * n, dx + (int64_t)o * n, dy + (int64_t)o * n);
        else
            octave_values(n, corner, fxs, fys, grad, grad + 16, value + (int64_t)o * n);
        free(table); free(hx); free(hy);
    }
    free(cx); free(cy); free(fxs); free(fys); free(corner);
    return status;
}

/* noise._grid_octave: one octave on the separable grid of columns xs (w) and rows ys (h), out (h, w),
 * row by row; the same words and operations as noise_points at the grid's points, each lattice node
 * of the grid's box hashed once. Returns 0; 1, writing nothing, where the box holds over 4 nodes a
 * sample (noise._grid_octave's rule: the caller takes noise_points); -1 where memory ran out. */
int noise_grid(int64_t w, const double *xs, int64_t h, const double *ys, double spacing, uint32_t key,
               uint32_t key_y, const float *grad, float *out) {
    int64_t *cx = malloc(w * sizeof(int64_t)), *cy = malloc(h * sizeof(int64_t));
    float *fx = malloc(w * sizeof(float)), *fy = malloc(h * sizeof(float)), *u = malloc(w * sizeof(float));
    uint32_t *hx = NULL, *hy = NULL;
    uint8_t *table = NULL, *corner = malloc(4 * w);
    int status = -1;
    if (!cx || !cy || !fx || !fy || !u || !corner) goto done;
    int64_t x0, x1, y0, y1;
    cells(w, xs, spacing, cx, fx, &x0, &x1);
    cells(h, ys, spacing, cy, fy, &y0, &y1);
    const uint64_t cols = (uint64_t)x1 - (uint64_t)x0 + 2, rows = (uint64_t)y1 - (uint64_t)y0 + 2;
    const uint64_t limit = 4 * ((uint64_t)w + 1) * ((uint64_t)h + 1);
    if (cols > limit || rows > limit || cols * rows > limit) {
        status = 1;
        goto done;
    }
    hx = malloc(cols * sizeof(uint32_t));
    hy = malloc(rows * sizeof(uint32_t));
    table = malloc(cols * rows);
    if (!hx || !hy || !table) goto done;
    for (uint64_t c = 0; c < cols; c++) hx[c] = hash_axis(x0 + (int64_t)c, key);
    for (uint64_t r = 0; r < rows; r++) hy[r] = hash_axis(y0 + (int64_t)r, key_y);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++) table[r * cols + c] = combine_axes(hx[c], hy[r]) & 15;
    for (int64_t c = 0; c < w; c++) u[c] = fade(fx[c]);
    for (int64_t r = 0; r < h; r++) {
        const uint8_t *south = table + (uint64_t)(cy[r] - y0) * cols, *north = south + cols;
        for (int64_t c = 0; c < w; c++) {
            const int64_t k = cx[c] - x0;
            corner[4 * c] = south[k]; corner[4 * c + 1] = south[k + 1];
            corner[4 * c + 2] = north[k]; corner[4 * c + 3] = north[k + 1];
        }
        grid_row(w, corner, fx, u, fy[r], fade(fy[r]), grad, grad + 16, out + r * w);
    }
    status = 0;
done:
    free(cx); free(cy); free(fx); free(fy); free(u); free(hx); free(hy); free(table); free(corner);
    return status;
}

/* lattice.at_points' interpolation: for each point and each of nf fields, the Catmull-Rom sum of
 * the point's 4 x 4 nodes, node (column j, row r) of point i being row node[(j * 4 + r) * n + i] of
 * table (m, nf), node-major: along x first (j = 0..3, each row r), then along y. wx, wy: (4, n)
 * weights. out: (n, nf). */
VECTOR_CLONES
void catmull_rom_points(int64_t n, int32_t nf, const float *restrict table, const int64_t *restrict node,
                        const float *restrict wx, const float *restrict wy, float *restrict out) {
    for (int64_t i = 0; i < n; i++) {
        const float *p[16];
        for (int q = 0; q < 16; q++) p[q] = table + node[q * n + i] * nf;
        const float x0 = wx[i], x1 = wx[n + i], x2 = wx[2 * n + i], x3 = wx[3 * n + i];
        float *o = out + i * nf;
        for (int32_t f = 0; f < nf; f++) {
            float value = 0.0f;
            for (int r = 0; r < 4; r++) {
                const float along = p[r][f] * x0 + p[4 + r][f] * x1 + p[8 + r][f] * x2 + p[12 + r][f] * x3;
                const float term = along * wy[r * n + i];
                value = r == 0 ? term : value + term;
            }
            o[f] = value;
        }
    }
}

/* twist.class_nodes: the class-(ox, oy) node nearest to each point, i = floor((x / L - ox) / 2 + 1 / 2) * 2 + ox
 * (inv_l = 1 / L, a power of two), likewise j. */
VECTOR_CLONES
void twist_class_nodes(int64_t n, const double *restrict x, const double *restrict y, double inv_l,
                       int64_t ox, int64_t oy, int64_t *restrict i_out, int64_t *restrict j_out) {
    for (int64_t k = 0; k < n; k++) {
        i_out[k] = floor_int((x[k] * inv_l - (double)ox) * 0.5 + 0.5) * 2 + ox;
        j_out[k] = floor_int((y[k] * inv_l - (double)oy) * 0.5 + 0.5) * 2 + oy;
    }
}

/* twist._step: one class's vortices at n points around nodes (i, j) with half-angle tangents tau;
 * the moved points, and when jac is not NULL the step's Jacobian (a, b, c, d) as jac[0..3][n]. */
VECTOR_CLONES
void twist_step(int64_t n, const double *restrict x, const double *restrict y, const int64_t *restrict i,
                const int64_t *restrict j, const double *restrict tau, double spacing,
                double *restrict x_out, double *restrict y_out, double *restrict jac) {
    const double inv_l2 = 1.0 / (spacing * spacing), q_scale = -8.0 / (spacing * spacing);
    for (int64_t k = 0; k < n; k++) {
        const double cx = (double)i[k] * spacing, cy = (double)j[k] * spacing;
        const double dx = x[k] - cx, dy = y[k] - cy;
        double inside = 1.0 - (dx * dx + dy * dy) * inv_l2;
        inside = inside < 0.0 ? 0.0 : inside;
        const double t = tau[k] * (inside * inside);
        const double t2 = t * t;
        const double den = 1.0 + t2;
        const double cs = (1.0 - t2) / den, sn = (t + t) / den;
        const int still = t == 0.0;
        x_out[k] = still ? x[k] : cx + (cs * dx - sn * dy);
        y_out[k] = still ? y[k] : cy + (sn * dx + cs * dy);
        if (jac) {
            const double q = tau[k] * inside * q_scale / den;
            const double m11 = 1.0 - q * dx * dy, m12 = -q * dy * dy, m21 = q * dx * dx, m22 = 1.0 + q * dx * dy;
            jac[k] = cs * m11 - sn * m21;
            jac[n + k] = cs * m12 - sn * m22;
            jac[2 * n + k] = sn * m11 + cs * m21;
            jac[3 * n + k] = sn * m12 + cs * m22;
        }
    }
}

/* hashing.hash2 under one key at n coordinate pairs: 32-bit words, stored as int64 (key_y:
 * hashing.axis_keys(key)[1]). */
VECTOR_CLONES
void hash2_points(int64_t n, const int64_t *restrict ix, const int64_t *restrict iy, uint32_t key, uint32_t key_y,
                  int64_t *restrict out) {
    for (int64_t k = 0; k < n; k++)
        out[k] = combine_axes(hash_axis(ix[k], key), hash_axis(iy[k], key_y));
}
