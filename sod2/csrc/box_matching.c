/*
 * Greedy detection-to-ground-truth matching for COCO-style evaluation.
 *
 * One call matches every (image, category) group for every area range and IoU
 * threshold. The loop reproduces pycocotools' COCOeval.evaluateImg decision by
 * decision (same IoU arithmetic as maskApi.c's bbIou, same tie rules), so the
 * numbers built on it are identical; only the interpreter overhead is gone.
 *
 * Protocol variants are expressed through the inputs, not through branches here:
 *   - pycocotools: gt_ignore = iscrowd, gt_crowd = iscrowd;
 *   - SODA-D:      gt_ignore = the annotation's ignore flag, gt_crowd = 0;
 *   - TinyPerson AP: gt_ignore = ignore | iscrowd | uncertain and iod_mode = 1: a
 *                  detection that matches nothing falls back to the ignored ground
 *                  truth (out-of-range ones included) with the largest
 *                  f = IoU / (1 + IoU) * (1 + gt_area / det_area) (TinyBenchmark's
 *                  IOD_by_IOU, first maximum), accepted when f >= the threshold;
 *                  that ground truth is then marked as taken, as in the reference.
 *   - TinyPerson MR: ignored ground truth is crowd (IoD, never taken) and
 *                  iod_mode = 2: the same fallback accepted when f > 0.5 whatever
 *                  the IoU threshold (the Caltech/CityPersons-style MR code).
 *
 * The module uses only the buffer protocol (no NumPy headers), so it builds with
 * nothing but a C compiler and the Python headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* IoU of detection d against ground truth g, exactly as pycocotools' bbIou. */
static double box_iou(const double *D, const double *G, int crowd) {
  double w = fmin(D[2] + D[0], G[2] + G[0]) - fmax(D[0], G[0]);
  if (w <= 0) return 0.0;
  double h = fmin(D[3] + D[1], G[3] + G[1]) - fmax(D[1], G[1]);
  if (h <= 0) return 0.0;
  double i = w * h;
  double da = D[2] * D[3];
  double u = crowd ? da : da + G[2] * G[3] - i;
  return i / u;
}

typedef struct {
  Py_buffer b;
  int held;
} Buf;

static int get_buf(PyObject *obj, Buf *out, int writable, Py_ssize_t itemsize,
                   Py_ssize_t count, const char *name) {
  int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj, &out->b, flags) != 0) {
    PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s buffer", name,
                 writable ? " writable" : "");
    return -1;
  }
  out->held = 1;
  if (out->b.len != itemsize * count) {
    PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name,
                 itemsize * count, out->b.len);
    return -1;
  }
  return 0;
}

static void release(Buf *bufs, int n) {
  for (int i = 0; i < n; i++)
    if (bufs[i].held) PyBuffer_Release(&bufs[i].b);
}

enum {
  B_GT_OFF, B_DT_OFF, B_GT_BOX, B_GT_AREA, B_GT_CROWD, B_GT_IGN, B_GT_IDNZ,
  B_DT_BOX, B_DT_AREA, B_AREA_RNG, B_IOU_THR, B_DT_MATCHED, B_DT_IGNORED,
  B_GT_IGNORED, N_BUFS
};

static PyObject *match_groups(PyObject *self, PyObject *args) {
  PyObject *o[N_BUFS];
  Py_ssize_t n_groups, n_gt, n_dt, n_area, n_thr;
  int iod_mode;
  if (!PyArg_ParseTuple(args, "nnnnniOOOOOOOOOOOOOO", &n_groups, &n_gt, &n_dt,
                        &n_area, &n_thr, &iod_mode, &o[0], &o[1], &o[2], &o[3],
                        &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11],
                        &o[12], &o[13]))
    return NULL;

  Buf b[N_BUFS];
  memset(b, 0, sizeof(b));
  static const char *names[N_BUFS] = {
      "gt_offsets", "dt_offsets", "gt_boxes", "gt_areas", "gt_crowd",
      "gt_ignore", "gt_id_nonzero", "dt_boxes", "dt_areas", "area_ranges",
      "iou_thresholds", "dt_matched", "dt_ignored", "gt_ignored"};
  const Py_ssize_t sizes[N_BUFS][3] = {
      /* itemsize, count, writable */
      {8, n_groups + 1, 0}, {8, n_groups + 1, 0}, {8, n_gt * 4, 0},
      {8, n_gt, 0}, {1, n_gt, 0}, {1, n_gt, 0}, {1, n_gt, 0},
      {8, n_dt * 4, 0}, {8, n_dt, 0}, {8, n_area * 2, 0}, {8, n_thr, 0},
      {1, n_area * n_thr * n_dt, 1}, {1, n_area * n_thr * n_dt, 1},
      {1, n_area * n_gt, 1}};
  for (int i = 0; i < N_BUFS; i++) {
    if (get_buf(o[i], &b[i], (int)sizes[i][2], sizes[i][0], sizes[i][1],
                names[i]) != 0) {
      release(b, N_BUFS);
      return NULL;
    }
  }
  const int64_t *gt_off = b[B_GT_OFF].b.buf, *dt_off = b[B_DT_OFF].b.buf;
  const double *gt_box = b[B_GT_BOX].b.buf, *gt_area = b[B_GT_AREA].b.buf;
  const uint8_t *gt_crowd = b[B_GT_CROWD].b.buf, *gt_ign = b[B_GT_IGN].b.buf;
  const uint8_t *gt_idnz = b[B_GT_IDNZ].b.buf;
  const double *dt_box = b[B_DT_BOX].b.buf, *dt_area = b[B_DT_AREA].b.buf;
  const double *area_rng = b[B_AREA_RNG].b.buf, *iou_thr = b[B_IOU_THR].b.buf;
  uint8_t *dt_matched = b[B_DT_MATCHED].b.buf;
  uint8_t *dt_ignored = b[B_DT_IGNORED].b.buf;
  uint8_t *gt_ignored = b[B_GT_IGNORED].b.buf;

  for (Py_ssize_t k = 0; k < n_groups; k++) {
    if (gt_off[k] > gt_off[k + 1] || dt_off[k] > dt_off[k + 1] || gt_off[k] < 0 ||
        dt_off[k] < 0 || gt_off[k + 1] > n_gt || dt_off[k + 1] > n_dt) {
      release(b, N_BUFS);
      PyErr_SetString(PyExc_ValueError, "group offsets out of range");
      return NULL;
    }
  }

  Py_ssize_t max_g = 0, max_d = 0;
  for (Py_ssize_t k = 0; k < n_groups; k++) {
    Py_ssize_t g = gt_off[k + 1] - gt_off[k], d = dt_off[k + 1] - dt_off[k];
    if (g > max_g) max_g = g;
    if (d > max_d) max_d = d;
  }
  double *ious = malloc(sizeof(double) * (size_t)(max_g * max_d + 1));
  Py_ssize_t *order = malloc(sizeof(Py_ssize_t) * (size_t)(max_g + 1));
  uint8_t *g_ig = malloc((size_t)(max_g + 1));
  uint8_t *g_taken = malloc((size_t)(max_g + 1));
  if (!ious || !order || !g_ig || !g_taken) {
    free(ious); free(order); free(g_ig); free(g_taken);
    release(b, N_BUFS);
    return PyErr_NoMemory();
  }

  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t k = 0; k < n_groups; k++) {
    const Py_ssize_t g0 = gt_off[k], G = gt_off[k + 1] - g0;
    const Py_ssize_t d0 = dt_off[k], D = dt_off[k + 1] - d0;
    for (Py_ssize_t d = 0; d < D; d++)
      for (Py_ssize_t g = 0; g < G; g++)
        ious[d * G + g] = box_iou(dt_box + 4 * (d0 + d), gt_box + 4 * (g0 + g),
                                  gt_crowd[g0 + g]);
    for (Py_ssize_t a = 0; a < n_area; a++) {
      const double lo = area_rng[2 * a], hi = area_rng[2 * a + 1];
      /* ground truth: ignored if flagged or out of range; stable order with
       * the non-ignored first (pycocotools' mergesort on _ignore). */
      Py_ssize_t n_order = 0, n_regular = 0;
      for (int pass = 0; pass < 2; pass++)
        for (Py_ssize_t g = 0; g < G; g++) {
          double ar = gt_area[g0 + g];
          uint8_t ig = gt_ign[g0 + g] || ar < lo || ar > hi;
          if (pass == 0) {
            g_ig[g] = ig;
            gt_ignored[a * n_gt + g0 + g] = ig;
          }
          if (ig == pass) order[n_order++] = g;
        }
      for (Py_ssize_t g = 0; g < G; g++) n_regular += !g_ig[g];
      for (Py_ssize_t t = 0; t < n_thr; t++) {
        uint8_t *dm = dt_matched + (a * n_thr + t) * n_dt + d0;
        uint8_t *di = dt_ignored + (a * n_thr + t) * n_dt + d0;
        memset(g_taken, 0, (size_t)G);
        for (Py_ssize_t d = 0; d < D; d++) {
          double best = iou_thr[t] < 1 - 1e-10 ? iou_thr[t] : 1 - 1e-10;
          Py_ssize_t m = -1;
          for (Py_ssize_t j = 0; j < G; j++) {
            Py_ssize_t g = order[j];
            if (g_taken[g] && !gt_crowd[g0 + g]) continue;
            if (m > -1 && g_ig[m] == 0 && g_ig[g] == 1) break;
            double v = ious[d * G + g];
            if (v < best) continue;
            best = v;
            m = g;
          }
          if (m == -1 && iod_mode && n_regular < G) {
            const double *DB = dt_box + 4 * (d0 + d);
            const double da = DB[2] * DB[3];
            double best_iod = 0;
            Py_ssize_t arg = -1;
            for (Py_ssize_t j = n_regular; j < G; j++) {
              Py_ssize_t g = order[j];
              double v = ious[d * G + g];
              double iod = v / (1 + v) * (1 + gt_area[g0 + g] / da);
              if (arg == -1 || iod > best_iod) {
                best_iod = iod;
                arg = g;
              }
            }
            if (iod_mode == 1 ? best_iod >= best : best_iod > 0.5) m = arg;
          }
          uint8_t matched = 0, ignored = 0;
          if (m > -1) {
            ignored = g_ig[m];
            matched = gt_idnz[g0 + m];
            g_taken[m] = 1;
          }
          if (!matched) {
            double ar = dt_area[d0 + d];
            if (ar < lo || ar > hi) ignored = 1;
          }
          dm[d] = matched;
          di[d] = ignored;
        }
      }
    }
  }
  Py_END_ALLOW_THREADS

  free(ious); free(order); free(g_ig); free(g_taken);
  release(b, N_BUFS);
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"match_groups", match_groups, METH_VARARGS,
     "match_groups(n_groups, n_gt, n_dt, n_area, n_thr, iod_mode, gt_offsets, "
     "dt_offsets, gt_boxes, gt_areas, gt_crowd, gt_ignore, gt_id_nonzero, "
     "dt_boxes, dt_areas, area_ranges, iou_thresholds, dt_matched, dt_ignored, "
     "gt_ignored)\n\nGreedy COCO matching of score-sorted detections; writes the "
     "three output buffers (uint8) in place."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_box_matching",
                                    "COCO-style greedy box matching kernel", -1,
                                    methods};

PyMODINIT_FUNC PyInit__box_matching(void) { return PyModule_Create(&module); }
